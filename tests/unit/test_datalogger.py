"""Dataloggers posting readings over HTTP (``POST /api/ingest``) into the engine's intake, through create_app."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.auth import TokenAuth
from engine.api.datalogger import BodyError, csv_readings, datalogger_router
from engine.api.server import create_app
from engine.config.models import ApiToken, DataloggerConfig, DataloggerGroup, EngineConfig, SiteConfig
from engine.core.devices import DeviceIndex
from engine.core.quantities import METRIC_NAMES
from engine.ingest.intake import Intake

HILL = "hill-loggers-token-0123"
RIVER = "river-loggers-token-0123"


def site(sid: str) -> SiteConfig:
    return SiteConfig(id=sid, lat=30.0, lon=120.0, grid="g1", town="t1", district="d1")


class Endpoint:
    def __init__(self, **limits: Any) -> None:
        groups = [DataloggerGroup(name="hill", token=HILL, sites=["S1"]),
                  DataloggerGroup(name="river", token=RIVER, sites=["S2"])]  # fmt: skip
        self.cfg = EngineConfig(sites=[site("S1"), site("S2")], datalogger=DataloggerConfig(groups=groups, **limits))
        self.deadletters: list[dict[str, Any]] = []
        self.intake = Intake(self.cfg, DeviceIndex(), publish=lambda _t, p: self.deadletters.append(orjson.loads(p)))
        operators = TokenAuth([ApiToken(name="ops", token="operator-token-0123456789", role="operator")])
        app = create_app(lambda: {"ok": True}, routers=(datalogger_router(self.cfg.datalogger, lambda: self.intake),),
                         auth=operators, max_body_bytes=100_000)  # fmt: skip
        self.client = TestClient(app)

    def post(self, token: str, body: bytes, content_type: str = "text/csv") -> Any:
        return self.client.post("/api/ingest", content=body,
                                headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})  # fmt: skip

    def readings(self) -> list[tuple[str, str, float, str, float]]:
        b = self.intake.take()
        return sorted(
            (b.devices.site_of_slot(int(s)), b.devices.device_of_slot(int(s)), float(t), METRIC_NAMES[int(m)], float(v))
            for s, t, m, v in zip(b.slot, b.ts, b.metric, b.value, strict=True)
        )


def test_csv_and_json_posts_feed_the_intake_and_bad_rows_are_dead_lettered():
    e = Endpoint()
    now = time.time()
    csv = (f"ts,site,device,metric,value\n{now:.0f},S1,pz-1,pore_pressure_kpa,41.5\n{now:.0f},S1,pz-1,temp_c,12\n"
           f"{now:.0f},S1,rg-1,rain_in,0.1\n{now:.0f},S1,rg-1,snow_mm,3\nyesterday,S1,rg-2,rain_mm,1\n"
           f"{now:.0f},S2,wl-1,water_level_m,2\n")  # fmt: skip
    res = e.post(HILL, csv.encode())
    assert res.status_code == 200
    body = res.json()
    assert (body["taken"], body["refused"]) == (1, 3)  # readings: pz-1 at one time with its two values
    assert sorted(r["reason"] for r in body["refusals"]) == ["bad_ts", "site_not_allowed", "unknown_metric"]
    assert [(r[0], r[1], r[3], round(r[4], 3)) for r in e.readings()] == [
        ("S1", "pz-1", "pore_pressure_kpa", 41.5),
        ("S1", "pz-1", "temp_c", 12.0),
    ]  # fmt: skip  (rg-1's reading is refused whole: one of its values is no metric)
    assert sorted(d["reason"] for d in e.deadletters) == ["bad_ts", "site_not_allowed", "unknown_metric"]
    assert {d["topic"] for d in e.deadletters} == {"http/ingest/hill"} and e.intake.rejected == 3
    doc = {"site": "S2", "readings": [{"device": "wl-1", "ts": now, "values": {"water_level_ft": 10}},
                                      {"device": "wl-1", "ts": now + 1e6, "values": {"water_level_m": 1}}]}  # fmt: skip
    res = e.post(RIVER, orjson.dumps(doc), "application/json")
    assert res.json()["taken"] == 1 and res.json()["refusals"][0]["reason"] == "future_ts"
    assert [(r[1], r[3], round(r[4], 3)) for r in e.readings()] == [("wl-1", "water_level_m", 3.048)]


def test_tokens_bodies_and_limits():
    e = Endpoint(max_body_bytes=2048, max_readings=3)
    header = b"ts,site,device,metric,value\n"
    assert e.post("operator-token-0123456789", header).status_code == 401  # an API token is not a logger's
    assert e.post("", header).status_code == 401
    res = e.post(HILL, b"when,where,what\n1,2,3\n")
    assert res.status_code == 422 and "ts,site,device,metric,value" in res.text
    assert e.post(HILL, b"[1, 2]", "application/json").status_code == 422
    for device in (b"a\x00b", b"../etc"):
        res = e.post(HILL, header + b"1700000000,S1," + device + b",rain_mm,1\n")
        assert res.json()["refusals"][0]["reason"] == "malformed_reading"
    with pytest.raises(BodyError, match="not CSV"):
        csv_readings(header.decode() + '1,S1,a,rain_mm,"' + "9" * 200_000 + '"\n', 10)
    assert e.post(HILL, header + b"1700000000,S1,a,rain_mm,1\n" * 4).status_code == 413  # 4 rows, 3 allowed
    assert e.post(HILL, header + b"x" * 3000).status_code == 413  # over max_body_bytes

    def chunks():  # no Content-Length: counted as it arrives
        yield header
        for _ in range(10):
            yield b"1700000000,S1,a,rain_mm,1\n" * 20

    res = e.client.post("/api/ingest", content=chunks(), headers={"Authorization": f"Bearer {HILL}"})
    assert res.status_code == 413 and "datalogger.max_body_bytes" in res.text
    assert e.readings() == [] and [d["reason"] for d in e.deadletters] == ["malformed_reading"] * 2


def test_a_refused_csv_row_is_dead_lettered_with_its_row_not_the_whole_body():
    """Each refused row's dead letter carries that row (as a JSON item's carries the item), not the body's
    first 4 KB, which need not even hold the row."""
    e = Endpoint()
    rows = ["1,S1,../x,rain_mm,1", "a,b"] + [f"1700000000,S1,rg-{i},rain_mm,x{'9' * 60}" for i in range(60)]
    res = e.post(HILL, ("ts,site,device,metric,value\n" + "\n".join(rows) + "\n").encode())
    assert res.status_code == 200 and res.json()["refused"] == 62
    letters = [d for d in e.deadletters if not d["reason"].endswith("_more")]  # past the limit: one summary
    assert len(letters) == 10 and all("payload" not in d for d in letters), letters[0]
    assert [d["reading"] for d in letters[:2]] == [["1", "S1", "../x", "rain_mm", "1"], ["a", "b"]]
    assert max(len(orjson.dumps(d)) for d in letters) < 400


def test_a_csv_saved_by_a_spreadsheet_with_a_byte_order_mark_is_read():
    e = Endpoint()
    res = e.post(
        HILL, b"\xef\xbb\xbfts,site,device,metric,value\r\n" + f"{time.time():.0f},S1,rg-1,rain_mm,0.4\r\n".encode()
    )
    assert res.status_code == 200 and res.json()["taken"] == 1, res.text


cells = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(cells | st.floats(allow_nan=True).map(str), max_size=7), max_size=8))
def test_any_csv_gives_readings_or_refusals_never_an_error(rows):
    import csv as csv_module
    import io

    out = io.StringIO()
    writer = csv_module.writer(out)
    writer.writerow(["ts", "site", "device", "metric", "value"])
    writer.writerows(rows)
    try:
        readings, refused = csv_readings(out.getvalue(), 100)
    except BodyError:
        return
    assert sum(len(doc["values"]) for _, _, doc in readings) + len(refused) <= max(len([r for r in rows if r]), 0)
