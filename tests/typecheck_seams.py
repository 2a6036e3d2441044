"""Type-level tests of the seams: checked by mypy in scripts/check, never run by pytest.

Each ``assert_type`` fails the check if a result type degrades (e.g. back to ``Any``); each
``# type: ignore[...]`` line is a call that MUST be rejected: with ``warn_unused_ignores`` a
call that type-checks makes the ignore unused, which fails the check too.
"""

from __future__ import annotations

from typing import assert_type

from fichierfs.api import FichierClient
from fichierfs.meta import MetaCache
from fichierfs.models import AccountInfo, DownloadLink, FolderId, FolderListing, RemoteFile
from fichierfs.reader import ReadManager
from fichierfs.scheduler import ApiCaller, Lane, Scheduler
from fichierfs.vfs import ReadPath


async def scheduler_call_returns_the_method_type(s: Scheduler, link: DownloadLink) -> None:
    c: FichierClient = s.client
    assert_type(await s.call(c.folder_ls, 1, files=True, lane=Lane.PREFETCH), FolderListing)
    assert_type(await s.call(c.user_info, lane=Lane.BACKGROUND), AccountInfo)
    assert_type(await s.call(c.file_info, "https://1fichier.com/?x", retries=0), RemoteFile)
    assert_type(await s.call(c.folder_mkdir, 0, "new"), FolderId)
    assert_type(await s.call(c.download_range, link, 0, 10), bytes)
    await s.call(c.folder_ls, "1")  # type: ignore[arg-type]
    await s.call(c.file_mv, ["u"])  # type: ignore[arg-type]
    await s.call("folder/ls", 1)  # type: ignore[arg-type]


def the_product_fills_the_protocols(s: Scheduler, rm: ReadManager) -> tuple[ApiCaller, ReadPath]:
    return s, rm


async def an_api_caller_is_typed_too(api: ApiCaller, meta: MetaCache) -> None:
    assert_type(await api.call(api.client.folder_ls, 0, files=True), FolderListing)
    assert_type(meta.scheduler, ApiCaller)
