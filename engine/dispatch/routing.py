"""Routes and response plans attached to incident events."""

from __future__ import annotations

from typing import Any

from engine.config.models import EngineConfig, PlanConfig
from engine.core.levels import Level


class Router:
    """The escalation path of a site (grid → town → district → city) and the plan for a hazard and level.

    >>> from engine.config.models import EngineConfig
    >>> site = dict(id="S1", lat=29.5, lon=106.5, grid="g7", town="Nanshan", district="Nan'an")
    >>> cfg = EngineConfig(city="Chongqing", sites=[site])
    >>> Router(cfg).route("S1")
    ['grid:g7', 'town:Nanshan', "district:Nan'an", 'city:Chongqing']
    """

    def __init__(self, cfg: EngineConfig) -> None:
        self.city = cfg.city
        self._routes = {
            s.id: [f"grid:{s.grid}", f"town:{s.town}", f"district:{s.district}", f"city:{cfg.city}"] for s in cfg.sites
        }
        self._plans: dict[str, list[PlanConfig]] = {}
        for p in sorted(cfg.plans, key=lambda p: Level.from_name(p.level)):
            self._plans.setdefault(p.hazard, []).append(p)

    def route(self, site: str) -> list[str]:
        # A site missing from the config still reaches the city centre rather than nobody.
        return self._routes.get(site, [f"city:{self.city}"])

    def plan(self, hazard: str, level: Level) -> dict[str, Any]:
        chosen = None
        for p in self._plans.get(hazard, []):
            if Level.from_name(p.level) <= level:
                chosen = p
        return chosen.model_dump() if chosen else {}
