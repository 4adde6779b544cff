"""The viewer on a real display server: Qt's xcb platform plugin under Xvfb, the screen read back
from the X server (not from Qt), and the plain message (exit 1, no abort) when the display or a
system library the plugin needs is missing.

The other GUI tests run on Qt's offscreen platform, which loads none of the libraries a desktop
needs; these start the viewer as a user does, in a child process with ``QT_QPA_PLATFORM`` unset.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.system import need_program
from viewer.ui import desktop_check

# glibc and the C++ runtime: present wherever Python runs, so never worth a package hint.
_SYSTEM = (
    "linux-vdso",
    "ld-linux",
    "libc.so",
    "libm.so",
    "libdl.so",
    "librt.so",
    "libpthread.so",
    "libstdc++.so",
    "libgcc_s.so",
)


def desktop_env(tmp_path: Path, display: str | None, **extra: str) -> dict[str, str]:
    """The environment of a user's desktop session: no Qt platform forced, own settings folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "WAYLAND", "XDG_SESSION"))}
    env.pop("DISPLAY", None)
    if display is not None:
        env["DISPLAY"] = display
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    return env | extra


def launch(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "viewer", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_no_crash(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)  # not -6 (SIGABRT)
    assert "Traceback" not in result.stderr
    assert "Aborted" not in result.stderr and "core dumped" not in result.stderr


def grab_screen(display: str) -> np.ndarray:
    import mss

    with mss.MSS(display=display) as screen:
        shot = screen.grab(screen.monitors[0])
    return np.frombuffer(shot.rgb, np.uint8).reshape(shot.height, shot.width, 3)


def warm_blob_width(rgb: np.ndarray) -> int:
    """The widest run of jet's red on one screen row: a saliency map over the film is far wider
    than the 14 px colour bar, the only other red the window draws."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    red = (r > 180) & (g < 90) & (b < 90)
    return int(red.sum(axis=1).max())


def test_window_on_a_real_x_server_shows_gradcam(tmp_path, xvfb):
    env = desktop_env(tmp_path, xvfb)
    viewer = subprocess.Popen(
        [sys.executable, "-m", "viewer", "--demo", "--methods", "gradcam", "--run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, width = time.monotonic() + 240, 0
        while time.monotonic() < deadline and viewer.poll() is None:
            width = warm_blob_width(grab_screen(xvfb))
            if width > 60:
                break
            time.sleep(1)
        screen = grab_screen(xvfb)
        alive = viewer.poll() is None
    finally:
        viewer.terminate()
        _, stderr = viewer.communicate(timeout=30)
    assert alive, stderr
    assert width > 60, f"no saliency colours on the X screen (widest red run {width} px)\n{stderr}"
    assert "Traceback" not in stderr
    # The window is on screen, not just the map: the grey film and the dark panels around it.
    grey = np.ptp(screen.astype(int), axis=2) < 8
    assert grey.mean() > 0.5


def test_display_that_does_not_exist_gets_a_message_and_exit_1(tmp_path):
    number = next(n for n in range(97, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    result = launch(desktop_env(tmp_path, f":{number}"), "--demo")
    assert_no_crash(result)
    assert f"cannot connect to the X display ':{number}'" in result.stderr
    assert "QT_QPA_PLATFORM=offscreen" in result.stderr and "--screenshot" in result.stderr


def test_no_display_at_all_gets_a_message_and_exit_1(tmp_path):
    result = launch(desktop_env(tmp_path, None), "--demo")
    assert_no_crash(result)
    assert "DISPLAY is not set" in result.stderr


def test_screenshot_without_a_display_falls_back_to_offscreen(tmp_path):
    out = tmp_path / "shot.png"
    result = launch(
        desktop_env(tmp_path, None), "--demo", "--methods", "gradcam", "--screenshot", str(out), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000


def _absent_soname() -> str:
    """A library from the package table that this machine does not have (so ldd cannot find it)."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    for soname in desktop_check._packages():
        if f"\t{soname} " not in listing:
            return soname
    pytest.skip("every library in the package table is installed here")


def fake_plugin(folder: Path, soname: str) -> Path:
    """A ``libqxcb.so`` that needs ``soname``: linked against a stub of that name, which is then
    deleted, as on a machine where the package is not installed."""
    cc = need_program("cc")
    folder.mkdir(parents=True)
    (folder / "stub.c").write_text("int stub_symbol(void) { return 1; }\n")
    (folder / "plugin.c").write_text("int stub_symbol(void);\nint plugin(void) { return stub_symbol(); }\n")
    stub = folder / soname
    subprocess.run(
        [cc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(stub), str(folder / "stub.c")], check=True
    )
    plugin = folder / "libqxcb.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(plugin), str(folder / "plugin.c"), str(stub)], check=True
    )
    stub.unlink()
    return plugin


