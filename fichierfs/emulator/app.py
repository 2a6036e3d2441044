"""The Starlette ASGI app: the routes of every 1fichier endpoint (§2, §5, §6, §8 checklist) and the
/_emulator control routes.

Every host routes to the same app (api.1fichier.com, up2.1fichier.com, a-1.1fichier.com, 127.0.0.1:PORT):
the paths do not overlap. What runs before a handler: ``pipeline.py``; the handlers, by API area:
``handlers/``; shared replies and messages: ``wire.py``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from .config import API_ENDPOINTS
from .handlers.account import AccountApi
from .handlers.control import ControlApi, loopback_only
from .handlers.files import FileApi
from .handlers.folders import FolderApi
from .handlers.remote import RemoteApi
from .handlers.transfer import TransferApi
from .pipeline import Base, Endpoint, V1Handler
from .service import EmulatorService
from .wire import FAULT_HEADER, INPROCESS_KEY

__all__ = ["FAULT_HEADER", "INPROCESS_KEY", "build_app"]


def build_app(svc: EmulatorService) -> Starlette:
    """All routes of the §8 checklist plus the /_emulator control routes."""
    account, folders, files = AccountApi(svc), FolderApi(svc), FileApi(svc)
    transfer, remote, control = TransferApi(svc), RemoteApi(svc), ControlApi(svc)
    pipe = Base(svc)  # the /v1 pipeline
    v1: dict[str, V1Handler] = {
        "user/info": account.user_info,
        "folder/ls": folders.folder_ls,
        "folder/mkdir": folders.folder_mkdir,
        "folder/rm": folders.folder_rm,
        "folder/mv": folders.folder_mv,
        "folder/share": folders.folder_share,
        "file/ls": files.file_ls,
        "file/info": files.file_info,
        "file/rm": files.file_rm,
        "file/mv": files.file_mv,
        "file/rename": files.file_rename,
        "file/cp": files.file_cp,
        "file/chattr": files.file_chattr,
        "file/scan": files.file_scan,
        "download/get_token": transfer.get_token,
        "upload/get_upload_server": transfer.get_upload_server,
        "remote/request": remote.remote_request,
        "remote/ls": remote.remote_ls,
        "remote/info": remote.remote_info,
    }
    assert set(v1) == set(API_ENDPOINTS)
    routes: list[Route] = []
    for name, fn in v1.items():
        methods = ["GET", "POST"] if name == "upload/get_upload_server" else ["POST"]  # §1 Methods row
        routes.append(Route(f"/v1/{name}.cgi", Endpoint(svc, name, pipe.v1(name, fn)), methods=methods))
    routes += [
        Route("/upload.cgi", Endpoint(svc, "upload.cgi", transfer.upload_cgi), methods=["POST"]),
        Route("/end.pl", Endpoint(svc, "end.pl", transfer.end_pl), methods=["GET"]),
        Route("/p{token:int}", Endpoint(svc, "download", transfer.download), methods=["GET", "HEAD"]),  # §5
        Route("/_emulator/stats", loopback_only(control.ctl_stats), methods=["GET"]),
        Route("/_emulator/reset", loopback_only(control.ctl_reset), methods=["POST"]),
        Route("/_emulator/fault", loopback_only(control.ctl_fault), methods=["POST"]),
        Route("/_emulator/unlock", loopback_only(control.ctl_unlock), methods=["POST"]),
        Route("/_emulator/quota", loopback_only(control.ctl_quota), methods=["GET", "POST"]),
        Route("/_emulator/client", loopback_only(control.ctl_client), methods=["GET"]),
    ]
    return Starlette(routes=routes)
