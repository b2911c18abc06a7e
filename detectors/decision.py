"""Decision logic shared by detectors: levels from thresholds, hysteresis latches, per-device segments.

Every function works on rows sorted by device slot (stable, so each device's rows keep arrival order);
``segment_starts`` marks the first row of each device. Values carried in from earlier batches come from
the detector's state arrays, which is what makes results independent of how readings were batched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator

from detectors.base import DeviceState
from engine.core.levels import LEVEL_NAMES, Level, LevelName

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def sort_by_device(slots: I64) -> tuple[I64, B, B]:
    """Stable order by slot, and masks of each device's first and last row in that order.

    >>> order, first, last = sort_by_device(np.array([2, 1, 2]))
    >>> order.tolist(), first.tolist(), last.tolist()
    ([1, 0, 2], [True, True, False], [True, False, True])
    """
    order = np.argsort(slots, kind="stable")
    s = slots[order]
    n = s.shape[0]
    first = np.ones(n, dtype=bool)
    last = np.ones(n, dtype=bool)
    if n > 1:
        first[1:] = s[1:] != s[:-1]
        last[:-1] = first[1:]
    return order, first, last


def previous_in_segment(values: F64, first: B, carried: F64) -> F64:
    """Each row's previous value of the same device; a device's first row takes ``carried``.

    >>> previous_in_segment(np.array([1., 2., 5.]), np.array([True, False, True]), np.array([0., 0., 4.])).tolist()
    [0.0, 1.0, 4.0]
    """
    prev = np.empty_like(values)
    if values.shape[0]:
        prev[1:] = values[:-1]
        prev[first] = carried[first]
    return prev


def level_of(x: F64, thresholds: F64) -> npt.NDArray[np.int8]:
    """Level (0 = none … 4 = red) of each value against ascending thresholds blue, yellow, orange, red.

    NaN thresholds (a level not configured) are skipped; NaN values give 0.

    >>> level_of(np.array([0.5, 1.0, 3.9, 9.0, np.nan]), np.array([1.0, 2.0, 4.0, 8.0])).tolist()
    [0, 1, 2, 4, 0]
    """
    out = np.zeros(x.shape, dtype=np.int8)
    for i, t in enumerate(thresholds, start=1):
        if np.isfinite(t):
            out[x >= t] = i
    return out


def thresholds_array(levels: Mapping[LevelName, float]) -> F64:
    """Level thresholds from a config mapping, ordered blue … red, NaN where a level is absent."""
    arr = np.array([levels.get(name, np.nan) for name in LEVEL_NAMES], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size and np.any(np.diff(finite) < 0):
        raise ValueError(f"level thresholds must not decrease from blue to red: {levels}")
    return arr


def _ascending(levels: dict[LevelName, float]) -> dict[LevelName, float]:
    """Every threshold a finite number, none lower than the level below it."""
    bad = {k: v for k, v in levels.items() if not np.isfinite(v)}
    if bad:
        raise ValueError(f"level thresholds must be finite numbers, not {bad}")
    thresholds_array(levels)
    return levels


def _required(levels: dict[LevelName, float]) -> dict[LevelName, float]:
    if not levels:
        raise ValueError("give at least one level, e.g. {yellow: 1.0, red: 2.0}: with none the detector never alarms")
    return _ascending(levels)


def _positive(levels: dict[LevelName, float]) -> dict[LevelName, float]:
    below = {k: v for k, v in _required(levels).items() if v <= 0}
    if below:
        raise ValueError(f"level thresholds here are amounts or ratios above zero, not {below}")
    return levels


LevelThresholds = Annotated[dict[LevelName, float], AfterValidator(_ascending)]
"""A config field of thresholds per level (blue … red), validated not to decrease from blue to red."""
RequiredLevels = Annotated[dict[LevelName, float], AfterValidator(_required)]
"""Thresholds per level of which there must be at least one (the detector's only way to alarm)."""
PositiveLevels = Annotated[dict[LevelName, float], AfterValidator(_positive)]
"""Required thresholds that are amounts or ratios (rain depth, observed over threshold intensity): above 0."""


def latch(first: B, set_: B, reset: B, carried: B) -> B:
    """A set/reset latch per device: on where ``set_``, off where ``reset``, else as the row before.

    ``carried`` gives each device's state before its first row. Set wins over reset on the same row.

    >>> f = np.array([True, False, False, False])
    >>> latch(f, np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 0], bool), np.zeros(4, bool)).tolist()
    [True, True, False, False]
    """
    n = first.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    idx = np.arange(n)
    event = np.where(set_, 1, np.where(reset, -1, 0))
    last_event = np.maximum.accumulate(np.where(event != 0, idx, -1))
    seg_start = np.maximum.accumulate(np.where(first, idx, 0))
    decided = last_event >= seg_start
    return np.where(decided, event[np.maximum(last_event, 0)] > 0, carried)


def hysteresis_level(
    x: F64, thresholds: F64, clear: float, first: B, carried_active: B
) -> tuple[npt.NDArray[np.int8], B]:
    """Level with hysteresis: active from the first threshold up, inactive only once ``x < clear``.

    While active, the level is the thresholds' level but at least blue. Returns (levels, active).
    """
    raw = level_of(x, thresholds)
    lowest = float(thresholds[np.isfinite(thresholds)][0])
    with np.errstate(invalid="ignore"):
        active = latch(first, x >= lowest, x < clear, carried_active)
    levels = np.where(active, np.maximum(raw, int(Level.BLUE)), 0).astype(np.int8)
    return levels, active


def metric_positions(batch_metric: npt.NDArray[np.int16], metric_ids: tuple[int, ...]) -> I64:
    """Each row's position of its metric in ``metric_ids`` (-1 for a metric not among them).

    >>> metric_positions(np.array([4, 2, 4], np.int16), (4, 2)).tolist()
    [0, 1, 0]
    """
    lookup = np.full(int(max(metric_ids)) + 1, -1, dtype=np.int64)
    lookup[list(metric_ids)] = np.arange(len(metric_ids))
    return lookup[batch_metric.astype(np.int64)]


def channels_repeat(channel: I64) -> bool:
    """Whether any channel number appears more than once (a batch that holds several readings of a sensor).

    >>> channels_repeat(np.array([3, 0, 7])), channels_repeat(np.array([3, 0, 3]))
    (False, True)
    """
    if channel.shape[0] < 2:
        return False
    idx = np.arange(channel.shape[0])
    probe = np.empty(int(channel.max()) + 1, dtype=np.int64)
    probe[channel] = idx
    return not bool((probe[channel] == idx).all())


def channel_steps(
    batch_slots: I64,
    batch_metric: npt.NDArray[np.int16],
    rows: I64,
    metric_ids: tuple[int, ...],
    state: DeviceState | None = None,
) -> list[tuple[I64, I64, I64]]:
    """Cut rows into steps in which each (device, metric) channel appears at most once, in arrival order.

    Step ``r`` holds every channel's ``r``-th row of the batch, so a detector that updates its state step by
    step sees each channel's readings in order, exactly as if they had come one at a time, while each step
    is still vectorized over all channels. Returns ``(rows, dev, k)`` per step: ``dev`` is each row's device
    as its row in ``state`` (``DeviceState.rows_for``; the device slot when no state is given), ``k`` the
    index of the row's metric in ``metric_ids``.

    >>> steps = channel_steps(np.array([5, 5, 7]), np.array([0, 0, 0], np.int16), np.array([0, 1, 2]), (0,))
    >>> [s[0].tolist() for s in steps]
    [[0, 2], [1]]
    """
    if rows.size == 0:
        return []
    k = metric_positions(batch_metric[rows], metric_ids)
    dev = state.rows_for(batch_slots[rows]) if state is not None else batch_slots[rows]
    channel = dev * len(metric_ids) + k
    n = channel.shape[0]
    idx = np.arange(n)
    probe = np.empty(int(channel.max()) + 1, dtype=np.int64)
    probe[channel] = idx
    if (probe[channel] == idx).all():  # every channel once (the usual batch): one step, no sort
        return [(rows, dev, k)]
    order = np.argsort(channel, kind="stable")
    ch = channel[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ch[1:] != ch[:-1]
    rank = idx - np.maximum.accumulate(np.where(first, idx, 0))
    by_rank = order[np.argsort(rank, kind="stable")]
    cuts = np.cumsum(np.bincount(rank))[:-1]
    return [(rows[p], dev[p], k[p]) for p in np.split(by_rank, cuts)]