def test_missing_system_library_is_named_with_install_commands(tmp_path, xvfb):
    soname = _absent_soname()
    plugin = fake_plugin(tmp_path / "platforms", soname)
    assert desktop_check.missing_libraries(plugin) == (soname,)
    env = desktop_env(tmp_path, xvfb, QT_QPA_PLATFORM_PLUGIN_PATH=str(plugin.parent))
    result = launch(env, "--demo")
    assert_no_crash(result)
    packages = desktop_check._packages()[soname]
    assert soname in result.stderr
    assert f"sudo apt-get install {packages['debian']}" in result.stderr
    assert f"sudo dnf install {packages['fedora']}" in result.stderr
    assert f"sudo pacman -S {packages['arch']}" in result.stderr
    check = launch(env, "--check-desktop")
    assert check.returncode == 1 and soname in check.stderr


def test_check_desktop_passes_on_the_x_server(tmp_path, xvfb):
    result = launch(desktop_env(tmp_path, xvfb), "--check-desktop")
    assert result.returncode == 0, result.stderr
    assert "'xcb'" in result.stdout


def test_a_fatal_qt_error_the_check_missed_is_a_message_not_an_abort(tmp_path):
    """The last line of defence: Qt's own fatal error goes through the handler, exit status 1."""
    code = (
        "from viewer.ui.desktop_check import install_fatal_handler\n"
        "install_fatal_handler()\n"
        "from PySide6.QtWidgets import QApplication\n"
        "QApplication(['x'])\n"
    )
    env = desktop_env(tmp_path, ":198", QT_QPA_PLATFORM="xcb")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert_no_crash(result)
    assert "saliency-viewer: Qt cannot start" in result.stderr


def test_every_library_the_installed_plugins_need_has_a_package_for_each_distribution():
    table = desktop_check._packages()
    for platform in ("xcb", "wayland"):
        plugin = desktop_check.find_plugin(platform, {})
        assert plugin is not None, platform
        listing = subprocess.run(
            [need_program("ldd"), str(plugin)], capture_output=True, text=True, check=True
        ).stdout
        needed = {line.split()[0] for line in listing.splitlines() if line.strip()}
        system = {
            name
            for name in needed
            if name.startswith(_SYSTEM) or "/" in name or "Qt6" in name or name.startswith("libicu")
        }  # Qt and ICU ship inside PySide6
        for soname in sorted(needed - system):
            assert soname in table, f"{platform}: no package known for {soname}"
            assert set(table[soname]) == {"debian", "fedora", "arch"}, soname


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("xcb",)),
        ({"XDG_SESSION_TYPE": "x11", "WAYLAND_DISPLAY": "wayland-0"}, ("xcb",)),
        ({"XDG_SESSION_TYPE": "wayland"}, ("wayland", "xcb")),
        ({"WAYLAND_DISPLAY": "wayland-0"}, ("wayland", "xcb")),
        ({"QT_QPA_PLATFORM": "wayland;xcb:nomitshm"}, ("wayland", "xcb")),
        ({"QT_QPA_PLATFORM": "offscreen", "XDG_SESSION_TYPE": "wayland"}, ("offscreen",)),
    ],
)
def test_platforms_are_tried_in_qts_order(env, expected):
    assert desktop_check.candidate_platforms(env) == expected


def test_wayland_socket_that_refuses_is_reported(tmp_path):
    problem = desktop_check._wayland_display_problem(
        {"XDG_RUNTIME_DIR": str(tmp_path), "WAYLAND_DISPLAY": "w-9"}
    )
    assert problem is not None and str(tmp_path / "w-9") in problem


def test_offscreen_needs_no_display():
    diagnosis = desktop_check.diagnose({"QT_QPA_PLATFORM": "offscreen"})
    assert diagnosis.ok and not diagnosis.problems


def test_self_test_fails_when_the_desktop_plugin_lacks_libraries(capsys):
    from viewer.ui.self_test import check_desktop

    missing = desktop_check.PlatformProblem("xcb", "needs libxcb-cursor.so.0", ("libxcb-cursor.so.0",))
    assert not check_desktop(desktop_check.Diagnosis(("xcb",), (missing,)))
    assert "sudo apt-get install libxcb-cursor0" in capsys.readouterr().err
    no_display = desktop_check.PlatformProblem("xcb", "no X display: DISPLAY is not set")
    assert check_desktop(desktop_check.Diagnosis(("xcb",), (no_display,)))
    assert "DISPLAY is not set" in capsys.readouterr().out


def test_windows_and_macos_need_no_check():
    """Off Linux nothing is checked: their platform plugins ship inside Qt, no display server."""
    native = desktop_check.Diagnosis(())
    assert native.ok and native.platform == "native"
    failed = desktop_check.Diagnosis(("xcb",), (desktop_check.PlatformProblem("xcb", "no X display"),))
    assert not failed.ok and failed.platform is None
