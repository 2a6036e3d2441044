"""Fidelity: Debian's rclone 1.60.1 (unmodified fichier backend) against the loopback emulator.

rclone is an independent client of the real 1fichier API, so whatever it does against
the real service must also work against the emulator. The exceptions are the places
where docs/1fichier-api.md (the referee) shows that rclone 1.60 itself is wrong.
The tests run in file order and share one emulator and one remote tree. A step whose
prerequisites failed is skipped, not failed.

What rclone 1.60.1 sends (from `git show v1.60.1:backend/fichier/*.go`):

* every API call goes through the pacer of its Fs: call *starts* are >= 400 ms apart
  (one pacer per Fs instance, and moveto/copyto build two).
  Retryable errors (403/429/5xx) jump the sleep to 5 s and are retried up to
  --low-level-retries times.
* List(dir) = file/ls{folder_id} then folder/ls{folder_id}. Put() first runs NewObject()
  (another file/ls of the destination folder), then get_upload_server (GET + JSON
  content type), POST upload.cgi (multipart `file[]` + `did`), follows the 302 to
  end.pl, then GETs end.pl again with `JSON: 1`.
* About = POST user/info.cgi with no body; used = cold_storage, total =
  available_cold_storage.
* Open = download/get_token{url,single:1} then GET with a Range header.
* Copy = file/cp{urls,folder_id,rename:<leaf>} then file/info{url:to_url}.
* Move: **rclone 1.60 compares the destination's directory with itself**:
  `_, currentDirectoryID := f.dirCache.FindPath(ctx, remote, false)` and
  `createObject(ctx, remote)` both resolve the *destination*. So it always calls
  file/rename{urls:[{url,filename:<dst leaf>}]} and never calls file/mv. rclone fixed this
  in commit 3f2074901 (2024-09, #7856): "Rclone was using the wrong object for some
  operations" and "Fichier changed the API disallowing a move to the same name". As a
  result:
    - a cross-folder moveto with a new name renames the file *in its source folder*,
      and rclone still reports success;
    - a cross-folder moveto with the same name sends a same-name rename, which the API
      refuses with "No file has been renamed #312" (doc section 2.7, section 3 table,
      and section 8.11).
  The two tests for those cases therefore expect rclone's documented misbehaviour.
* Error codes: 1.60's `#\\d{1,3}` regex keeps the '#', so Atoi fails and no code is ever
  recognised. Flood (#374/#412) is just retried through the pacer (doc section 3 cites
  the later fix 20c9e0cab).

Pacing: the emulator runs with limits on and with --time-scale (conftest.DEFAULT_TIME_SCALE,
whose comment gives the measurements). rclone 1.60 cannot meet the doc's section 4 limits
in real time: 400 ms pacing against "about 1 listing per 3 s" and "same folder once per
30 s", and moveto/copyto run two Fs, each with its own pacer, in one process. The test
asserts flood_locks == 0 and that no rclone log shows a low-level retry.
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


def test_moveto_cross_folder_new_name_rclone160_renames_in_place(world):
    """rclone 1.60 bug (fixed upstream in 3f2074901): a cross-folder Move compares the
    destination directory with itself, so it sends file/rename with the new leaf and never
    file/mv. rclone reports success, but the file is renamed inside its *source* folder.
    A faithful emulator must do exactly what file/rename asks (doc section 2.7)."""
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("moveto", "emu:tree/licenses/MPL-2.0", "emu:tree/doc/MPL-moved")
    assert_clean(res)
    after = fx.stats()
    d = delta(before, after)
    assert_moved(before, after, "file/rename")
    assert not any("file/mv" in k for k in d), f"rclone 1.60 is not expected to call file/mv: {d}"
    (world.expected / "licenses/MPL-2.0").rename(world.expected / "licenses/MPL-moved")
    lic = remote_dir(fx, "emu:tree/licenses")
    assert "MPL-2.0" not in lic, lic
    assert "MPL-moved" in lic, f"file/rename must rename in place (doc 2.7): {lic}"
    assert_same_file(lic["MPL-moved"], world.local["licenses/MPL-2.0"])
    # that doc/ did not get a copy is checked by test_check_final (whole tree vs expected)
    world.done.add("moveto-cross-new-name")


def test_moveto_cross_folder_same_name_refused(world):
    """rclone 1.60 turns a same-name cross-folder move into a same-name file/rename.
    The API refuses that with `No file has been renamed #312` (doc 2.7, section 3 table,
    8.11; rclone #7856). So rclone must fail and the file must stay where it was."""
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    res = fx.rclone("moveto", "emu:tree/licenses/Apache-2.0", "emu:tree/doc/Apache-2.0",
                    "--low-level-retries", "1", check=False)
    after = fx.stats()
    assert res.returncode != 0, "a same-name file/rename must be refused (doc 2.7/8.11)\n" + res.describe()
    assert "#312" in res.stderr or "No file has been renamed" in res.stderr, res.describe()
    assert_moved(before, after, "file/rename")
    assert not any("file/mv" in k for k in delta(before, after)), delta(before, after)
    lic = remote_dir(fx, "emu:tree/licenses")
    assert "Apache-2.0" in lic, lic
    assert_same_file(lic["Apache-2.0"], world.local["licenses/Apache-2.0"])
    world.done.add("moveto-cross-same-name")


def test_copyto(world):
    world.require("copy")
    fx = world.fx
    before = fx.stats()
    # new name into a folder that does not exist yet (rclone creates it, then file/cp)
    fx.rclone("copyto", "emu:tree/licenses/GPL-3", "emu:tree/copies/GPL-3.copy")
    # same name into another folder (file/cp with rename == the current name)
    fx.rclone("copyto", "emu:tree/doc/bash/copyright", "emu:tree/copies/copyright")
    after = fx.stats()
    assert_moved(before, after, "file/cp", "file/info", "folder/mkdir")
    assert calls(after, "file/cp") - calls(before, "file/cp") == 2, delta(before, after)
    (world.expected / "copies").mkdir()
    shutil.copyfile(world.src / "licenses/GPL-3", world.expected / "copies/GPL-3.copy")
    shutil.copyfile(world.src / "doc/bash/copyright", world.expected / "copies/copyright")
    copies = remote_dir(fx, "emu:tree/copies")
    assert set(copies) == {"GPL-3.copy", "copyright"}, copies
    assert_same_file(copies["GPL-3.copy"], world.local["licenses/GPL-3"])
    assert_same_file(copies["copyright"], world.local["doc/bash/copyright"])
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
    world.require("copy", "moveto-rename", "moveto-cross-new-name", "moveto-cross-same-name")
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
    # every endpoint rclone 1.60 uses in this run was served
    expected = ["user/info", "folder/ls", "file/ls", "folder/mkdir", "upload/get_upload_server",
                "upload.cgi", "end.pl", "download/get_token", "file/rename", "file/cp", "file/info",
                "file/rm", "folder/rm", "download"]
    missing = [ep for ep in expected if calls(stats, ep) == 0]
    assert not missing, f"counters that never moved: {missing}; calls: {used}"
    assert calls(stats, "file/mv") == 0, used   # unreachable from rclone 1.60's Move
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
