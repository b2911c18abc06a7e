"""``device_health``: broken sensors found from their own data, and their readings kept from the alarms.

A quality screen: it runs before every other detector of the pipeline and flags the readings it finds
faulty, which the other detectors then skip (``ReadingBatch.rows_of``), so that a stuck crack meter or a
spiking GNSS antenna raises a ``device_fault`` and not a landslide. Faults, per (device, metric):

* ``silent``: no reading for ``silence_factor`` times the expected interval (the device's
  ``expected_interval_s`` in the site config, else this detector's ``expected_interval_s``, else learned
  from the device's own reporting), and for at least ``min_silence_s``, measured on the fleet's clock (the latest
  timestamp seen from any device), so no reading is needed from the silent device itself. Silence is no
  data, never a zero. The floor keeps a gateway that forwards a 1 Hz sensor's readings in 20-second
  batches from reading as a silent sensor between its batches;
* ``stuck``: ``stuck_count`` identical values in a row (not for ``stuck_exempt`` metrics: a rain gauge
  reports zero all through dry weather and the same tip count all through a steady drizzle);
* ``out_of_range``: a value outside the instrument's measuring range (``ranges``), e.g. a -9999 sentinel.
  For a metric that is an increment since the previous report (rain), the upper end is per hour of the
  interval the report covers: an hourly gauge may report 400 mm, a daily one 9,600 mm;
* ``jump``: a change faster than the metric can physically change (``max_rate_per_h``) against the last
  good value; after ``accept_after`` such readings in a row the new level is accepted (a re-installed
  sensor). For rain this is an extreme intensity: reported for a check, but the reading is *kept* for the
  rain detectors (a true record downpour must not vanish from the landslide warnings);
* ``clock_skew``: a timestamp more than ``max_lag_s`` behind the fleet's clock;
* ``duplicate`` and ``out_of_order``: a reading repeated with the same time, or older than the last one;
* ``flood``: readings ``flood_factor`` times faster than the sensor's interval (a runaway firmware, a
  replay loop); they are kept from the alarms and do not teach the sensor a new interval, so the other
  devices and this one's real readings are unaffected.

A finding is raised when a fault starts, not for every faulty reading; its level is set per fault kind.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from detectors.base import Detector, DetectorConfig, DeviceState, StateArray, register
from detectors.decision import channel_steps, channels_repeat, metric_positions
from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.levels import Level, LevelName
from engine.core.quantities import MEASURED_METRICS, METRIC_INDEX, METRIC_NAMES

F64 = npt.NDArray[np.float64]
FaultKind = Literal["silent", "stuck", "out_of_range", "jump", "clock_skew", "duplicate", "out_of_order", "flood"]
KINDS: tuple[str, ...] = (
    "silent", "stuck", "out_of_range", "jump", "clock_skew", "duplicate", "out_of_order", "flood",
)  # fmt: skip
BIT = {kind: np.uint8(1 << i) for i, kind in enumerate(KINDS)}
# Metrics whose value is an increment since the previous report: their rate is value / interval.
INCREMENT_METRICS = frozenset({"rain_mm"})
CHANNEL_ARRAYS = ("last_ts", "last_value", "good_value", "good_ts", "jump_run", "same_run", "interval", "faults")


class DeviceHealthConfig(DetectorConfig):
    """Config of the ``device_health`` detector."""

    type: Literal["device_health"] = Field("device_health", description="Detector type.")
    hazard: str = Field("device_fault", description="Hazard name findings are filed under.")
    metrics: list[str] = Field(
        list(MEASURED_METRICS),
        min_length=1,
        description="Metrics whose sensors are checked. The device-health metrics (battery_pct, rssi_dbm, snr_db) "
        "may be added: with a range (`ranges: {battery_pct: [15, 100]}`) a flat battery is an `out_of_range` fault; "
        "add them to `stuck_exempt` too (a battery reads 100 % for weeks).",
    )
    expected_interval_s: float | None = Field(
        None, gt=0, description="Reporting interval of every sensor; default: learned per sensor from its data."
    )
    silence_factor: float = Field(3.0, gt=1, description="Silent after this many expected intervals without data.")
    min_silence_s: float = Field(
        300.0,
        ge=0,
        description="Never silent after less than this (s): fast sensors whose readings a gateway forwards in batches.",
    )
    stuck_count: int = Field(12, ge=2, description="This many identical values in a row make a sensor stuck.")
    stuck_exempt: list[str] = Field(
        ["rain_mm"],
        description="Metrics whose repeats are normal (a rain gauge reports the same tip count in steady rain).",
    )
    ranges: dict[str, tuple[float, float]] = Field(
        {
            "rain_mm": (0.0, 400.0),
            "disp_mm": (-5000.0, 5000.0),
            "crack_mm": (-100.0, 1000.0),
            "tilt_deg": (-45.0, 45.0),
            "soil_moisture_pct": (0.0, 70.0),
            "pore_pressure_kpa": (-100.0, 1000.0),
            "water_level_m": (-20.0, 200.0),
        },
        description="Measuring range [low, high] per metric; a value outside is a fault. For rain (an increment) "
        "the high end is per hour of the interval the report covers (400 mm: above the 1-hour world record).",
    )
    max_rate_per_h: dict[str, float] = Field(
        {
            "rain_mm": 150.0,
            "disp_mm": 500.0,
            "crack_mm": 100.0,
            "tilt_deg": 10.0,
            "soil_moisture_pct": 100.0,
            "pore_pressure_kpa": 500.0,
            "water_level_m": 10.0,
        },
        description="Fastest physically possible change per hour per metric; for rain the intensity (mm/h, over at "
        "least an hour) above which a report is reported as an extreme `jump` for a check, but still used by the "
        "rain detectors.",
    )
    min_dt_s: float = Field(
        60.0, gt=0, description="Rates use at least this interval, so close readings do not blow up."
    )
    accept_after: int = Field(3, ge=1, description="Accept a new level after this many jumps in a row.")
    max_lag_s: float = Field(1800.0, gt=0, description="Clock skew: a timestamp this far behind the fleet's clock.")
    flood_factor: float = Field(
        10.0, gt=1, description="Flood: a reading this many times sooner after the last than the sensor's interval."
    )
    levels: dict[FaultKind, LevelName] = Field(
        {
            "silent": "yellow",
            "stuck": "yellow",
            "out_of_range": "yellow",
            "jump": "blue",
            "clock_skew": "yellow",
            "duplicate": "blue",
            "out_of_order": "blue",
            "flood": "yellow",
        },
        description="Level of the finding per fault kind; a kind left out is flagged but not reported.",
    )

    @field_validator("metrics", "stuck_exempt")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in METRIC_INDEX]
        if bad:
            raise ValueError(f"unknown metrics {bad}; use {', '.join(METRIC_NAMES)}")
        return v


@register
class DeviceHealth(Detector[DeviceHealthConfig]):
    """Flags faulty readings and reports each fault once, as hazard ``device_fault``.

    >>> from engine.core.devices import DeviceIndex
    >>> from engine.core.batch import BatchBuilder
    >>> det = DeviceHealth(DeviceHealthConfig()); st = det.new_state(); b = BatchBuilder(DeviceIndex())
    >>> for m, v in [(0, 1.0), (10, 1.1), (20, -9999.0), (30, 1.2), (40, 80.0), (50, 1.3)]:
    ...     b.add("S1", "crack-1", m * 60.0, "crack_mm", v)
    >>> batch = b.take(); [(f.evidence["fault"], f.ts) for f in det.process(batch, st)]
    [('out_of_range', 1200.0), ('jump', 2400.0)]
    >>> batch.flags.tolist()
    [0, 0, 1, 0, 1, 0]
    """

    config_class = DeviceHealthConfig
    screens = True

    def __init__(self, config: DeviceHealthConfig) -> None:
        super().__init__(config)
        self.metrics = tuple(config.metrics)  # type: ignore[misc]
        self.metric_ids = tuple(METRIC_INDEX[m] for m in self.metrics)
        nan2 = (np.nan, np.nan)
        self.low = np.array([config.ranges.get(m, nan2)[0] for m in self.metrics], dtype=np.float64)
        self.high = np.array([config.ranges.get(m, nan2)[1] for m in self.metrics], dtype=np.float64)
        self.max_rate = np.array([config.max_rate_per_h.get(m, np.inf) for m in self.metrics], dtype=np.float64)
        self.increment = np.array([m in INCREMENT_METRICS for m in self.metrics])
        self.exempt = np.array([m in config.stuck_exempt for m in self.metrics])
        self.level_of = {kind: Level.from_name(name) for kind, name in config.levels.items()}

    @classmethod
    def example_config(cls) -> DeviceHealthConfig:
        return DeviceHealthConfig(id="example-health", stuck_count=4, ranges={"disp_mm": (-2.0, 2.0)})

    def state_spec(self) -> dict[str, StateArray]:
        k = (len(self.metrics),)
        return {
            "last_ts": StateArray(np.float64, np.nan, k),
            "last_value": StateArray(np.float64, np.nan, k),
            "good_value": StateArray(np.float64, np.nan, k),
            "good_ts": StateArray(np.float64, np.nan, k),
            "jump_run": StateArray(np.int64, 0, k),
            "same_run": StateArray(np.int64, 0, k),
            "interval": StateArray(np.float64, np.nan, k),
            "deadline": StateArray(np.float64, np.inf, k),
            "faults": StateArray(np.uint8, 0, k),
            # A worker that takes sites over rebuilds the clock from the readings redelivered to it: the packs
            # were written up to the batch the old worker last finished, often after its last committed offset,
            # and a clock restored from them would be ahead of every redelivered reading (read as clock_skew).
            "fleet_clock": StateArray(np.float64, -np.inf, (1,), per_device=False, on_takeover="stream"),
            # No pending deadline is earlier than this: until the fleet clock reaches it, no sensor that is
            # absent from a batch can have gone silent, and the batch need not look at the whole fleet.
            "silence_floor": StateArray(np.float64, -np.inf, (1,), per_device=False, on_takeover="min"),
            # 1 once this worker set the sensor's deadline from a reading; a taken-over sensor's deadline comes
            # from a pack that can be older than where the partition's stream resumes (the old worker applied
            # readings whose state never reached this one): such a deadline counts from the resumption.
            "deadline_here": StateArray(np.uint8, 0, k, on_takeover="fill"),
        }

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        cfg = self.config
        n = len(batch)
        carried = float(state["fleet_clock"][0])
        clock = np.maximum.accumulate(np.maximum(batch.ts, carried)) if n else np.empty(0)
        clock_before = np.concatenate(([carried], clock[:-1])) if n else np.empty(0)
        rows = batch.rows_of(self.metrics, include_suspect=True)
        raised: list[tuple[int, int, str, int, float]] = []  # (row, slot, kind, k, ts)
        deadline_of_row = np.full(n, np.inf)
        flagged: list[np.ndarray] = []
        stepped = self._clean_at_once(batch, state, rows, clock, clock_before, deadline_of_row)
        steps = channel_steps(batch.slot, batch.metric, stepped, self.metric_ids, state)
        flat = {name: state[name].reshape(-1) for name in CHANNEL_ARRAYS}  # by channel: one take each
        for r, dev, k in steps:
            ch = dev * len(self.metrics) + k
            ts, v = batch.ts[r], batch.value[r]
            last_ts, last_v = flat["last_ts"].take(ch), flat["last_value"].take(ch)
            good_v, good_ts = flat["good_value"].take(ch), flat["good_ts"].take(ch)
            bits = np.zeros(r.shape[0], dtype=np.uint8)
            with np.errstate(invalid="ignore"):
                duplicate = (ts == last_ts) & (v == last_v)
                out_of_order = ts < last_ts
                known_dt = flat["interval"].take(ch) if cfg.expected_interval_s is None else cfg.expected_interval_s
                covered_h = np.where(np.isnan(last_ts), np.nan_to_num(known_dt, nan=3600.0), ts - last_ts) / 3600.0
                high = np.where(self.increment[k], self.high[k] * np.maximum(covered_h, 1.0), self.high[k])
                out_of_range = (v < self.low[k]) | (v > high)
                skew = ts < clock_before[r] - cfg.max_lag_s
                known = flat["interval"].take(ch) if cfg.expected_interval_s is None else cfg.expected_interval_s
                stated = batch.devices.expected_intervals(batch.slot[r])  # per device, from the site config
                if stated is not None and cfg.expected_interval_s is None:
                    known = np.where(np.isnan(stated), known, stated)
                flood = ~duplicate & ~out_of_order & (ts - last_ts < known / cfg.flood_factor)
                timing = duplicate | out_of_order | skew | flood
                since = np.where(
                    self.increment[k], np.where(np.isnan(last_ts), covered_h * 3600.0, ts - last_ts), ts - good_ts
                )
                # Rain's intensity is taken over at least an hour: a 10-minute burst of 27 mm is a storm, not a fault.
                dt_h = np.maximum(since, np.where(self.increment[k], 3600.0, cfg.min_dt_s)) / 3600.0
                change = np.where(self.increment[k], np.abs(v), np.abs(v - good_v))
                jump = ~timing & ~out_of_range & (change / dt_h > self.max_rate[k]) & np.isfinite(good_v)
                same = (v == last_v) & ~duplicate & ~self.exempt[k]
            same_run = np.where(same, flat["same_run"].take(ch) + 1, 0)
            stuck = same_run + 1 >= cfg.stuck_count
            for kind, mask in (
                ("duplicate", duplicate),
                ("out_of_order", out_of_order),
                ("clock_skew", skew),
                ("flood", flood),
                ("out_of_range", out_of_range),
                ("jump", jump),
                ("stuck", stuck),
            ):
                bits |= np.where(mask, BIT[kind], 0).astype(np.uint8)
            new_bits = bits & ~flat["faults"].take(ch)
            for kind in KINDS[1:]:
                for i in np.flatnonzero(new_bits & BIT[kind]):
                    raised.append((int(r[i]), int(batch.slot[r[i]]), kind, int(k[i]), float(ts[i])))
            jump_run = np.where(jump, flat["jump_run"].take(ch) + 1, 0)
            accept = (bits == 0) | (jump & (jump_run >= cfg.accept_after) & ~stuck)
            flat["good_value"][ch] = np.where(accept, v, good_v)
            flat["good_ts"][ch] = np.where(accept, ts, good_ts)
            flat["jump_run"][ch] = np.where(accept, 0, jump_run)
            flat["same_run"][ch] = same_run
            in_time = ~out_of_order & ~duplicate
            if cfg.expected_interval_s is None:
                interval = flat["interval"].take(ch)
                dt = ts - last_ts
                learn = in_time & (dt > 0) & ~flood
                step = np.where(np.isnan(interval), dt, interval + 0.1 * (np.minimum(dt, 2 * interval) - interval))
                interval = np.where(learn, step, interval)
                flat["interval"][ch] = interval
                if stated is not None:
                    interval = np.where(np.isnan(stated), interval, stated)  # the config's word wins
            else:
                interval = np.full(r.shape[0], cfg.expected_interval_s)
            deadline = clock[r] + np.maximum(cfg.silence_factor * interval, cfg.min_silence_s)
            deadline_of_row[r] = np.where(np.isnan(deadline), np.inf, deadline)
            flat["last_ts"][ch] = np.where(in_time, ts, last_ts)
            flat["last_value"][ch] = np.where(in_time, v, last_v)
            flat["faults"][ch] = bits
            kept = self.increment[k] & (bits == BIT["jump"])  # an extreme downpour stays in the rain windows
            flagged.append(r[(bits != 0) & ~kept])
        if flagged:
            batch.flag_suspect(np.concatenate(flagged))
        raised.extend(self._silences(batch, state, rows, clock, deadline_of_row))
        if n:
            state["fleet_clock"][0] = clock[-1]
        raised.sort(key=lambda x: (x[0], x[1], x[3], KINDS.index(x[2])))
        return [
            self.finding(
                batch,
                row,
                self.level_of[kind],
                1.0,
                {
                    "fault": kind,
                    "metric": self.metrics[k],
                    "value": self._value(batch, row, slot),
                    "reading_used": bool(kind == "jump" and self.increment[k]),
                },
                ts=ts,
                slot=slot,
            )
            for row, slot, kind, k, ts in raised
            if kind in self.level_of
        ]

    def _clean_at_once(
        self,
        batch: ReadingBatch,
        state: DeviceState,
        rows: np.ndarray,
        clock: F64,
        clock_before: F64,
        deadline_of_row: F64,
    ) -> np.ndarray:
        """Take in at once the sensors whose every reading of the batch is clean; return the other rows.

        The step loop below sees a sensor's readings one at a time because a fault changes what the next
        reading is compared with (the last good value, the learned interval). A sensor with no fault in the
        batch (the usual case: a crack meter's twenty one-second readings in a gateway's batch) has nothing to
        branch on: each reading is compared with the one before it. So every reading is judged on that
        supposition in one pass, the interval learned reading by reading over all such sensors together, and a
        sensor with any faulty reading goes to the step loop with its state untouched: the same state, flags,
        findings (none: a clean reading raises nothing) and silence deadlines as stepping every reading.
        """
        cfg = self.config
        if rows.size == 0:
            return rows
        n_k = len(self.metrics)
        k_all = metric_positions(batch.metric[rows], self.metric_ids)
        channel = state.rows_for(batch.slot[rows]) * n_k + k_all  # may grow the state
        if not channels_repeat(channel):
            return rows  # one reading a sensor: the step loop takes one step, as cheap as this
        order = np.argsort(channel, kind="stable")
        ch, r, k = channel[order], rows[order], k_all[order]
        ts, v = batch.ts[r], batch.value[r]
        m = ch.shape[0]
        idx = np.arange(m)
        first = np.ones(m, dtype=bool)
        first[1:] = ch[1:] != ch[:-1]
        start = np.maximum.accumulate(np.where(first, idx, 0))
        flat = {name: state[name].reshape(-1) for name in CHANNEL_ARRAYS}
        # Each reading's predecessor: the state's for a sensor's first reading here, else the reading before.
        last_ts = np.empty(m)
        last_v = np.empty(m)
        last_ts[1:], last_v[1:] = ts[:-1], v[:-1]
        last_ts[first], last_v[first] = flat["last_ts"].take(ch[first]), flat["last_value"].take(ch[first])
        good_v, good_ts = last_v.copy(), last_ts.copy()
        good_v[first], good_ts[first] = flat["good_value"].take(ch[first]), flat["good_ts"].take(ch[first])
        stated = batch.devices.expected_intervals(batch.slot[r])
        inc, exempt = self.increment[k], self.exempt[k]
        with np.errstate(invalid="ignore"):
            dt = ts - last_ts
            duplicate = (ts == last_ts) & (v == last_v)
            out_of_order = ts < last_ts
            # The learned interval before each reading, had every reading before it been clean.
            if cfg.expected_interval_s is None:
                before = np.empty(m)
                after = np.empty(m)
                heads = np.flatnonzero(first)  # a sensor's readings here are heads + 0, 1, ... (length)
                length = np.diff(np.r_[heads, m])
                interval = flat["interval"].take(ch[heads])
                for j in range(int(length.max())):
                    at = heads + j
                    before[at] = interval
                    d = dt[at]
                    step = np.where(np.isnan(interval), d, interval + 0.1 * (np.minimum(d, 2 * interval) - interval))
                    interval = np.where(d > 0, step, interval)
                    after[at] = interval
                    more = length > j + 1
                    if not more.all():
                        heads, length, interval = heads[more], length[more], interval[more]
                known_dt = before
            else:
                known_dt = np.full(m, cfg.expected_interval_s)
            covered_h = np.where(np.isnan(last_ts), np.nan_to_num(known_dt, nan=3600.0), dt) / 3600.0
            high = np.where(inc, self.high[k] * np.maximum(covered_h, 1.0), self.high[k])
            out_of_range = (v < self.low[k]) | (v > high)
            skew = ts < clock_before[r] - cfg.max_lag_s
            known = known_dt
            if stated is not None and cfg.expected_interval_s is None:
                known = np.where(np.isnan(stated), known, stated)
            flood = ~duplicate & ~out_of_order & (dt < known / cfg.flood_factor)
            since = np.where(inc, np.where(np.isnan(last_ts), covered_h * 3600.0, dt), ts - good_ts)
            dt_h = np.maximum(since, np.where(inc, 3600.0, cfg.min_dt_s)) / 3600.0
            change = np.where(inc, np.abs(v), np.abs(v - good_v))
            jump = (change / dt_h > self.max_rate[k]) & np.isfinite(good_v)
            same = (v == last_v) & ~duplicate & ~exempt
        # Runs of identical values, carried from the state into a sensor's first reading here.
        broke = np.maximum.accumulate(np.where(same, -1, idx))
        same_run = np.where(broke >= start, idx - broke, idx - start + 1 + flat["same_run"].take(ch))
        stuck = same_run + 1 >= cfg.stuck_count
        faulty = duplicate | out_of_order | skew | flood | out_of_range | jump | stuck
        bad_channels = ch[faulty]
        clean = ~np.isin(ch, bad_channels) if bad_channels.size else np.ones(m, dtype=bool)
        if not clean.any():
            return rows
        if cfg.expected_interval_s is None:
            interval_after = after
            if stated is not None:
                interval_after = np.where(np.isnan(stated), after, stated)  # the config's word wins
        else:
            interval_after = known_dt
        deadline = clock[r] + np.maximum(cfg.silence_factor * interval_after, cfg.min_silence_s)
        deadline_of_row[r[clean]] = np.where(np.isnan(deadline), np.inf, deadline)[clean]
        end = np.ones(m, dtype=bool)
        end[:-1] = first[1:]
        done = end & clean
        c = ch[done]
        flat["last_ts"][c] = flat["good_ts"][c] = ts[done]
        flat["last_value"][c] = flat["good_value"][c] = v[done]
        flat["jump_run"][c] = 0
        flat["same_run"][c] = same_run[done]
        flat["faults"][c] = 0
        if cfg.expected_interval_s is None:
            flat["interval"][c] = after[done]
        kept: np.ndarray = rows[np.sort(order[~clean])]
        return kept

    @staticmethod
    def _value(batch: ReadingBatch, row: int, slot: int) -> float | None:
        return float(batch.value[row]) if int(batch.slot[row]) == slot else None

    def _silences(
        self, batch: ReadingBatch, state: DeviceState, rows: np.ndarray, clock: F64, deadline_of_row: F64
    ) -> list[tuple[int, int, str, int, float]]:
        """Sensors whose deadline the fleet clock passed before their next reading (batch-order exact)."""
        n = len(batch)
        out: list[tuple[int, int, str, int, float]] = []
        if n == 0:
            return out
        n_k = len(self.metrics)
        kk = metric_positions(batch.metric[rows], self.metric_ids)
        channel = state.rows_for(batch.slot[rows]) * n_k + kk
        order = np.argsort(channel, kind="stable")
        ch, rr = channel[order], rows[order]
        nxt = np.full(rr.shape[0], n, dtype=np.int64)
        same_next = ch[1:] == ch[:-1]
        nxt[:-1] = np.where(same_next, rr[1:], n)
        # Sensors seen before this batch whose pending deadline the batch's clock passes, until their first
        # reading here. Only when the clock reaches the floor of all deadlines is the fleet looked at.
        deadline = state["deadline"].reshape(-1)
        floor = state["silence_floor"]
        scan = bool(clock[-1] >= floor[0])
        pending = np.flatnonzero(deadline < clock[-1]) if scan else np.empty(0, dtype=np.int64)
        here = state["deadline_here"].reshape(-1)
        restored = pending[here[pending] == 0]
        if restored.size:
            self._resume(batch, state, restored, clock)
            pending = pending[deadline[pending] < clock[-1]]
        first_here = np.full(pending.shape[0], n, dtype=np.int64)
        if ch.shape[0]:
            at = np.minimum(np.searchsorted(ch, pending), ch.shape[0] - 1)  # ch is sorted: a channel's first row
            first_here = np.where(ch[at] == pending, rr[at], n)
        cand_ch = np.concatenate([pending, ch])
        cand_deadline = np.concatenate([deadline[pending], deadline_of_row[rr]])
        cand_next = np.concatenate([first_here, nxt])
        fire = np.searchsorted(clock, cand_deadline, side="right")
        hit = fire < cand_next
        for i in np.flatnonzero(hit):
            c = int(cand_ch[i])
            slot = int(state.slot_of_row(np.array([c // n_k]))[0])
            out.append((int(fire[i]), slot, "silent", c % n_k, float(clock[fire[i]])))
        # What stays pending: each sensor's last deadline here, unless it fired; fired ones rest until seen.
        deadline[cand_ch[hit]] = np.inf
        last = np.ones(ch.shape[0], dtype=bool)
        last[:-1] = ~same_next
        ends = np.flatnonzero(last)
        ended = hit[pending.shape[0] :][ends]
        kept = np.where(ended, np.inf, deadline_of_row[rr[ends]])
        deadline[ch[ends]] = kept
        here[ch[ends]] = 1
        # The old floor still bounds every deadline this batch left alone; the ones it set are in ``kept``.
        floor[0] = deadline.min(initial=np.inf) if scan else min(float(floor[0]), float(kept.min(initial=np.inf)))
        return out

    def _resume(self, batch: ReadingBatch, state: DeviceState, channels: np.ndarray, clock: F64) -> None:
        """Taken-over sensors' restored deadlines, counted from where their site's stream resumes here.

        A pack may be older than the stream the new owner reads (the old worker applied readings whose
        state it never wrote): its deadlines would pass on the clock that the newer readings of other sites
        move before the sensor's own reading in the same batch, and read as silence what the handover lost.
        A sensor of a site in this batch gets at least one silence window from the clock at the site's first
        reading here (a sensor that stays silent is found then); the others wait for their site's records.
        """
        cfg = self.config
        n_k = len(self.metrics)
        devices = batch.devices
        slots = state.slot_of_row(channels // n_k)
        sites, first = np.unique(devices.site_ids_of(batch.slot), return_index=True)
        site = devices.site_ids_of(slots)
        at = np.minimum(np.searchsorted(sites, site), sites.shape[0] - 1)
        inside = sites[at] == site
        channels, slots, start = channels[inside], slots[inside], clock[first[at[inside]]]
        if cfg.expected_interval_s is not None:
            interval = np.full(channels.shape[0], cfg.expected_interval_s)
        else:
            interval = state["interval"].reshape(-1)[channels]
            stated = devices.expected_intervals(slots)
            if stated is not None:
                interval = np.where(np.isnan(stated), interval, stated)
        deadline = state["deadline"].reshape(-1)
        window = np.fmax(cfg.silence_factor * interval, cfg.min_silence_s)
        deadline[channels] = np.maximum(deadline[channels], start + window)
        state["deadline_here"].reshape(-1)[channels] = 1
