"""Inhibition: a graver incident mutes the notifications of a lesser, related one (Alertmanager's rule).

>>> rule = InhibitRule(source_hazard="landslide", target_hazard="rainstorm")
>>> rule.inhibits(("S1", "landslide", "red"), ("S1", "rainstorm", "yellow"))
True
>>> rule.inhibits(("S1", "landslide", "red"), ("S2", "rainstorm", "yellow"))
False
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.core.levels import Level, LevelName


class InhibitRule(BaseModel):
    """While a source incident is open at or above ``source_min_level``, target incidents at or below
    ``target_max_level`` at the same site are recorded but not notified."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_hazard: str = Field(description="Hazard of the inhibiting incident, e.g. landslide.")
    source_min_level: LevelName = Field("red", description="The source inhibits from this level up.")
    target_hazard: str = Field(description="Hazard of the inhibited incidents, e.g. rainstorm.")
    target_max_level: LevelName = Field("yellow", description="Targets at or below this level are inhibited.")
    same_site: bool = Field(True, description="Only targets at the source's site (else anywhere).")

    def inhibits(self, source: tuple[str, str, str], target: tuple[str, str, str]) -> bool:
        """``source`` and ``target`` are (site, hazard, level)."""
        return (
            source[1] == self.source_hazard
            and target[1] == self.target_hazard
            and Level.from_name(source[2]) >= Level.from_name(self.source_min_level)
            and Level.from_name(target[2]) <= Level.from_name(self.target_max_level)
            and (not self.same_site or source[0] == target[0])
        )


def inhibited_by(
    rules: list[InhibitRule], target: tuple[str, str, str], open_: list[tuple[str, str, str]]
) -> str | None:
    """A description of what inhibits ``target`` among the open incidents ``open_``, or None."""
    for rule in rules:
        if rule.target_hazard != target[1]:
            continue
        for source in open_:
            if rule.inhibits(source, target):
                return f"{source[1]} {source[2]} at {source[0]}"
    return None
