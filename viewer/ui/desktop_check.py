"""Can this desktop show a Qt window? Checked before the first ``QApplication``, without importing Qt.

When Qt cannot load its platform plugin (missing xcb libraries) or reach the display server, it
prints a misleading hint and aborts the process (SIGABRT, a core dump on some systems). The
launcher asks :func:`diagnose` first and, on a problem, prints :func:`explain` (the missing
libraries with the install command for Debian/Ubuntu, Fedora and Arch, or what is wrong with the
display) and exits 1. :func:`install_fatal_handler` catches whatever Qt still finds fatal.

The plugin Qt will pick is worked out as Qt does on Linux: ``QT_QPA_PLATFORM`` (a ``;``-separated
list, tried in order), else the desktop session (``XDG_SESSION_TYPE``, ``WAYLAND_DISPLAY``); the
plugin file is looked up in ``QT_QPA_PLATFORM_PLUGIN_PATH``, ``QT_PLUGIN_PATH`` and PySide6's own
plugins folder, and its shared-library dependencies are resolved with ``ldd``. Displays are tried
for real: an X connection through libxcb, a connect() on the Wayland socket.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from viewer.resources import resource_path

# Platforms that draw into memory or a framebuffer: no display server to reach.
_HEADLESS = {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"}
_DISTROS = (
    ("Debian/Ubuntu", "sudo apt-get install", "debian"),
    ("Fedora", "sudo dnf install", "fedora"),
    ("Arch", "sudo pacman -S", "arch"),
)
_HEADLESS_HINT = (
    "On a machine without a display, use --screenshot OUT.png or --self-test, or set "
    "QT_QPA_PLATFORM=offscreen."
)


@dataclass(frozen=True)
class PlatformProblem:
    """Why one Qt platform plugin cannot start: missing libraries, or an unreachable display."""

    platform: str
    reason: str  # one line
    missing: tuple[str, ...] = ()  # sonames that the dynamic loader cannot find


@dataclass(frozen=True)
class Diagnosis:
    """The platforms Qt would try, in order, and the problem of each that cannot start."""

    platforms: tuple[str, ...]
    problems: tuple[PlatformProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Qt can start when at least one of its candidate platforms can (it takes the first)."""
        return len(self.problems) < len(self.platforms) or not self.platforms

    @property
    def platform(self) -> str | None:
        """The platform Qt will start on: the first candidate without a problem ("native" off
        Linux, where nothing is checked); ``None`` when none can start."""
        if not self.platforms:
            return "native"
        return self.platforms[len(self.problems)] if self.ok else None


