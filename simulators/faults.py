"""Sensor and transport faults injected into a simulated feed, each with its ground-truth record.

Rows are ``(ts, site, device, metric, value)`` in arrival order. Faults that break the sensor change
values (stuck, spike, out of range); faults of the clock or the link change timestamps or the arrival
order (clock skew, dropout, duplicate, out of order), as a real gateway would deliver them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.ingest.replay_file import Row

FaultName = Literal["dropout", "stuck", "spike", "out_of_range", "clock_skew", "duplicate", "out_of_order"]
# The device_health fault kind that each injected fault must be reported as.
REPORTED_AS: dict[str, str] = {
    "dropout": "silent",
    "stuck": "stuck",
    "spike": "jump",
    "out_of_range": "out_of_range",
    "clock_skew": "clock_skew",
    "duplicate": "duplicate",
    "out_of_order": "out_of_order",
}


class FaultSpec(BaseModel):
    """One fault of one device."""

    model_config = ConfigDict(extra="forbid")
    kind: FaultName = Field(description="What goes wrong.")
    site: str
    device: str
    start_h: float = Field(ge=0, description="Hours after the scenario start.")
    duration_h: float = Field(0.0, ge=0, description="How long (dropout, stuck, out_of_range, clock_skew).")
    magnitude: float = Field(50.0, description="Spike height (metric units).")
    sentinel: float = Field(-9999.0, description="Value an out-of-range sensor reports.")
    skew_s: float = Field(3600.0, gt=0, description="How far behind the device's clock runs (clock_skew).")

    def truth(self, base_ts: float) -> dict[str, Any]:
        start = base_ts + self.start_h * 3600.0
        return {
            "site": self.site,
            "hazard": "device_fault",
            "device": self.device,
            "kind": REPORTED_AS[self.kind],
            "start": start,
            "end": start + self.duration_h * 3600.0,
            "level": "blue",
        }


def inject(rows: list[Row], faults: list[FaultSpec], base_ts: float) -> list[Row]:
    """The feed with every fault applied, in arrival order."""
    out = list(rows)
    for f in faults:
        t0 = base_ts + f.start_h * 3600.0
        t1 = t0 + max(f.duration_h * 3600.0, 1e-6)
        mine = [i for i, r in enumerate(out) if r[1] == f.site and r[2] == f.device and r[0] >= t0]
        if not mine:
            raise ValueError(f"fault {f.kind} at {f.site}/{f.device}: no readings after {f.start_h} h")
        window = [i for i in mine if out[i][0] < t1] or mine[:1]
        if f.kind == "dropout":
            drop = set(window)
            out = [r for i, r in enumerate(out) if i not in drop]
        elif f.kind == "stuck":
            frozen = out[window[0]][4]
            for i in window:
                out[i] = (*out[i][:4], frozen)
        elif f.kind == "spike":
            i = window[0]
            out[i] = (*out[i][:4], out[i][4] + f.magnitude)
        elif f.kind == "out_of_range":
            for i in window:
                out[i] = (*out[i][:4], f.sentinel)
        elif f.kind == "clock_skew":
            for i in window:
                out[i] = (out[i][0] - f.skew_s, *out[i][1:])
        elif f.kind == "duplicate":
            i = window[0]
            out.insert(min(i + 7, len(out)), out[i])
        elif f.kind == "out_of_order":
            if len(mine) < 2:
                raise ValueError(f"out_of_order at {f.site}/{f.device} needs two readings after {f.start_h} h")
            i, j = mine[0], mine[1]
            late = out.pop(i)
            out.insert(j, late)  # the older reading now arrives after the newer one
    return out
