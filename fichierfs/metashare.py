"""Changes shared with the other mounts of the account (part of MetaCache).

A change of ours is told (``on_change``) as "put" (this entry now has this name in this
folder) or "del" (it left this folder); :mod:`fichierfs.listshare` carries it to the other
mounts, which apply it to the folders they have listed (:meth:`SharedChanges.apply_shared`)
instead of re-listing.
"""


from __future__ import annotations

from datetime import datetime
from typing import Any

from fichierfs.inodes import (
    Node,
    _dup_name,
)
from fichierfs.metamerge import ListingMerge
from fichierfs.models import FileUrl, FolderId, RemoteFile


class SharedChanges(ListingMerge):
    """Telling our changes, applying the other mounts' (see module docstring)."""

    def _tell(self, op: str, node: Node, *, new: bool = False) -> None:
        if self.on_change is None or self._loading:
            return
        parent = self._nodes.get(node.parent)
        if parent is None or parent.folder_id is None or int(parent.folder_id) < 0:
            return
        if node.is_dir:
            if node.folder_id is None or int(node.folder_id) < 0:
                return  # not created remotely yet (mkdir pending): told once it has its id
            key: str | int = int(node.folder_id)
        elif node.file is not None and node.local_key is None:
            key = str(node.file.url)
        else:
            return  # a local staging copy: told once its upload gives it a url
        change: dict[str, Any] = {"op": op, "f": int(parent.folder_id), "k": key, "n": node.name, "t": node.mtime}
        if new:
            change["new"] = True  # a folder 1fichier just created: empty, its content comes as changes
        if op == "put" and node.file is not None:
            rf = node.file
            change["rf"] = [rf.size, None if rf.date is None else rf.date.isoformat(), rf.checksum, rf.content_type,
                            rf.filename]
        self.on_change(change)

    def _tell_gone(self, parent_ino: int, url: str) -> None:
        parent = self._nodes.get(parent_ino)
        if self.on_change is not None and parent is not None and parent.folder_id is not None \
                and int(parent.folder_id) >= 0 and not self._loading:
            self.on_change({"op": "del", "f": int(parent.folder_id), "k": str(url)})

    def url_removed(self, node: Node, url: str) -> None:
        """``node``'s old copy ``url`` is being removed and nothing replaces it remotely (the file was emptied:
        empty files stay local, §8.8): the other mounts drop the entry instead of showing the old size and
        failing to read it (breaker: `truncate -s 0` on A, B listed 5,000 bytes and `cat` gave ENOENT)."""
        self._tell_gone(node.parent, url)

    def apply_shared(self, change: dict[str, Any]) -> bool:
        """Apply a change another mount of the account told (see :meth:`_tell`) to a folder we
        have listed; our own pending or recent changes win (as in :meth:`merge`). True if applied."""
        folder = self.node_for_folder(int(change["f"]))
        if folder is None or folder.listed_at is None or folder.gone or folder.ino in self._incomplete:
            return False  # never listed here: its first listing will show it
        now = self.clock()
        key = change["k"]
        if isinstance(key, int):
            if self._is_hidden(self._hidden_folders, key, now):
                return False
            known = self.node_for_folder(key)
        else:
            if self._is_hidden(self._hidden_urls, key, now):
                return False
            known = self.node_for_url(FileUrl(key))
        if known is not None and known.local_key is not None:
            return False  # new content of ours is on its way: it replaces whatever the others did
        if known is not None and known.pinned_until > now and change["op"] != "del":
            return False
        # a "del" wins over our pin: it names this very url or folder, which the other mount could only
        # delete after it saw it, so it is never older than our own change (breaker: B rewrote a file A had
        # just uploaded; A ignored "del", kept its own deleted copy under the plain name for the 300 s pin
        # and showed B's as "(dup …)"; an append on A then made a second file of that name on 1fichier)
        if change["op"] == "del":
            if known is None or known.parent != folder.ino or folder.children.get(known.name) != known.ino:
                return False
            del folder.children[known.name]
            self.notifier.invalidate_entry(folder.ino, known.name)
            self._touch_dir(folder.ino, listed=True)
            self._mark_gone(known)
            self.shared_applied += 1
            return True
        name = str(change["n"])
        if known is not None:  # moved or renamed: leave its old place
            self._take_out(known, listed=True)
        taken = folder.children.get(name)
        other = self._nodes.get(taken) if taken is not None and (known is None or taken != known.ino) else None
        if other is not None and not self._pinned_here(other.ino, folder.ino, now):
            # the other mount's newer entry takes the name (as the newest does in a listing); the
            # one here moves aside, and goes when its "del" comes (a replaced file's old url)
            alt = _dup_name(name, other.file.url) if other.file is not None else f"{name} (dup {other.folder_id})"
            del folder.children[name]
            other.name = alt
            folder.children[alt] = other.ino
            self.notifier.invalidate_entry(folder.ino, alt)
            other = None
        if isinstance(key, int):
            if other is not None:
                name = f"{name} (dup {key})"
            child = self._folder_node(key, folder.ino, name, float(change.get("t") or 0.0))
            if change.get("new") and child.listed_at is None:
                child.listed_at = now  # just created (empty): what goes in it comes through this feed
        else:
            size, date, checksum, ctype, filename = change["rf"]
            when = None if date is None else datetime.fromisoformat(date)
            rf = RemoteFile(FileUrl(key), str(filename), int(size), when, checksum, ctype,
                            folder_id=FolderId(int(change["f"])))
            if other is not None:  # our own pending entry keeps the name
                name = _dup_name(name, key)
            child = self._file_node(rf, folder.ino, name)
        folder.children[name] = child.ino
        self.notifier.invalidate_entry(folder.ino, name)
        self._touch_dir(folder.ino, listed=True)
        self.shared_applied += 1
        return True
