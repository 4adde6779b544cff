"""Start-up preparation of the process for a live window (``tasks.warm_up``)."""

from __future__ import annotations

import gc

import pyqtgraph  # noqa: F401  (the window's imports: what a real start-up holds)
import torchvision  # noqa: F401

from viewer.state import tasks


def test_warm_up_takes_what_start_up_built_out_of_the_collectors_walk():
    # A full cyclic collection walks every tracked object with the GIL held; over the ~430,000
    # objects of torch, Qt and pyqtgraph that froze the window for ~0.4 s once, when the worker
    # happened to trigger it while building its first network.
    walked_before = len(gc.get_objects())
    try:
        tasks.warm_up()
        assert gc.get_freeze_count() >= walked_before * 0.9
        assert len(gc.get_objects()) < walked_before / 10
    finally:
        gc.unfreeze()