def candidate_platforms(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The platform plugins Qt tries, in order, in this environment (Linux and other X11 Unixes)."""
    env = os.environ if env is None else env
    if requested := env.get("QT_QPA_PLATFORM", "").strip():
        # "xcb:option=value" carries plugin options after a colon.
        return tuple(name.split(":")[0].strip() for name in requested.split(";") if name.strip())
    session = env.get("XDG_SESSION_TYPE", "").lower()
    if session == "x11":
        return ("xcb",)
    if session == "wayland" or (env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")):
        return ("wayland", "xcb")
    return ("xcb",)


def plugin_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Folders Qt searches for platform plugins, in its order of preference."""
    env = os.environ if env is None else env
    dirs = [Path(p) for p in env.get("QT_QPA_PLATFORM_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs += [Path(p) / "platforms" for p in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    spec = importlib.util.find_spec("PySide6")  # finds the package without loading Qt
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            dirs.append(Path(location) / "Qt" / "plugins" / "platforms")
    return dirs


def find_plugin(platform: str, env: Mapping[str, str] | None = None) -> Path | None:
    for folder in plugin_dirs(env):
        candidate = folder / f"libq{platform}.so"
        if candidate.is_file():
            return candidate
    return None


_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def missing_libraries(binary: Path) -> tuple[str, ...] | None:
    """The sonames ``binary`` needs (directly or through its dependencies) that the dynamic loader
    cannot find; ``None`` when that cannot be told (no ``ldd`` here, or it failed)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return _first_missing_by_loading(binary)
    try:
        done = subprocess.run([ldd, str(binary)], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = tuple(dict.fromkeys(_NOT_FOUND.findall(done.stdout)))
    if done.returncode != 0 and not found:
        return None
    return found


def _first_missing_by_loading(binary: Path) -> tuple[str, ...] | None:
    # Without ldd (musl, minimal images) the loader's own error names the first missing library.
    try:
        ctypes.CDLL(str(binary), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as exc:
        match = re.search(r"(\S+\.so[.\d]*): cannot open shared object file", str(exc))
        return (match.group(1),) if match else None
    return ()


def _x_display_problem(env: Mapping[str, str]) -> str | None:
    display = env.get("DISPLAY", "")
    if not display:
        return "no X display: DISPLAY is not set"
    name = ctypes.util.find_library("xcb")
    if name is None:
        return None  # reported as a missing library of the plugin
    xcb = ctypes.CDLL(name)
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        failed = xcb.xcb_connection_has_error(connection) != 0
    finally:
        xcb.xcb_disconnect(connection)  # frees the error object too
    if failed:
        return (
            f"cannot connect to the X display {display!r} (no X server there, or it refused the connection)"
        )
    return None


def _wayland_display_problem(env: Mapping[str, str]) -> str | None:
    name = env.get("WAYLAND_DISPLAY") or "wayland-0"
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if not os.path.isabs(name) and not runtime:
        return "no Wayland display: XDG_RUNTIME_DIR is not set"
    path = name if os.path.isabs(name) else os.path.join(runtime, name)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
    except OSError as exc:
        return f"cannot connect to the Wayland display {path} ({exc.strerror or exc})"
    return None


_DISPLAY_CHECKS = {"xcb": _x_display_problem, "wayland": _wayland_display_problem}


def check_platform(platform: str, env: Mapping[str, str] | None = None) -> PlatformProblem | None:
    """What stops Qt's ``platform`` plugin from starting here, or ``None`` if nothing does."""
    env = os.environ if env is None else env
    plugin = find_plugin(platform, env)
    if plugin is None:
        where = ", ".join(str(d) for d in plugin_dirs(env)) or "no plugin folder"
        return PlatformProblem(platform, f'Qt has no "{platform}" platform plugin (looked in {where})')
    missing = missing_libraries(plugin)
    if missing:
        return PlatformProblem(
            platform,
            f'Qt\'s "{platform}" platform plugin needs system libraries that are not installed: '
            + ", ".join(missing),
            missing,
        )
    if platform in _HEADLESS:
        return None
    check = _DISPLAY_CHECKS.get(platform)
    reason = check(env) if check else None
    return PlatformProblem(platform, reason) if reason else None


def diagnose(env: Mapping[str, str] | None = None) -> Diagnosis:
    """Check each platform Qt would try here. Nothing to check off Linux/BSD (Windows and macOS
    plugins ship with Qt and need no display server)."""
    env = os.environ if env is None else env
    if sys.platform in ("win32", "darwin"):
        return Diagnosis(())
    platforms = candidate_platforms(env)
    problems = []
    for platform in platforms:
        problem = check_platform(platform, env)
        if problem is None:
            break  # Qt takes the first that starts
        problems.append(problem)
    return Diagnosis(platforms, tuple(problems))


@cache
def _packages() -> dict[str, dict[str, str]]:
    with open(resource_path("platform", "linux-libraries.toml"), "rb") as f:
        return tomllib.load(f)["libraries"]


def install_commands(missing: tuple[str, ...]) -> list[str]:
    """One install line per distribution for the libraries ``missing``; sonames the table does not
    know are named as they are."""
    table = _packages()
    lines = []
    for name, command, key in _DISTROS:
        packages = list(dict.fromkeys(table[lib][key] for lib in missing if lib in table))
        if packages:
            lines.append(f"  {name + ':':<15}{command} {' '.join(packages)}")
    unknown = [lib for lib in missing if lib not in table]
    if unknown:
        lines.append(f"  and the package that provides {', '.join(unknown)}")
    return lines


def explain(diagnosis: Diagnosis) -> str:
    """What the user reads when no window can open: each platform's problem, and what to do."""
    lines = ["saliency-viewer: cannot open a window."]
    missing: list[str] = []
    for problem in diagnosis.problems:
        lines.append(f"- {problem.reason}.")
        missing += problem.missing
    if missing:
        lines.append("Install the missing libraries, then start it again:")
        lines += install_commands(tuple(dict.fromkeys(missing)))
    else:
        lines.append(_HEADLESS_HINT)
    return "\n".join(lines)


def install_fatal_handler() -> Callable[[], None]:
    """Turn a fatal Qt message (a platform plugin that still fails to start) into a plain message
    and exit status 1 instead of an abort. Call before the first ``QApplication``; call what it
    returns once the application exists, to put Qt's own handler back."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    seen: list[str] = []

    def handler(mode: QtMsgType, _context, message: str) -> None:
        if mode != QtMsgType.QtFatalMsg:
            seen.append(message)
            print(message, file=sys.stderr)
            return
        reasons = "; ".join(m for m in seen[-3:] if "platform plugin" in m or "display" in m)
        print(f"saliency-viewer: Qt cannot start: {message.splitlines()[0]}", file=sys.stderr)
        if reasons:
            print(f"  Qt said before: {reasons}", file=sys.stderr)
        print(f"  {_HEADLESS_HINT}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # Qt would abort() right after this handler returns

    previous = qInstallMessageHandler(handler)
    return lambda: qInstallMessageHandler(previous)


__all__ = [
    "Diagnosis",
    "PlatformProblem",
    "candidate_platforms",
    "check_platform",
    "diagnose",
    "explain",
    "install_commands",
    "install_fatal_handler",
    "missing_libraries",
]
