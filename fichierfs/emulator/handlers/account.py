"""§2.1 user/info: the account, its options and its storage figures."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from ..pipeline import Base
from ..state import paris_date
from ..wire import int_param


class AccountApi(Base):
    """§2.1."""

    # ---- §2.1 user/info -----------------------------------------------------------------------------
    STR_OPTS = ("mail_rm", "use_cdn", "default_port", "download_menu", "default_port_files", "ftp_report",
                "ftp_mode", "ru_report")
    INT_OPTS = ("page_limit", "default_domain", "ftp_did")

    def user_info(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.1: fields with rclone's exact JSON types. ``cold_storage`` = ``hot_storage`` = the bytes of every
        file of the account (seeded, uploaded and copied files; anonymous uploads excluded), counted afresh on
        each call so they move with uploads and deletes at once ([UNVERIFIED]: §2.1 names the fields but not
        the hot/cold split, so both carry the total). ``available_cold_storage`` = the quota (rclone's "total",
        §2.1), ``available_storage`` = quota − used. Over quota: ``upload_forbidden`` "1" and ``overquota`` 1
        ([UNVERIFIED choice] of values). Setters (§2.1 req) are stored; string fields stay strings, int fields
        ints."""
        opts = json.loads(self.acct.get_meta("user_options", "{}") or "{}")
        for k in self.STR_OPTS:
            if k in body:
                opts[k] = str(body[k])
        for k in self.INT_OPTS:
            if k in body:
                opts[k] = int_param(body, k)
        self.acct.set_meta("user_options", json.dumps(opts))
        used = self.acct.used_bytes()
        q = self.svc.quota
        return {
            "status": "OK",
            # strings (§2.1 list)
            "email": "emulator@fichierfs.invalid",
            "offer": "1",
            "2fa": "0",
            "mail_rm": opts.get("mail_rm", "0"),
            "ftp_mode": opts.get("ftp_mode", "0"),
            "ftp_report": opts.get("ftp_report", "0"),
            "ru_report": opts.get("ru_report", "0"),
            "default_port": opts.get("default_port", "0"),
            "default_port_files": opts.get("default_port_files", "0"),
            "cdn": "0",
            "download_menu": opts.get("download_menu", "0"),
            "use_cdn": opts.get("use_cdn", "0"),
            "subscription_end": "2099-12-31 23:59:59",
            "stats_date": paris_date(self.svc.wall()),
            "upload_forbidden": "1" if used >= q else "0",
            # integers (§2.1 list)
            "ftp_did": opts.get("ftp_did", 0),
            "default_domain": opts.get("default_domain", 0),
            "page_limit": opts.get("page_limit", 1000),
            "default_quota": q,
            "default_cold_storage_quota": q,
            "hot_storage": used,
            "cold_storage": used,
            "allowed_cold_storage": q,
            "available_storage": max(0, q - used),
            "available_cold_storage": q,
            "overquota": 1 if used > q else 0,
        }
