"""Incident events per second through dispatch into the store (SQLite, and PostgreSQL where reachable).

A burst of incidents (a storm of device faults over many sites: each fires, then rises one level) goes
through the tracker and the dispatcher, which records each event with its findings, audit line and
outbox rows in the store, in batches as the runner does. Baselines in the same run: the same events
appended to a JSON Lines file (what a store-less engine did), and the store written one event per ORM
``get``/``merge`` (the first version of ``Store.record``).

Prints a table, writes benchmarks/results/dispatch.json and dispatch.png.
Run: .venv/bin/python benchmarks/bench_dispatch.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.output import results_dir, write_results  # noqa: E402
from engine.config.models import EngineConfig  # noqa: E402 (after sys.path)
from engine.core.findings import Finding  # noqa: E402
from engine.core.levels import Level  # noqa: E402
from engine.dispatch.dispatcher import Dispatcher  # noqa: E402
from engine.incidents.tracker import IncidentTracker  # noqa: E402
from engine.store.store import Notification, Store  # noqa: E402
from engine.store.tables import AuditRow, FindingRow, IncidentRow, OutboxRow  # noqa: E402

RESULTS = results_dir()  # outside the checkout for --quick: only full runs write results files
console = Console()
PG_ADMIN = os.environ.get("GRIDWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def burst(sites: int) -> list[list[Finding]]:
    """Batches of findings: every site fires yellow, then (a later batch) rises to orange."""
    fired = [Finding("device-health", "device_fault", f"S{k:05d}", "rain-1", 1000.0 + k * 1e-3, Level.YELLOW, 1.0,
                     {"fault": "stuck", "repeats": 12}) for k in range(sites)]  # fmt: skip
    raised = [Finding(f.detector, f.hazard, f.site, f.device, f.ts + 600, Level.ORANGE, 2.0, f.evidence) for f in fired]
    rows = fired + raised
    return [rows[i : i + 500] for i in range(0, len(rows), 500)]


def record_one_by_one(store: Store, notes: list[Notification], sinks: list[str]) -> None:
    """The first ``Store.record``: an ORM get per incident and a merge per finding (the baseline)."""
    with store.session() as s:
        for n in notes:
            e = n.event
            row = s.get(IncidentRow, e["incident_id"]) or IncidentRow(id=e["incident_id"], escalations=0)
            s.add(row)
            Store._apply(row, n)
            for f in e["findings"]:
                s.merge(FindingRow(incident_id=e["incident_id"], detector=f["detector"], device=f["device"],
                                   ts=f["ts"], level=f["level"], score=f["score"], evidence=f["evidence"]))  # fmt: skip
            s.add(AuditRow(incident_id=e["incident_id"], at=n.at, actor="engine", action=e["action"], detail=n.detail))
            for sink in sinks:
                s.add(OutboxRow(sink=sink, incident_id=e["incident_id"], seq=e["seq"], event=orjson.dumps(e).decode(),
                                created_at=time.time(), attempts=0, next_attempt_at=0.0, gave_up=False))  # fmt: skip


def run(name: str, url: str | None, batches: list[list[Finding]], mode: str) -> dict[str, Any]:
    cfg = EngineConfig()
    tracker = IncidentTracker(cfg.incidents)
    store = None
    if url is not None:
        store = Store(url)
        store.migrate()
    dispatcher = Dispatcher(cfg, tracker, store if mode == "bulk" else None)
    dispatcher.sinks = ["webhook", "log"]
    log = Path(tempfile.mkdtemp(prefix="gridwatch-bench-")) / "events.jsonl"
    events = 0
    t0 = time.perf_counter()
    with log.open("ab") as fh:
        for batch in batches:
            evs = tracker.apply(batch)
            notes = dispatcher.handle(evs, batch[-1].ts)
            if mode == "jsonl":
                for e in evs:
                    fh.write(orjson.dumps(e) + b"\n")
                fh.flush()
            elif mode == "one_by_one" and store is not None:
                record_one_by_one(store, notes, dispatcher.sinks)
            events += len(evs)
    elapsed = time.perf_counter() - t0
    if store is not None:
        store.close()
    return {"name": name, "mode": mode, "events": events, "seconds": round(elapsed, 3),
            "events_per_s": round(events / elapsed)}  # fmt: skip


def postgres_url() -> tuple[str | None, Any]:
    try:
        import psycopg

        conn = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as exc:
        console.print(f"[yellow]PostgreSQL not reachable at {PG_ADMIN} ({exc}); SQLite only[/]")
        return None, None
    name = f"gridwatch_bench_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", (conn, name)


def main() -> None:
    quick = "--quick" in sys.argv
    sites = 2_000 if quick else 10_000
    batches = burst(sites)
    tmp = Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    pg_url, pg = postgres_url()
    plan: list[tuple[str, str | None, str]] = [
        ("JSON Lines file (baseline)", None, "jsonl"),
        ("SQLite, one by one (old)", f"sqlite:///{tmp / 'one.db'}", "one_by_one"),
        ("SQLite, bulk", f"sqlite:///{tmp / 'bulk.db'}", "bulk"),
    ]
    if pg_url is not None:
        plan.append(("PostgreSQL, bulk", pg_url, "bulk"))
    rows = []
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("dispatching incident bursts", total=len(plan))
            for name, url, mode in plan:
                rows.append(run(name, url, batches, mode))
                progress.advance(task)
    finally:
        if pg is not None:
            conn, name = pg
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.close()
    base = rows[0]["events_per_s"]
    for r in rows:
        r["ratio_to_jsonl"] = round(r["events_per_s"] / base, 3)
    write_results("dispatch", {"sites": sites, "runs": rows})
    table = Table(title=f"dispatch: {2 * sites:,} incident events ({sites:,} incidents, fired then raised)")
    for col in ("store", "events/s", "× JSON Lines"):
        table.add_column(col, justify="right" if col != "store" else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['events_per_s']:,}", f"{r['ratio_to_jsonl']:.2f}")
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh([r["name"] for r in rows], [r["events_per_s"] for r in rows], color="tab:blue")
    ax.set_xlabel("incident events per second (dispatch + store, one core)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(RESULTS / "dispatch.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
