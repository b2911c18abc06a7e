"""Silences and maintenance windows: a silenced incident is still recorded, only not notified.

A silence matches incidents by site, hazard, device and level (shell-style wildcards, ``*`` or unset
for any) and is active between ``starts_at`` and ``ends_at``; with ``cron`` it is a recurring maintenance
window, active for ``duration_s`` after each time the cron expression names (in ``timezone``).

>>> s = Silence(id="m1", site="S0*", hazard="landslide", cron="0 2 * * SUN", duration_s=7200)
>>> from datetime import datetime, timezone
>>> sunday_3am = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc).timestamp()
>>> s.active(sunday_3am), s.active(sunday_3am + 3600)
(True, False)
>>> s.matches("S02", "landslide", {"crack-1"}, "red")
True
"""

from __future__ import annotations

import logging
from datetime import datetime
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.core.levels import LevelName

logger = logging.getLogger(__name__)
LATEST_TS = 253402300799.0  # 9999-12-31: beyond it no calendar (nor the platform's time_t) has dates
LONGEST_S = LATEST_TS
MAX_WINDOW_S = 7 * 86400.0  # a recurring maintenance window


class Silence(BaseModel):
    """Mute notifications of matching incidents for a time, or in a recurring maintenance window."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Silence id (given by the store for silences created through the API).")
    site: str | None = Field(None, description="Site id or wildcard pattern; unset matches any.")
    hazard: str | None = Field(None, description="Hazard or pattern; unset matches any.")
    device: str | None = Field(None, description="Matches an incident when any of its findings' devices matches.")
    level: LevelName | None = Field(None, description="Only incidents at this level; unset matches any.")
    starts_at: float = Field(0.0, description="Epoch seconds from which the silence can be active.")
    ends_at: float | None = Field(None, description="Epoch seconds at which it ends; unset: never.")
    cron: str | None = Field(None, description="Recurring window: cron expression of each window's start.")
    duration_s: float | None = Field(None, gt=0, description="Length of each recurring window (with `cron`).")
    timezone: str = Field("UTC", description="Time zone the cron expression is read in, e.g. Asia/Shanghai.")
    created_by: str = Field("config", description="Who created it.")
    comment: str = Field("", description="Why (a maintenance ticket, a known false alarm).")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                CronSim(v, datetime(2000, 1, 1))
            except CronSimError as exc:
                raise ValueError(f"not a cron expression ({exc}); e.g. '0 2 * * SUN' for Sundays 02:00") from exc
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception as exc:
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Asia/Shanghai") from exc
        return v

    @model_validator(mode="after")
    def _window(self) -> Silence:
        if (self.cron is None) != (self.duration_s is None):
            raise ValueError("a recurring window needs both `cron` and `duration_s`")
        for name in ("starts_at", "ends_at", "duration_s"):
            v = getattr(self, name)
            if v is not None and not -LONGEST_S <= v <= LATEST_TS:
                raise ValueError(f"`{name}` {v!r} is no time a silence can have")
        if self.duration_s is not None and self.duration_s > MAX_WINDOW_S:
            raise ValueError(f"a recurring window lasts at most {MAX_WINDOW_S / 86400:.0f} days (`duration_s`)")
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("`ends_at` must be after `starts_at`")
        return self

    def active(self, at: float) -> bool:
        if at < self.starts_at or (self.ends_at is not None and at >= self.ends_at):
            return False
        if self.cron is None or self.duration_s is None:
            return True
        tz = ZoneInfo(self.timezone)
        # cronsim yields start times strictly after its origin: the first one after (at - duration) opens the
        # window [start, start + duration) that covers ``at``, if it has started by then.
        try:
            started = next(CronSim(self.cron, datetime.fromtimestamp(at - self.duration_s, tz)))
        except (OverflowError, OSError, ValueError, StopIteration):  # a window no calendar holds: it mutes nothing
            logger.error("silence %s: its window cannot be computed at %r; it mutes nothing", self.id, at)
            return False
        return started.timestamp() <= at

    def matches(self, site: str, hazard: str, devices: set[str], level: str) -> bool:
        return (
            _match(self.site, site)
            and _match(self.hazard, hazard)
            and (self.level is None or self.level == level)
            and (self.device is None or any(fnmatchcase(d, self.device) for d in devices))
        )


def _match(pattern: str | None, value: str) -> bool:
    return pattern is None or fnmatchcase(value, pattern)


def silenced_by(
    silences: list[Silence], at: float, site: str, hazard: str, devices: set[str], level: str
) -> str | None:
    """The id of the first silence active at ``at`` that matches, or None."""
    for s in silences:
        if s.matches(site, hazard, devices, level) and s.active(at):
            return s.id
    return None
