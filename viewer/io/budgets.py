"""How much one input may make the viewer allocate: budgets derived from the machine's memory.

A header can declare anything: a 4 KB sparse DICOM file 2 GB of pixel data, a 5 MB ZIP member
a gigabyte once inflated, fifty 12000 x 12000 TIFF pages that share one compressed strip, a
slice 50 km from its neighbours that would put a series on an even grid of millions of slices.
Every reader therefore compares what the input *declares* (rows x columns x frames x bytes,
pages x page size, ``ZipInfo.file_size``, the extent of a resampled grid) with these budgets
BEFORE it allocates, and refuses with a one-line reason that names the budget and how to raise
it (:func:`over_budget`); reads that a header may lie about are bounded as well.

The budgets, for a machine of memory M (the physical memory, or the container's cgroup limit
where that is lower):

======================  ==========================================  ==================  =========
budget                  what it bounds                              derived             M = 24 GiB
======================  ==========================================  ==================  =========
``load_bytes``          decoded pixels of one file (float32 grey)   M / 16              1.5 GiB
``study_bytes``         decoded pixels of one series                M / 8               3 GiB
``grid_bytes``          a resampled grid (MPR, a 3-D model's)      M / 16              1.5 GiB
``slices``              slices or frames of one series              M / 8 MiB           3072
``pages``               pages of one raster (TIFF) file             M / 8 MiB           3072
``member_bytes``        inflated bytes of one ZIP member            M / 16              1.5 GiB
======================  ==========================================  ==================  =========

Each has a floor (a 2 GB laptop still opens a 512 x 512 x 300 CT series); see ``_FLOORS``.
The slice budget is not about pixels: every slice costs the session a few MB beyond them (a map
per method at the model's input size, predictions, frame records; about 2 MB measured for one
method), which is what made 5000 slices of 1 x 1 pixel take 10 GB.

Reading them: :func:`budgets` returns the budgets in force (``budgets().describe()`` lists them).
Environment variables override them: ``SALIENCY_VIEWER_MEMORY`` sets M itself (e.g. ``16G``),
and ``SALIENCY_VIEWER_LOAD_BYTES``, ``..._STUDY_BYTES``, ``..._GRID_BYTES``, ``..._SLICES``,
``..._PAGES``, ``..._MEMBER_BYTES`` each one budget (sizes as bytes or with K, M, G, T; a value
that is not one is ignored). They are read at each call, so a test or a frozen app can set them.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from pathlib import Path

ENV_PREFIX = "SALIENCY_VIEWER_"
_MEMORY_ENV = ENV_PREFIX + "MEMORY"
# Used when the machine's memory cannot be read at all.
_FALLBACK_MEMORY = 8 * 1024**3
# A slice's cost to the session beyond its pixels, for the slice budget (see the docstring).
_BYTES_PER_SLICE = 8 * 1024**2
_DIVISORS = {
    "load_bytes": 16,
    "study_bytes": 8,
    "grid_bytes": 16,
    "slices": _BYTES_PER_SLICE,
    "pages": _BYTES_PER_SLICE,
    "member_bytes": 16,
}
_FLOORS = {
    "load_bytes": 256 * 1024**2,
    "study_bytes": 512 * 1024**2,
    "grid_bytes": 256 * 1024**2,
    "slices": 512,
    "pages": 64,
    "member_bytes": 256 * 1024**2,
}
# What each budget is per, for the reasons (``over_budget``).
_UNITS = {
    "load_bytes": "per file",
    "study_bytes": "per series",
    "grid_bytes": "per resampled grid",
    "slices": "slices per series",
    "pages": "pages per file",
    "member_bytes": "per ZIP member",
}


@dataclass(frozen=True)
class Budgets:
    """The budgets in force; bytes unless the name says otherwise. See the module docstring."""

    memory: int
    load_bytes: int
    study_bytes: int
    grid_bytes: int
    slices: int
    pages: int
    member_bytes: int

    @classmethod
    def derive(cls, memory: int) -> Budgets:
        """The default budgets of a machine with ``memory`` bytes."""
        values = {name: max(_FLOORS[name], memory // divisor) for name, divisor in _DIVISORS.items()}
        return cls(memory=memory, **values)

    def describe(self) -> str:
        """One line per budget, with the variable that overrides it."""
        lines = [f"memory the budgets derive from: {size_text(self.memory)} ({_MEMORY_ENV})"]
        for item in fields(self)[1:]:
            value = getattr(self, item.name)
            amount = f"{value}" if item.name in ("slices", "pages") else size_text(value)
            lines.append(f"{item.name}: {amount} {_UNITS[item.name]} ({env_name(item.name)})")
        return "\n".join(lines)


def env_name(budget: str) -> str:
    """The environment variable that overrides ``budget`` (a field of :class:`Budgets`)."""
    return ENV_PREFIX + budget.upper()


_ENV_NAMES = (_MEMORY_ENV, *(env_name(item.name) for item in fields(Budgets)[1:]))


def budgets() -> Budgets:
    """The budgets in force: derived from the machine's memory, overridden by the environment."""
    return _budgets(tuple(os.environ.get(name, "") for name in _ENV_NAMES))


