"""Files a study writes on a second thread while the next study is computed.

A film's previews (the map painted over the windowed film, then encoded) cost about a fifth of
what the film costs in a batch run, and need nothing from the network: ``explain`` hands them to
one writer thread and goes on to the next film, and waits for a study's writes only before that
study is committed (renamed into ``OUT`` and its rows appended). A study whose writes fail is not
committed, exactly as when they were written in line; nothing of it reaches ``OUT``. One thread:
painting is numpy and encoding is ISA-L's deflate, both outside the GIL for most of their time,
so on a machine with a core to spare they run beside the network's forward and backward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path


class BackgroundWrites:
    """One writer thread; writes grouped by the study folder they go into."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="study-files")
        self._pending: dict[Path, list[Future]] = {}

    def submit(self, folder: Path, write: Callable[..., object], *args) -> None:
        """Run ``write(*args)`` on the writer thread, as part of ``folder``'s study."""
        self._pending.setdefault(Path(folder), []).append(self._pool.submit(write, *args))

    def wait(self, folder: Path) -> None:
        """Block until ``folder``'s writes are done; the first that failed raises its error (after
        all of them have finished, so none is still writing into a folder that is then removed)."""
        futures = self._pending.pop(Path(folder), [])
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            raise errors[0]

    def discard(self, folder: Path) -> None:
        """Wait for ``folder``'s writes and drop their errors: the study failed anyway."""
        for f in self._pending.pop(Path(folder), []):
            f.exception()

    def close(self) -> None:
        for folder in list(self._pending):
            self.discard(folder)
        self._pool.shutdown(wait=True)

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
