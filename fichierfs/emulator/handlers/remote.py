"""§2.17 remote/request, remote/ls, remote/info (recorded, never executed)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..pipeline import Base
from ..wire import (
    BAD_PARAM,
    KO,
    int_param,
    not_found,
)


class RemoteApi(Base):
    """§2.17."""

    # ---- §2.17 remote/* -----------------------------------------------------------------------------
    def remote_request(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.17 (minimal): jobs are recorded and never executed — the emulator has no network
        ([UNVERIFIED choice]; ``execution_date`` stays "")."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        self._folder(int_param(body, "folder_id", 0))
        headers = body.get("headers") or {}
        job = self.svc.add_remote_job(urls, headers)
        return {"status": "OK", "id": job["id"], "date": job["request_date"], "urls": urls, "headers": headers}

    def remote_ls(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.17."""
        return {"status": "OK", "data": [{"id": j["id"], "request_date": j["request_date"],
                                          "execution_date": j["execution_date"]} for j in self.svc.remote_jobs()]}

    def remote_info(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.17."""
        job = self.svc.remote_job(int_param(body, "id", required=True))
        if job is None:
            raise not_found()
        return {"status": "OK", "id": job["id"], "request_date": job["request_date"],
                "execution_date": job["execution_date"], "links": list(job["urls"]), "result": []}
