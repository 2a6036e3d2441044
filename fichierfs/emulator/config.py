"""Emulator configuration and the endpoint names used by counters, faults and limits.

Every number comes from /work/shared/1fichier-api.md (cited per field as "§N").
Units: all times are **seconds**, all sizes are **bytes**.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["API_ENDPOINTS", "ENDPOINTS", "NODE_ENDPOINTS", "EmulatorConfig", "LISTING_ENDPOINTS"]

#: The ``/v1/<name>.cgi`` routes (§2, §8 checklist). These are "API calls": rate limited and lockable (§4).
API_ENDPOINTS: tuple[str, ...] = (
    "user/info",
    "folder/ls",
    "folder/mkdir",
    "folder/rm",
    "folder/mv",
    "folder/share",
    "file/ls",
    "file/info",
    "file/rm",
    "file/mv",
    "file/rename",
    "file/cp",
    "file/chattr",
    "file/scan",
    "download/get_token",
    "upload/get_upload_server",
    "remote/request",
    "remote/ls",
    "remote/info",
)

#: Non-API endpoints (§5 token download, §6 upload node). Never rate limited nor locked
#: ("downloads through the API keep working", §2.1 / §4).
NODE_ENDPOINTS: tuple[str, ...] = ("upload.cgi", "end.pl", "download")

ENDPOINTS: tuple[str, ...] = API_ENDPOINTS + NODE_ENDPOINTS

#: Listing calls subject to the listing limits (§2.2, §2.3, §4).
LISTING_ENDPOINTS: frozenset[str] = frozenset({"folder/ls", "file/ls"})

TIB = 1 << 40


@dataclass(frozen=True)
class EmulatorConfig:
    """Knobs of the emulated account. Times in seconds, sizes in bytes.

    ``time_scale`` multiplies every *limit* window and lock duration (``rate_per_second``'s 1 s window,
    ``folder_list_interval``, ``listing_interval``, ``all_files_interval``, ``user_info_interval``,
    ``flood_lock_seconds``) so that tests can run the real rules at e.g. 1/100 speed. It does **not** scale
    ``token_ttl``, ``recovery_window``, ``visibility_delay``, ``latency`` nor ``lock_for(seconds)``.
    """

    #: Master switch for the automatic limits (§4). ``lock_for`` and the "flood" fault still work when False.
    limits: bool = True
    time_scale: float = 1.0
    #: "Rate limit: 3 requests per second" (§4 [swagger]); all /v1 calls together, sliding 1 s window.
    rate_per_second: float = 3.0
    #: "1 request per folder per 30 s" (§2.2, §2.3, §4); keyed by folder_id across folder/ls and file/ls.
    folder_list_interval: float = 30.0
    #: "about 1 directory listing every 3 s in general" (§4, rclone #4161/#8331); folder/ls + file/ls together.
    listing_interval: float = 3.0
    #: file/ls with folder_id -1 "limited to 1 request per hour" (§2.3, §4).
    all_files_interval: float = 3600.0
    #: user/info "1 per 5 minutes per user" (§2.1, §4).
    user_info_interval: float = 300.0
    #: [UNVERIFIED choice] No source gives the ban duration (§4 "Ban duration"); 60 s. A call during the lock
    #: answers the flood error again and extends the lock to now + flood_lock_seconds.
    flood_lock_seconds: float = 60.0
    #: "Token lifetime: 5 minutes" (§5). Not scaled.
    token_ttl: float = 300.0
    #: "Recovery allowed for 30 minutes" (§5). Not scaled.
    recovery_window: float = 1800.0
    #: Eventual consistency (§6 "Visibility", §8.6): new uploads appear in listings only after this delay.
    visibility_delay: float = 0.0
    #: Added to every request (except /_emulator control routes).
    latency: float = 0.0
    #: Bytes per second cap per response body stream (downloads). None = unlimited. §5 has no speed numbers.
    bandwidth: int | None = None
    #: Account capacity (reported by user/info, §2.1). [UNVERIFIED choice] 1 TiB.
    quota: int = TIB
    #: "up to 500 files per upload" (§6 Limits).
    max_files_per_upload: int = 500
    #: "Per file 300 GB" (§6 Limits, rclone refuses more than 300e9).
    max_file_size: int = 300_000_000_000
    #: "per upload 500 GB" (§6 Limits).
    max_upload_size: int = 500_000_000_000
    #: "limited to 5 000 results" per listing (§2.2, §2.3, §4); no pagination parameter exists. folder/ls counts
    #: sub-folders and files together (sub-folders first); file/ls counts its items (oldest upload first).
    max_listing: int = 5000
    #: file/ls ``sent_before`` / ``sent_after`` (§2.3) bounds: strict ``<`` / ``>`` by default ([UNVERIFIED]:
    #: §2.3 does not say; a client that assumes inclusive bounds loses the files dated exactly at a bound).
    #: True = inclusive ``<=`` / ``>=`` (the ``lenient`` profile).
    date_filter_inclusive: bool = False
    #: Upload dates (§7 "date" = upload time) of files stored through upload.cgi / ``put_file`` are the wall
    #: clock, but two files of the account are at least this many seconds apart ([UNVERIFIED choice]: at most
    #: 100 files per displayed second, so a ``sent_*`` window can always be split below 5 000, §2.3). Seeded
    #: files get distinct whole-second dates in the past (``Emulator.seed``).
    upload_date_spacing: float = 0.01
    #: Folder names at most 250 chars (§2.11, §7); file names assumed the same (§7 [UNVERIFIED; assume 250]).
    max_name: int = 250
    #: §2.13: the apidoc says ``rename`` *ignores* ``destination_*`` (so a folder/mv carrying ``rename`` only
    #: renames in place). rclone 1.60 sends both. [UNVERIFIED choice] default follows the apidoc; set True to
    #: make a folder/mv with both fields move *and* rename (what rclone's one-call DirMove assumes).
    folder_mv_rename_moves: bool = False
    #: How long an end.pl result stays available after the POST: "kept for 2 h" (§6 step 4). Not scaled.
    upload_result_ttl: float = 7200.0

    def scaled(self, seconds: float) -> float:
        """A limit window or lock duration after ``time_scale`` (seconds)."""
        return seconds * self.time_scale
