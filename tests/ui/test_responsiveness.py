"""The GUI thread never blocks: an event-loop heartbeat during a full run of the default methods."""

from __future__ import annotations

from tests.ui.conftest import CHEST, open_and_wait
from tests.ui.heartbeat import Heartbeat
from viewer.explain import DEFAULT_METHODS


def test_no_event_loop_stall_above_100_ms_while_all_default_methods_run(qtbot, window):
    open_and_wait(qtbot, window, [CHEST])
    qtbot.wait(200)  # let the first paint and the thumbnail settle
    beat = Heartbeat(interval_ms=5)
    beat.start()
    with qtbot.waitSignal(window.maps_shown, timeout=600_000):
        window.run_methods(list(DEFAULT_METHODS))
    qtbot.wait(300)  # the last layer's paint is part of the run
    beat.stop()
    summary = beat.summary()
    print(f"heartbeat over the run: {summary}")
    assert [layer.method for layer in window.state.layers] == list(DEFAULT_METHODS)
    assert summary["ticks"] > 100  # the loop really was turning the whole time
    assert summary["max_ms"] < 100, summary
