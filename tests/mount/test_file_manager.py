"""A real file manager on the mount: PCManFM under Xvfb opens a folder of 200 real images and
documents with thumbnails on; the API cost is read from the emulator's counters and a
screenshot is kept in ``artifacts/file-manager.png`` (numbers in ``artifacts/file-manager.json``).

Measured (emulator limits on, time-scaled): PCManFM reads every picture (libfm's ``loader``
thread) and sniffs the HTML pages — 160 download links and 4.3 MB for 200 files — with no
flood lock, since the scheduler paces the calls. With the storm defence of
``fichierfs/storm.py`` wired into ``ops.open`` (thumbnailers served only what is local), the
same folder costs 20 links and 1.7 MB. The assertion below is the budget without the defence
(at most one download link per file, no flood lock); when the status document carries a
``storm`` section (the defence is wired), the tighter budget applies.

The test installs Xvfb, PCManFM and ImageMagick with apt-get if they are missing, and skips
(with the reason) only if that fails.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.mount.conftest import ROOT, _stop, run_emulator, run_mount

ARTIFACTS = ROOT / "artifacts"
APT = {"Xvfb": "xvfb", "pcmanfm": "pcmanfm", "import": "imagemagick", "xdotool": "xdotool"}
N_FILES = 200
BUDGET_TOKENS = N_FILES          # without the defence: at most one download link per file
BUDGET_TOKENS_DEFENDED = 25      # with it: only what non-thumbnailer threads read (PCManFM: 20 HTML sniffs)
BUDGET_OTHER = 6                 # listings and user/info (statfs for "Free space")


def _ensure_packages() -> str | None:
    missing = sorted({pkg for exe, pkg in APT.items() if shutil.which(exe, path="/usr/bin:/bin") is None})
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"missing {missing} and cannot apt-get install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if res.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if res.returncode != 0:
            return f"apt-get install {' '.join(missing)} failed: {res.stderr.strip()[-300:]}"
    return None


def build_seed(dest: Path, n: int = N_FILES) -> dict[str, int]:
    """``dest/Pictures``: n real files — PNG icons, JPEG photos made by ImageMagick, SVGs, texts, HTML pages."""
    folder = dest / "Pictures"
    folder.mkdir(parents=True)
    rnd = random.Random(7)

    def pick(root: str, pattern: str, lo: int, hi: int) -> list[Path]:
        found = sorted(p for p in Path(root).rglob(pattern)
                       if p.is_file() and not p.is_symlink() and lo < p.stat().st_size < hi)
        rnd.shuffle(found)
        return found

    pngs, svgs = pick("/usr/share/icons", "*.png", 1500, 1 << 20), pick("/usr/share/icons", "*.svg", 2000, 200_000)
    texts, pages = pick("/usr/share/doc", "copyright", 800, 1 << 20), pick("/usr/share/doc", "*.html", 500, 1 << 20)
    plan = {"jpg": 40, "png": 80, "svg": 20, "txt": 40, "html": 20}
    if len(pngs) < plan["png"] + plan["jpg"] or len(svgs) < plan["svg"]:
        plan["png"] = len(pngs) - plan["jpg"]
        plan["svg"] = len(svgs)
    plan["txt"] = min(len(texts), n - plan["jpg"] - plan["png"] - plan["svg"] - plan["html"])
    made = dict.fromkeys(plan, 0)
    convert = "/usr/bin/convert"
    base = folder.parent / "plasma.jpg"
    subprocess.run([convert, "-size", "640x480", "-seed", "1", "plasma:fractal", str(base)], check=True, capture_output=True)
    for k in range(plan["jpg"]):
        out = folder / f"photo-{k:03d}.jpg"
        subprocess.run([convert, str(base), "-roll", f"+{k * 37}+{k * 23}", "-modulate", f"100,100,{(k * 17) % 200}",
                        str(pngs[k]), "-gravity", "center", "-composite", "-quality", "85", str(out)],
                       check=True, capture_output=True)
        made["jpg"] += 1
    base.unlink()
    for k, src in enumerate(pngs[plan["jpg"]:plan["jpg"] + plan["png"]]):
        shutil.copyfile(src, folder / f"icon-{k:03d}-{src.stem[:20]}.png")
        made["png"] += 1
    for k, src in enumerate(svgs[:plan["svg"]]):
        shutil.copyfile(src, folder / f"drawing-{k:03d}.svg")
        made["svg"] += 1
    for k, src in enumerate(texts[:plan["txt"]]):
        shutil.copyfile(src, folder / f"license-{k:03d}-{src.parent.name[:20]}.txt")
        made["txt"] += 1
    for k, src in enumerate(pages[:plan["html"]]):
        shutil.copyfile(src, folder / f"page-{k:03d}.html")
        made["html"] += 1
    return made


def _start_xvfb(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    r, w = os.pipe()
    with open(log, "wb") as err:
        proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                                pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=err)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    assert number.isdigit(), f"Xvfb did not start: {log.read_text()}"
    return proc, f":{number}"


def _settle(emu, window_up, quiet: float = 3.0, limit: float = 90.0) -> dict:
    """Wait until the emulator's counters stop moving for ``quiet`` seconds (and the window is up)."""
    start = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - start < limit:
        stats = emu.stats()
        key = json.dumps(stats, sort_keys=True)
        if key != last:
            last, since = key, time.monotonic()
        elif time.monotonic() - since >= quiet and window_up():
            return stats
        time.sleep(0.25)
    raise AssertionError(f"API calls did not settle in {limit} s: {last}")


