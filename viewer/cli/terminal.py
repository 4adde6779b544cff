"""stdout and stderr as every command (and the GUI's terminal messages) write to them.

Two things hold for all output, whichever module prints it, so they are done here once, around
the whole program (``viewer.launch.main``), not at each ``print``:

- **No control characters reach the terminal.** Header text, file names, labels and reasons are
  the sender's text; ``sys.stdout`` and ``sys.stderr`` pass every write through
  :func:`viewer.io.safe_text.printable` (newlines kept), so ``ESC [2J`` prints as ``\\x1b[2J``
  and a file name that is not UTF-8 as ``\\xff`` instead of failing to encode. The progress bar's
  own carriage return goes through :func:`write_control`.
- **A closed stdout ends the program quietly** (``saliency-viewer info --json | head``): the
  recipe of the Python documentation (signal module, "Note on SIGPIPE"). A write to a pipe whose
  reader has gone raises :class:`OutputClosed`, which no command's ``except OSError`` mistakes
  for a failure of its own; stdout and stderr are pointed at ``os.devnull`` so the interpreter's
  last flush says nothing, and the exit status is ``EXIT_OUTPUT_CLOSED`` (141, what a shell
  reports for a writer that SIGPIPE ended, as ``yes | head`` shows with ``pipefail``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TextIO

from viewer.io.safe_text import printable

EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE


class OutputClosed(BaseException):
    """The reader of stdout or stderr has gone (``head`` has its lines). A ``BaseException``, as
    ``KeyboardInterrupt`` is: it ends the program, and no ``except Exception`` of a command may
    report it (to a stream that is closed) or count it as a failed study."""


class _GuardedStream:
    """A text stream whose writes are made printable and whose closed pipe raises
    :class:`OutputClosed`; everything else (``isatty``, ``fileno``, ``buffer``, ``encoding``)
    is the stream's own."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.write_control(printable(text, newlines=True))

    def write_control(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise OutputClosed from None

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise OutputClosed from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def write_control(stream: TextIO, text: str) -> None:
    """Write ``text`` as it is, control characters included (a progress bar's ``\\r``), to
    ``stream`` (a guarded stream or any other). The caller makes what it interpolates printable."""
    if isinstance(stream, _GuardedStream):
        stream.write_control(text)
    else:
        stream.write(text)


@contextmanager
def guarded_output() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` guarded (see the module docstring) for the duration."""
    saved = sys.stdout, sys.stderr
    if sys.stdout is not None:  # None: a Windows GUI start has no console
        sys.stdout = _GuardedStream(sys.stdout)
    if sys.stderr is not None:
        sys.stderr = _GuardedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def run_guarded(main: Callable[[], int]) -> int:
    """``main()``'s exit status with its output guarded; ``EXIT_OUTPUT_CLOSED``, silently, when
    stdout or stderr was closed under it."""
    try:
        with guarded_output():
            try:
                return main()
            finally:  # also after argparse's exit: a closed pipe shows here, not at exit
                for stream in (sys.stdout, sys.stderr):
                    if stream is not None:
                        stream.flush()
    except (OutputClosed, BrokenPipeError):
        _to_devnull()
        return EXIT_OUTPUT_CLOSED


def _to_devnull() -> None:
    """Point stdout and stderr at ``os.devnull``: what is still buffered for the closed pipe is
    dropped there at exit instead of raising again (and printing "Exception ignored")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            with suppress(AttributeError, OSError, ValueError):  # no descriptor (a test's capture)
                os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


__all__ = ["EXIT_OUTPUT_CLOSED", "OutputClosed", "guarded_output", "run_guarded", "write_control"]