@lru_cache(maxsize=8)
def _budgets(settings: tuple[str, ...]) -> Budgets:
    """The budgets for these values of ``_ENV_NAMES`` (cached: readers ask once per file)."""
    memory = _parse_size(settings[0]) or machine_memory()
    derived = Budgets.derive(memory)
    overrides = {}
    for item, text in zip(fields(Budgets)[1:], settings[1:], strict=True):
        value = _parse_size(text)
        if value:
            overrides[item.name] = value
    return Budgets(**{**derived.__dict__, **overrides}) if overrides else derived


def over_budget(what: str, amount: int, budget: str) -> str | None:
    """None when ``amount`` fits ``budget`` (a field of :class:`Budgets`), else the reason:
    ``"<what> (4.3 GB) is beyond the budget of 1.5 GB per file (SALIENCY_VIEWER_LOAD_BYTES)"``."""
    limit = getattr(budgets(), budget)
    if amount <= limit:
        return None
    if budget in ("slices", "pages"):  # ``what`` says the count: "series of 5000 slices"
        said, allowed = "", f"{limit}"
    else:
        said, allowed = f" ({size_text(amount)})", size_text(limit)
    unit, variable = _UNITS[budget], env_name(budget)
    return f"{what}{said} is beyond the budget of {allowed} {unit} ({variable} raises it)"


def decoded_bytes(rows: int, columns: int, frames: int = 1, samples: int = 1, bits: int = 16) -> int:
    """Bytes of decoded pixels as the viewer keeps them: float32 for grey (real-world values
    after the Modality LUT), the decoded integers for colour (three samples a pixel)."""
    pixels = max(rows, 0) * max(columns, 0) * max(frames, 1)
    if samples <= 1:
        return pixels * 4
    return pixels * 3 * max(1, (bits + 7) // 8)


def size_text(n: int) -> str:
    """``1.5 GB``, ``512 MB``: decimal units, as file managers show sizes."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _parse_size(text: str) -> int | None:
    """``"16G"``, ``"512M"``, ``"1.5g"``, ``"3072"``: bytes (binary multiples), or None."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if text and text[-1] in "KMGT":
        scale = 1024 ** ("KMGT".index(text[-1]) + 1)
        text = text[:-1]
    try:
        value = float(text) * scale
    except ValueError:
        return None
    return int(value) if value >= 1 else None


@cache
def machine_memory() -> int:
    """Physical memory, or the container's memory limit where that is lower (read once)."""
    found = [m for m in (_physical_memory(), _cgroup_limit()) if m]
    return min(found) if found else _FALLBACK_MEMORY


def _physical_memory() -> int | None:
    if sys.platform == "win32":
        return _windows_memory()
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _windows_memory() -> int | None:
    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("length", ctypes.c_ulong),
            ("load", ctypes.c_ulong),
            ("total_physical", ctypes.c_ulonglong),
            ("available_physical", ctypes.c_ulonglong),
            ("total_page_file", ctypes.c_ulonglong),
            ("available_page_file", ctypes.c_ulonglong),
            ("total_virtual", ctypes.c_ulonglong),
            ("available_virtual", ctypes.c_ulonglong),
            ("available_extended_virtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.length = ctypes.sizeof(MemoryStatus)
    try:
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.total_physical)
    except (AttributeError, OSError):
        return None
    return None


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2, then v1), if it has one."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            return int(text)
    return None
