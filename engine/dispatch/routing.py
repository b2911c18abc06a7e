"""Routes over the site hierarchy, the routing tree by hazard and level, and response plans."""

from __future__ import annotations

from typing import Any

from engine.config.models import TIERS, EngineConfig, PlanConfig, RouteRule
from engine.core.levels import Level

DEFAULT_RULE = RouteRule()


class Router:
    """The escalation path of a site (grid → town → district → city), who hears first, and the plan.

    >>> from engine.config.models import EngineConfig
    >>> site = dict(id="S1", lat=29.5, lon=106.5, grid="g7", town="Nanshan", district="Nan'an")
    >>> cfg = EngineConfig(city="Chongqing", sites=[site], routing=[dict(hazard="landslide", first="town")])
    >>> r = Router(cfg)
    >>> r.route("S1")
    ['grid:g7', 'town:Nanshan', "district:Nan'an", 'city:Chongqing']
    >>> r.first_tier("landslide", Level.BLUE), r.first_tier("rainstorm", Level.RED)
    (1, 0)
    """

    def __init__(self, cfg: EngineConfig) -> None:
        self.city = cfg.city
        self._routes = {
            s.id: [f"grid:{s.grid}", f"town:{s.town}", f"district:{s.district}", f"city:{cfg.city}"] for s in cfg.sites
        }
        self._plans: dict[str, list[PlanConfig]] = {}
        for p in sorted(cfg.plans, key=lambda p: Level.from_name(p.level)):
            self._plans.setdefault(p.hazard, []).append(p)
        self._rules: dict[str, list[RouteRule]] = {}
        for r in sorted(cfg.routing, key=lambda r: Level.from_name(r.min_level)):
            self._rules.setdefault(r.hazard, []).append(r)

    def route(self, site: str) -> list[str]:
        # A site missing from the config still reaches the city centre rather than nobody.
        return self._routes.get(site, ["grid:?", "town:?", "district:?", f"city:{self.city}"])

    def rule(self, hazard: str, level: Level) -> RouteRule:
        for candidates in (self._rules.get(hazard), self._rules.get("*")):
            chosen = [r for r in candidates or [] if Level.from_name(r.min_level) <= level]
            if chosen:
                return chosen[-1]
        return DEFAULT_RULE

    def first_tier(self, hazard: str, level: Level) -> int:
        return TIERS.index(self.rule(hazard, level).first)

    def plan_config(self, hazard: str, level: Level) -> PlanConfig | None:
        chosen = None
        for p in self._plans.get(hazard, []):
            if Level.from_name(p.level) <= level:
                chosen = p
        return chosen

    def plan(self, hazard: str, level: Level) -> dict[str, Any]:
        chosen = self.plan_config(hazard, level)
        return chosen.model_dump() if chosen else {}

    def plan_receivers(self, site: str, hazard: str, level: Level) -> list[str]:
        """Everyone one-key dispatch reaches: the plan's tiers of the site's route, then its contacts."""
        plan = self.plan_config(hazard, level)
        route = self.route(site)
        if plan is None:
            return route
        return [route[TIERS.index(t)] for t in plan.receivers] + list(plan.contacts)
