"""Redelivered readings that the state already holds are dropped; a device's own late reading is not."""

from __future__ import annotations

import numpy as np

from engine.core.batch import REDELIVERED, BatchBuilder
from engine.core.devices import DeviceIndex
from engine.core.replays import AppliedTimes
from engine.flow.checkpoint import checkpoint_arrays, load_checkpoint, write_checkpoint
from engine.runners.assembly import build_pipeline
from tests.conftest import default_config


def batch_of(devices, rows, redelivered_from=None):
    b = BatchBuilder(devices)
    for i, (site, device, ts, metric, value) in enumerate(rows):
        if i == redelivered_from:
            start = len(b)
        b.add(site, device, ts, metric, value)
    if redelivered_from is not None:
        b.mark_redelivered(start)
    return b.take()


def test_redelivered_rows_no_newer_than_applied_are_dropped_and_the_flag_cleared():
    devices, applied = DeviceIndex(), AppliedTimes()
    first = batch_of(devices, [("S1", "crack-1", 600.0 * i, "crack_mm", 1.0) for i in range(1, 4)])
    applied.fresh(first, redelivered_only=True)
    again = batch_of(
        devices,
        [("S1", "crack-1", 300.0, "crack_mm", 1.0)]  # the device's own late reading: kept for device_health
        + [("S1", "crack-1", 600.0 * i, "crack_mm", 1.0) for i in range(2, 6)],  # 2, 3 replayed; 4, 5 new
        redelivered_from=1,
    )
    assert (again.flags[1:] == REDELIVERED).all() and again.flags[0] == 0
    kept, dropped = applied.fresh(again, redelivered_only=True)
    assert dropped == 2
    assert kept.ts.tolist() == [300.0, 2400.0, 3000.0]
    assert (kept.flags == 0).all()  # detectors skip flagged rows: the replay flag must not survive


def test_without_the_redelivered_filter_every_stale_reading_is_dropped():
    devices, applied = DeviceIndex(), AppliedTimes()
    applied.fresh(batch_of(devices, [("S1", "rain-1", 1200.0, "rain_mm", 0.5)]))
    kept, dropped = applied.fresh(batch_of(devices, [("S1", "rain-1", 600.0, "rain_mm", 0.5)]))
    assert (len(kept), dropped) == (0, 1)


def test_applied_times_travel_with_the_checkpoint(tmp_path):
    cfg = default_config()
    pipeline = build_pipeline(cfg, DeviceIndex())
    batch = batch_of(pipeline.devices, [("S1", "crack-1", 600.0, "crack_mm", 1.0)])
    pipeline.applied.fresh(batch, redelivered_only=True)
    pipeline.step(batch)
    write_checkpoint(checkpoint_arrays(pipeline), tmp_path / "checkpoint.npz")
    restored = build_pipeline(cfg, DeviceIndex())
    restored.devices.slot("S1", "crack-1")
    load_checkpoint(restored, tmp_path / "checkpoint.npz")
    replay = batch_of(restored.devices, [("S1", "crack-1", 600.0, "crack_mm", 1.0)], redelivered_from=0)
    kept, dropped = restored.applied.fresh(replay, redelivered_only=True)
    assert (len(kept), dropped) == (0, 1)
    assert np.isfinite(restored.applied.times).sum() == 1  # that one reading, nothing else