def test_pcmanfm_opens_a_folder_of_200_files_without_a_storm(tmp_path: Path) -> None:
    reason = _ensure_packages()
    if reason:
        pytest.skip(reason)
    seed = tmp_path / "seed"
    made = build_seed(seed)
    assert sum(made.values()) == N_FILES, made
    home = tmp_path / "home"
    (home / ".config" / "libfm").mkdir(parents=True)
    (home / ".config" / "pcmanfm" / "default").mkdir(parents=True)
    (home / ".config" / "libfm" / "libfm.conf").write_text(
        "[config]\nshow_thumbnail=1\nthumbnail_local=1\nthumbnail_max=4096\n")
    (home / ".config" / "pcmanfm" / "default" / "pcmanfm.conf").write_text(
        "[ui]\nview_mode=icon\nwin_width=1280\nwin_height=1000\n")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "file-manager.png"
    shot.unlink(missing_ok=True)
    with run_emulator(tmp_path / "state", seed) as emu:
        emu.reset()
        with run_mount(emu, tmp_path / "mnt") as m:
            folder = m.path / "Pictures"
            assert len(os.listdir(folder)) == N_FILES
            xvfb, display = _start_xvfb(tmp_path / "xvfb.log")
            fm = None
            try:
                env = {**os.environ, "DISPLAY": display, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                       "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local/share"),
                       "NO_AT_BRIDGE": "1"}
                env.pop("DBUS_SESSION_BUS_ADDRESS", None)
                with open(tmp_path / "pcmanfm.log", "wb") as out:
                    fm = subprocess.Popen(["pcmanfm", str(folder)], env=env, stdout=out, stderr=subprocess.STDOUT)

                def window_up() -> bool:
                    res = subprocess.run(["xdotool", "search", "--name", "Pictures"], env=env, capture_output=True)
                    return res.returncode == 0 and bool(res.stdout.strip())

                stats = _settle(emu, window_up)
                assert fm.poll() is None, (tmp_path / "pcmanfm.log").read_text()
                subprocess.run(["import", "-window", "root", str(shot)], env=env, check=True, timeout=60)
                status = json.loads(os.getxattr(m.path, "user.fichierfs.status"))
            finally:
                if fm is not None:
                    _stop(fm)
                _stop(xvfb)
    calls = stats["calls"]
    tokens = calls.get("download/get_token", 0)
    other = sum(v for k, v in calls.items() if k not in ("download/get_token", "download"))
    defended = "storm" in status
    result = {"files": made, "calls": {k: v for k, v in calls.items() if v}, "flood_locks": stats["flood_locks"],
              "bytes_down": stats["bytes_down"], "defence": status.get("storm"),
              "thumbnails_written": len(list((home / ".cache" / "thumbnails").rglob("*.png")))}
    (ARTIFACTS / "file-manager.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, sort_keys=True))
    assert shot.exists() and shot.stat().st_size > 20_000, "no usable screenshot"
    colours = subprocess.run(["identify", "-format", "%k", str(shot)], capture_output=True, text=True, check=True)
    assert int(colours.stdout.strip() or 0) > 64, "the screenshot is blank"
    assert stats["flood_locks"] == 0
    assert other <= BUDGET_OTHER, calls
    assert tokens <= (BUDGET_TOKENS_DEFENDED if defended else BUDGET_TOKENS), calls
    assert calls.get("download", 0) <= tokens + 5, "each file's link is reused for all its reads"
