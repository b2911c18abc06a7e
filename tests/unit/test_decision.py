"""Shared decision logic: the vectorized latch equals a sequential reference on any input."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detectors.decision import latch, level_of, previous_in_segment, sort_by_device


def sequential_latch(slots, set_, reset, carried_by_slot):
    state = dict(carried_by_slot)
    out = []
    for s, on, off in zip(slots, set_, reset, strict=True):
        if on:
            state[s] = True
        elif off:
            state[s] = False
        out.append(state.get(s, False))
    return out


@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.booleans()), max_size=60), st.sets(st.integers(0, 4)))
def test_latch_matches_sequential_reference(rows, initially_on):
    slots = np.array([r[0] for r in rows], dtype=np.int64)
    set_ = np.array([r[1] for r in rows], dtype=bool)
    reset = np.array([r[2] for r in rows], dtype=bool)
    order, first, _last = sort_by_device(slots)
    carried = np.isin(slots[order], list(initially_on))
    got = np.empty(len(rows), dtype=bool)
    got[order] = latch(first, set_[order], reset[order], carried)
    expected = sequential_latch(slots.tolist(), set_.tolist(), reset.tolist(), {s: True for s in initially_on})
    assert got.tolist() == expected


def test_level_of_skips_unconfigured_levels():
    thresholds = np.array([1.0, np.nan, 4.0, np.nan])
    assert level_of(np.array([0.9, 1.0, 3.0, 4.0, 100.0]), thresholds).tolist() == [0, 1, 1, 3, 3]


def test_previous_in_segment_takes_carried_value_at_device_start():
    slots = np.array([3, 1, 3, 1])
    order, first, _ = sort_by_device(slots)
    values = np.array([10.0, 20.0, 11.0, 21.0])[order]
    carried = np.array([5.0, 5.0, 9.0, 9.0])  # per sorted row: slot 1 carried 5, slot 3 carried 9
    assert previous_in_segment(values, first, carried).tolist() == [5.0, 20.0, 9.0, 10.0]
