"""§2.3–§2.10 file/ls, info, rm, mv, rename, cp, chattr, scan."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..pipeline import Base
from ..state import file_id_from_url, paris_date
from ..wire import (
    BAD_PARAM,
    KO,
    NOT_RENAMED,
    OVER_QUOTA,
    PASS_TOO_SHORT,
    RENAME_ONE_URL,
    SAME_NAME_MOVE,
    TOO_BIG_FOR_SCAN,
    check_name,
    date_param,
    int_param,
    not_found,
    str_param,
)


class FileApi(Base):
    """File endpoints."""

    # ---- §2.3 file/ls -------------------------------------------------------------------------------
    def file_ls(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.3: ``{"status","count","items"}``; folder_id -1 = every file of the account.

        ``sent_before`` / ``sent_after`` (``YYYY-MM-DD HH:MM:SS``, Paris time like ``date``, §7) filter by
        upload date and combine; a malformed value is refused (KO ``Invalid parameter``). Bounds are strict
        (``date < sent_before``, ``date > sent_after``) unless ``date_filter_inclusive`` ([UNVERIFIED]; see
        config). At most ``max_listing`` (5 000) items, oldest first, with ``count`` = the items sent
        (§2.3 "The per-folder 30 s rule and the 5 000-result cap also apply here")."""
        fid = int_param(body, "folder_id", 0)
        if fid != -1:
            self._folder(fid)
        before, after = date_param(body, "sent_before"), date_param(body, "sent_after")
        incl = self.cfg.date_filter_inclusive
        out = []
        for r in self._listed_files(fid):
            d = paris_date(r.upload_time)
            if before is not None and (d > before if incl else d >= before):
                continue
            if after is not None and (d < after if incl else d <= after):
                continue
            out.append(self.list_item(r))
            if len(out) >= self.cfg.max_listing:
                break
        return {"status": "OK", "count": len(out), "items": out}

    # ---- §2.4 file/info -----------------------------------------------------------------------------
    def file_info(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.4: by ``url``, or ``folder_id`` + exact ``filename`` (case-sensitive). Both ``content_type`` and
        ``content-type`` are sent. By url a new upload is found at once; by folder+name only once visible, and
        with duplicates the newest wins ([UNVERIFIED choice]s). The owner needs no ``pass``."""
        if body.get("url") is not None:
            r = self._file(body["url"])
        else:
            fid = int_param(body, "folder_id", 0)
            name = str_param(body, "filename", required=True)
            self._folder(fid)
            matches = [x for x in self._listed_files(fid) if x.filename == name]
            if not matches:
                raise not_found()
            r = matches[-1]
        return {
            "status": "OK",
            "url": r.url,
            "filename": r.filename,
            "size": r.size,
            "date": paris_date(r.upload_time),
            "folder_id": r.folder_id,
            "path": self.acct.folder_path(r.folder_id),
            "checksum": r.whirlpool,
            "content_type": r.content_type,
            "content-type": r.content_type,
            "description": r.description,
            "pass": int(bool(r.password)),
            "no_ssl": r.no_ssl,
            "inline": r.inline,
            "cdn": r.cdn,
            "acl": {"ip": list(r.acl.get("ip", [])), "country": list(r.acl.get("country", [])),
                    "email": list(r.acl.get("email", [])), "premium": int(r.acl.get("premium", 0))},
        }

    # ---- §2.5 file/rm -------------------------------------------------------------------------------
    def file_rm(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.5 [LIST] ``{"files":[{"url","code"?}]}`` → ``removed``/``urls``. Unknown urls are skipped; when
        none is removed the reply is 404 #469 ([UNVERIFIED choice])."""
        files = body.get("files")
        if not isinstance(files, list) or not files:
            raise KO(BAD_PARAM.format("files"))
        removed = []
        for item in files:
            url = item.get("url") if isinstance(item, dict) else item
            fid = file_id_from_url(url)
            rec = self.acct.file(fid) if fid else None
            if rec is None:
                continue
            if rec.folder_id is None and (not isinstance(item, dict) or item.get("code") != rec.remove_code):
                continue  # not an account file: needs its removal code (§2.5)
            self.acct.delete_file(rec.id)
            self.svc.forget_file(rec.id)
            removed.append(rec.url)
        if not removed:
            raise not_found()
        return {"status": "OK", "removed": len(removed), "urls": removed}

    # ---- §2.6 file/mv -------------------------------------------------------------------------------
    def file_mv(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.6 [LIST]: ``urls``, ``destination_folder_id`` (must be present), ``rename`` (exactly one url).
        URLs are kept (§2.6 [sdk-net]). A ``rename`` equal to the current name is refused (§2.6 gotcha,
        #7856) even when moving elsewhere."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        dest = int_param(body, "destination_folder_id", required=True)
        rename = str_param(body, "rename")
        if rename is not None and len(urls) != 1:
            raise KO(RENAME_ONE_URL)
        self._folder(dest)
        recs = [self._file(u) for u in urls]
        if rename is not None:
            check_name(rename, self.cfg.max_name)
            if rename == recs[0].filename:
                raise KO(SAME_NAME_MOVE)
        for r in recs:
            self.acct.update_file(r.id, folder_id=dest)
            if rename is not None:
                self.acct.update_file(r.id, filename=rename)
        out: dict[str, Any] = {"status": "OK", "moved": len(recs), "urls": [r.url for r in recs]}
        if rename is not None:
            out["filename"] = rename
        return out

    # ---- §2.7 file/rename ---------------------------------------------------------------------------
    def file_rename(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.7 [LIST] ``{"urls":[{"url","filename"}]}``; same name → not renamed; none renamed → #312."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        done = []
        for item in urls:
            if not isinstance(item, dict):
                raise KO(BAD_PARAM.format("urls"))
            r = self._file(item.get("url"))
            new = item.get("filename")
            check_name(new, self.cfg.max_name)
            if new == r.filename:
                continue
            self.acct.update_file(r.id, filename=new)
            done.append({"url": r.url, "old_filename": r.filename, "new_filename": new})
        if not done:
            raise KO(NOT_RENAMED)
        return {"status": "OK", "renamed": len(done), "urls": done}

    # ---- §2.8 file/cp -------------------------------------------------------------------------------
    def file_cp(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.8 [LIST]: ``urls``, ``folder_id`` (0/absent = root), ``rename`` (one url). Each copy is a new
        file with a new URL, visible at once ([UNVERIFIED choice]: the visibility delay is for uploads)."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        dest = int_param(body, "folder_id", 0)
        rename = str_param(body, "rename")
        if rename is not None:
            if len(urls) != 1:
                raise KO(RENAME_ONE_URL)
            check_name(rename, self.cfg.max_name)
        self._folder(dest)
        recs = [self._file(u) for u in urls]
        if self.acct.used_bytes() + sum(r.size for r in recs) > self.svc.quota:
            raise KO(OVER_QUOTA)
        pairs = []
        for r in recs:
            new = self.acct.copy_file(r, dest, rename if rename is not None else r.filename)
            pairs.append({"from_url": r.url, "to_url": new.url})
        out: dict[str, Any] = {"status": "OK", "copied": len(pairs), "urls": pairs}
        if rename is not None:
            out["filename"] = rename
        return out

    # ---- §2.9 file/chattr ---------------------------------------------------------------------------
    def file_chattr(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.9 [LIST]: ``filename`` (single file only), ``description``, ``pass`` (≥6 chars, "" removes),
        ``no_ssl``, ``inline``, ``cdn``, ``acl``. No attribute sets a modification time."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        recs = [self._file(u) for u in urls]
        changes: dict[str, Any] = {}
        if "filename" in body:
            if len(urls) != 1:
                raise KO(RENAME_ONE_URL)
            changes["filename"] = check_name(body["filename"], self.cfg.max_name)
        if "description" in body:
            changes["description"] = str_param(body, "description") or ""
        if "pass" in body:
            pw = str_param(body, "pass") or ""
            if pw and len(pw) < 6:
                raise KO(PASS_TOO_SHORT)
            changes["password"] = pw
        for k in ("no_ssl", "inline", "cdn"):
            if k in body:
                changes[k] = 1 if int_param(body, k) else 0
        if "acl" in body:
            acl = body["acl"]
            if not isinstance(acl, dict):
                raise KO(BAD_PARAM.format("acl"))
            changes["acl"] = {"ip": list(acl.get("ip") or []), "country": list(acl.get("country") or []),
                              "email": list(acl.get("email") or []), "premium": 1 if acl.get("premium") else 0}
        for r in recs:
            self.acct.update_file(r.id, **changes)
        return {"status": "OK", "updated": len(recs), "urls": [r.url for r in recs]}

    # ---- §2.10 file/scan ----------------------------------------------------------------------------
    def file_scan(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.10: files under 5 GB only; the emulator finds no virus."""
        r = self._file(body.get("url"))
        if r.size >= 5_000_000_000:
            raise KO(TOO_BIG_FOR_SCAN)
        return {"status": "OK"}
