"""`git clone` whose object store is unpacked into loose objects (~500 files over ~190 folders), REAL limits."""

from __future__ import annotations

from bench_kit.workloads.gitclone import GitClone


class GitCloneLoose(GitClone):
    """The same clone with git's pack unpacked (`git unpack-objects`): the object store spreads the files over
    ~190 folders, so the floor is one folder/mkdir + one get_upload_server per folder (`did` is one per POST)."""

    name = "gitclone_loose"
    order = 56
    labels = {"cold": "`git clone`, objects unpacked (loose) at the REAL limits, until `fichierfs sync` returns"}
    loose = True
