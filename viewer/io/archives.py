"""ZIP archives kept open while their members are read: each archive's central directory is
parsed once, not once per member.

Opening a ``zipfile.ZipFile`` reads its whole central directory; reopening it for every member
(as each header read, stream and pixel load once did) made a 20,000-member archive take minutes
to list. :func:`open_archive` hands out one open ``ZipFile`` per archive, reopened only when the
file on disk changes (its size, modification time or inode), for the few archives used most
recently. Reading members of one ``ZipFile`` from several threads is safe (zipfile serialises
reads of the shared file); a member stream still open when its archive is evicted keeps working,
as zipfile closes the file only when its last stream closes.
"""

from __future__ import annotations

import atexit
import os
import threading
import zipfile
from collections import OrderedDict

# Archives kept open at once (one study is usually one archive; a folder of a few is common).
KEPT_OPEN = 8

_open: OrderedDict[str, tuple[tuple[int, int, int], zipfile.ZipFile]] = OrderedDict()
_lock = threading.Lock()


def open_archive(path: str) -> zipfile.ZipFile:
    """The archive at ``path``, opened for reading once and kept open; raises what
    ``zipfile.ZipFile`` raises for a file that is not a readable archive."""
    key = os.path.realpath(path)
    stat = os.stat(key)
    version = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _lock:
        held = _open.get(key)
        if held is not None and held[0] == version:
            _open.move_to_end(key)
            return held[1]
        archive = zipfile.ZipFile(key)
        if held is not None:
            held[1].close()
        _open[key] = (version, archive)
        _open.move_to_end(key)
        while len(_open) > KEPT_OPEN:
            _, (_, oldest) = _open.popitem(last=False)
            oldest.close()
        return archive


def close_archives() -> None:
    """Close every archive kept open (at exit; on Windows an open file cannot be deleted)."""
    with _lock:
        while _open:
            _, (_, archive) = _open.popitem()
            archive.close()


atexit.register(close_archives)
