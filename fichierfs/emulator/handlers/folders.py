"""§2.2 folder/ls and §2.11–§2.14 folder/mkdir, rm, mv, share."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..pipeline import Base
from ..state import paris_date
from ..wire import (
    BAD_DESTINATION,
    BAD_PARAM,
    FOLDER_EXISTS,
    FOLDER_NOT_EMPTY,
    KO,
    PASS_TOO_SHORT,
    ROOT_FORBIDDEN,
    check_name,
    int_param,
    str_param,
)


class FolderApi(Base):
    """Folder endpoints."""

    # ---- §2.2 folder/ls -----------------------------------------------------------------------------
    def folder_ls(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.2: ``folder_id`` (0/absent = root "Root"); sub-folders use key ``id``; ``files:1`` adds ``items``.
        ``size`` is null (§2.2 "often null"). Empty lists are sent as ``[]`` ([UNVERIFIED choice]).

        "List folders is limited to 5 000 results" (§2.2): sub-folders and files together, sub-folders first,
        files oldest first; nothing tells the client that the reply was cut (no pagination, §2.2). ``files``
        is the number of files the reply may carry, capped like them ([UNVERIFIED choice]: a true count
        would give clients a truncation signal the doc does not promise)."""
        fid = int_param(body, "folder_id", 0)
        f = self._folder(fid)
        cap = self.cfg.max_listing
        subs = self.acct.subfolders(fid)[:cap]
        files = self._listed_files(fid)[: cap - len(subs)]
        out: dict[str, Any] = {"status": "OK", "folder_id": f.id, "name": f.name}
        if f.id != 0:
            out["create_date"] = paris_date(f.create_time)
            out["pass"] = int(bool(f.password))
            if f.shared:
                out["shared"] = f"https://1fichier.com/dir/{f.id}"
        out["size"] = None
        out["files"] = len(files)
        out["sub_folders"] = [
            {"id": s.id, "name": s.name, "create_date": paris_date(s.create_time), "pass": int(bool(s.password))}
            for s in subs
        ]
        if int_param(body, "files", 0):
            out["items"] = [self.list_item(r) for r in files]
        return out

    # ---- §2.11 folder/mkdir -------------------------------------------------------------------------
    def folder_mkdir(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.11: ``name`` (≤250 chars, §7 characters), ``folder_id`` parent. A duplicate name in the same
        parent is refused with KO ``Folder already exists #365`` ([UNVERIFIED choice]: §2.11 says unknown; a
        refusal keeps folder paths unambiguous)."""
        name = check_name(body.get("name"), self.cfg.max_name)
        parent = int_param(body, "folder_id", 0)
        self._folder(parent)
        if self.acct.subfolder_named(parent, name) is not None:
            raise KO(FOLDER_EXISTS)
        fid = self.acct.make_folder(parent, name)
        return {"status": "OK", "folder_id": fid, "name": name}

    # ---- §2.12 folder/rm ----------------------------------------------------------------------------
    def folder_rm(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.12: refused (KO ``Folder not empty #366``) unless the folder has no file and no sub-folder
        (files still invisible because of the visibility delay count). Root cannot be removed."""
        fid = int_param(body, "folder_id", required=True)
        if fid == 0:
            raise KO(ROOT_FORBIDDEN)
        self._folder(fid)
        if not self.acct.folder_is_empty(fid):
            raise KO(FOLDER_NOT_EMPTY)
        self.acct.delete_folder(fid)
        return {"status": "OK", "message": "Folder removed"}

    # ---- §2.13 folder/mv ----------------------------------------------------------------------------
    def folder_mv(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.13: ``rename`` ignores ``destination_*`` (apidoc) unless ``folder_mv_rename_moves``; without
        ``rename`` the folder moves to ``destination_folder_id`` (absent = root, as rclone omits it). A name
        clash in the target parent is refused like mkdir ([UNVERIFIED choice])."""
        fid = int_param(body, "folder_id", required=True)
        if fid == 0:
            raise KO(ROOT_FORBIDDEN)
        f = self._folder(fid)
        rename = str_param(body, "rename")
        dest = int_param(body, "destination_folder_id", 0)
        if rename is not None and not self.cfg.folder_mv_rename_moves:
            dest = f.parent if f.parent is not None else 0
        new_name = f.name if rename is None else check_name(rename, self.cfg.max_name)
        self._folder(dest)
        if self.acct.is_descendant(dest, fid):
            raise KO(BAD_DESTINATION)
        clash = self.acct.subfolder_named(dest, new_name)
        if clash is not None and clash.id != fid:
            raise KO(FOLDER_EXISTS)
        self.acct.update_folder(fid, parent=dest, name=new_name)
        return {"status": "OK", "old_name": f.name, "new_name": new_name}

    # ---- §2.14 folder/share -------------------------------------------------------------------------
    def folder_share(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.14: ``share`` 0/1 (public URL ``https://1fichier.com/dir/<id>``), ``pass`` ≥6, ``shares``."""
        fid = int_param(body, "folder_id", required=True)
        self._folder(fid)
        changes: dict[str, Any] = {}
        if "pass" in body:
            pw = str_param(body, "pass") or ""
            if pw and len(pw) < 6:
                raise KO(PASS_TOO_SHORT)
            changes["password"] = pw
        if "share" in body:
            changes["shared"] = 1 if int_param(body, "share") else 0
        if "shares" in body:
            shares = body["shares"]
            if not isinstance(shares, list):
                raise KO(BAD_PARAM.format("shares"))
            changes["shares"] = shares
        self.acct.update_folder(fid, **changes)
        f = self._folder(fid)
        out: dict[str, Any] = {"status": "OK", "message": "Share updated"}
        if f.shared:
            out["url"] = f"https://1fichier.com/dir/{fid}"
        return out
