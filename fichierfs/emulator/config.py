"""Emulator configuration and the endpoint names used by counters, faults and limits.

Every number comes from docs/1fichier-api.md (cited per field as "§N").
Units: all times are **seconds**, all sizes are **bytes**.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["API_ENDPOINTS", "ENDPOINTS", "NODE_ENDPOINTS", "EmulatorConfig", "LISTING_ENDPOINTS", "PROFILES"]

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


PROFILES: tuple[str, ...] = ("strict", "lenient")


@dataclass(frozen=True)
class EmulatorConfig:
    """Knobs of the emulated account. Times in seconds, sizes in bytes.

    ``time_scale`` multiplies every *limit* window and lock duration (``rate_per_second``'s 1 s window, the
    listing, folder, all-files and user/info intervals, ``flood_lock_seconds``, the ban growth bounds and
    ``location_window``) so that tests can run the real rules at e.g. 1/100 speed. It does **not** scale
    ``token_ttl``, ``recovery_window``, ``visibility_delay``, ``latency``, ``max_upload_seconds`` nor
    ``lock_for(seconds)``.

    Two profiles (``EmulatorConfig.profile("lenient", …)``, CLI ``--profile``) resolve each rule the doc marks
    [UNVERIFIED] the strict way (default: a client that passes it passes whichever reading 1fichier applies)
    or the forgiving way (``lenient``: to show what a client earns if 1fichier is kinder). See docs/emulator.md.

    Who is limited (§3, §4): "Flood detected: IP Locked #412" limits are kept per client address (the TCP
    peer; in-process: ``Emulator.transport(client_ip=…)``); "User Locked #223" limits per account (every
    ``emu-*`` key is the one account). A crossing by one address's own calls locks that address (#412); a
    crossing only by the account's calls from several addresses together locks the account everywhere (#223).
    """

    #: Master switch for the automatic limits (§4). ``lock_for`` and the "flood" fault still work when False.
    limits: bool = True
    time_scale: float = 1.0
    #: "Rate limit: 3 requests per second" (§4 [swagger]); all /v1 calls of one address, sliding 1 s window.
    rate_per_second: float = 3.0
    #: The same rate for the account's calls from every address together (#223, §3/§4 "per user/key";
    #: [UNVERIFIED] number: the doc gives none, strict reuses 3/s). 0 = no per-account rate (lenient).
    user_rate_per_second: float = 3.0
    #: "1 request per folder per 30 s" (§2.2, §2.3, §4); a folder is the account's, so the clock is kept per
    #: address and per account.
    folder_list_interval: float = 30.0
    #: "about 1 directory listing every 3 s in general" (§4, rclone #4161/#8331), per address.
    listing_interval: float = 3.0
    #: The same gap for the account's listings from every address together ([UNVERIFIED]; 0 = off, lenient).
    user_listing_interval: float = 3.0
    #: True (strict): folder/ls and file/ls share one folder's 30 s clock and the 3 s listing gap ([UNVERIFIED]:
    #: §2.2 and §2.3 each state the rule). False (lenient): each endpoint has its own clocks.
    shared_listing_clocks: bool = True
    #: file/ls with folder_id -1 "limited to 1 request per hour" (§2.3, §4); per account.
    all_files_interval: float = 3600.0
    #: user/info "1 per 5 minutes per user" (§2.1, §4).
    user_info_interval: float = 300.0
    #: user/info "1 per minute per IP" (§2.1, §4).
    user_info_ip_interval: float = 60.0
    #: A user/info crossing answers "Flood detected: IP Locked #38" (§3, [jd2019]) and locks the address's
    #: user/info while "downloads through the API keep working" (§2.1, §4). True (strict): the lock also refuses
    #: every other /v1 call of that address except download/get_token ([UNVERIFIED] whether listings keep
    #: working). False (lenient): only user/info is locked.
    user_info_lock_blocks_api: bool = True
    #: [UNVERIFIED choice] No source gives the ban duration (§4 "Ban duration"); 60 s for a first offence.
    flood_lock_seconds: float = 60.0
    #: True (strict): a call during a lock answers the flood error again and pushes the end of the lock to
    #: now + the lock's length ([UNVERIFIED] reading of §4). False (lenient): a lock ends when it ends.
    extend_lock: bool = True
    #: Bans grow for repeated offences (§4: the apidoc's "repeated … may result in temporary ban"; JD backs
    #: off 5 min then 60 min, §3): the n-th lock of an address (or of the account) within ``ban_memory`` of
    #: the end of the previous one lasts ``flood_lock_seconds × ban_growth^(n-1)``, at most ``ban_max_seconds``
    #: (1 h: the "IP Locked … about 1 h" security lock, §3). ``ban_growth`` 1 = no growth (lenient).
    ban_growth: float = 2.0
    ban_max_seconds: float = 3600.0
    ban_memory: float = 3600.0
    #: "Only 1 location allowed at a time #887" (§3, §5): a download (get_token or a token GET) from a second
    #: address while another address downloads, or did within ``location_window`` seconds, is refused
    #: ([UNVERIFIED] how long a location stays "active" after its last download; 30 s). False = off.
    one_location: bool = True
    location_window: float = 30.0
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
    #: "one upload process may run for at most 4 h" (§6 Limits): from get_upload_server's id to the end of the
    #: POST body ([UNVERIFIED choice] of the start point: §6 says to fetch a fresh id for every upload). A POST
    #: that ends later is refused as a whole (HTML page, nothing stored). Not scaled.
    max_upload_seconds: float = 4 * 3600.0

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> EmulatorConfig:
        """``strict`` (the defaults) or ``lenient``: separate listing clocks per endpoint, locks not extended,
        no ban growth, user/info's lock on user/info only, no per-account rate nor listing gap (only the
        per-user limits §2.1–§2.3 name), inclusive ``sent_*`` bounds. ``overrides`` win."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; expected one of {PROFILES}")
        base: dict[str, Any] = {}
        if name == "lenient":
            base = {"shared_listing_clocks": False, "extend_lock": False, "ban_growth": 1.0,
                    "user_info_lock_blocks_api": False, "user_rate_per_second": 0.0,
                    "user_listing_interval": 0.0, "date_filter_inclusive": True}
        return cls(**{**base, **overrides})

    def scaled(self, seconds: float) -> float:
        """A limit window or lock duration after ``time_scale`` (seconds)."""
        return seconds * self.time_scale
