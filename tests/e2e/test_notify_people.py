"""People reached by e-mail and chat, end to end, across an engine killed with SIGKILL.

`gridwatch run` (its own process) with an Apprise sink: a grid worker's e-mail and chat, the town duty
officer's e-mail, through a real local SMTP server (aiosmtpd, AUTH over plain SMTP) and a real local HTTP chat
endpoint (Apprise's json://). A water level crosses its red threshold: the grid worker's e-mail must arrive
within 5 s of the reading. Nobody acknowledges: the incident escalates to the town while the mail server is
down; the engine is killed before that e-mail could go, the mail server comes back, the engine is started
again, and an operator resolves the incident through the API. Every receiver gets each of its messages once:
none lost, none twice; the incident's audit trail (the API's detail, as the page shows it) says who got what
and what failed, and no URL, password or token is in the engine's log or the trail.
"""

from __future__ import annotations

import signal
import time

import httpx
import orjson
import pytest

from engine.ingest.embedded_broker import free_port
from engine.store.store import Store
from tests.conftest import Process, publisher, wait_for
from tests.notify_receivers import CHAT_TOKEN, SMTP_PASSWORD, ChatReceiver, SmtpReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OPERATOR = "op-token-notify-0123456789"
FINDING_TO_MAIL_S = 5.0  # the target: a RED incident's e-mail within 5 s of the finding


def test_red_incident_mail_within_5_s_once_per_receiver_across_an_engine_killed_before_delivery(
    mosquitto, tmp_path, monkeypatch
):
    smtp, chat = SmtpReceiver(), ChatReceiver()
    smtp.start()
    chat.start()
    monkeypatch.setenv("GW_E2E_GRID_MAIL", smtp.url("grid-g1@example.org"))
    monkeypatch.setenv("GW_E2E_GRID_CHAT", chat.url())
    town_secret = tmp_path / "town-mail-url"
    town_secret.write_text(smtp.url("town-t1@example.org") + "\n")
    api_port = free_port("127.0.0.1")
    store_url = f"sqlite:///{tmp_path / 'data' / 'gridwatch.db'}"
    config = tmp_path / "gridwatch.yaml"
    data = tmp_path / "data"
    config.write_text(f"""
city: Chongqing
timezone: Asia/Shanghai
data_dir: {data}
checkpoint_interval_s: 1
mqtt: {{url: "{mosquitto.url}", client_id: engine-notify-{tmp_path.name}}}
store: {{url: "{store_url}"}}
api: {{port: {api_port}, tokens: [{{name: duty-officer, token: {OPERATOR}, role: operator}}]}}
sites:
  - {{id: S1, name: Underpass on road 12, lat: 29.5, lon: 106.5, grid: g1, town: t1, district: d1,
     devices: [{{id: wl-1, metrics: [water_level_m]}}]}}
detectors:
  - {{type: threshold, id: water, hazard: waterlogging, rules: [{{metric: water_level_m, levels: {{red: 1.5}}}}]}}
incidents: {{resolve_after_s: 86400}}
routing: [{{first: grid, ack_within_s: 2, repeat_s: 86400}}]
plans:
  - {{hazard: waterlogging, level: red, title: Close the underpass, role: grid worker,
     steps: [Close the underpass, Call the pump crew]}}
sinks:
  - {{type: log, path: {data}/incidents.jsonl}}
  - type: apprise
    name: people
    public_url: https://gridwatch.example.org
    backoff_s: 0.3
    backoff_max_s: 1
    hold_after_failures: 0     # the town's e-mail retried in order, never turned into a summary
    receivers:
      - {{to: "grid:g1", name: g1-mail, url: "${{GW_E2E_GRID_MAIL}}"}}
      - {{to: "grid:g1", name: g1-chat, url: "${{GW_E2E_GRID_CHAT}}"}}
      - {{to: "town:t1", name: t1-mail, url_file: {town_secret}}}
""")
    api = f"http://127.0.0.1:{api_port}/api"
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    started = time.time()

    def phase(what: str) -> float:
        now = time.time()
        print(f"{now - started:5.1f} s: {what}")
        return now

    engine = Process("engine", ["run", "-c", str(config)], tmp_path)
    pub = publisher(mosquitto.url)
    grid, town = "grid-g1@example.org", "town-t1@example.org"
    try:
        assert wait_for(lambda: "engine running" in engine.text(), 60), engine.text()[-3000:]
        phase("engine up")
        # The finding: one reading over the red threshold, stamped now.
        found_at = time.time()
        payload = orjson.dumps({"ts": found_at, "values": {"water_level_m": 1.8}})
        pub.publish("gw/sensors/S1/wl-1", payload, qos=1)
        assert wait_for(lambda: smtp.to(grid) and chat.posts, 30), engine.text()[-3000:]
        latency = smtp.to(grid)[0].at - found_at
        print(f"RED e-mail {latency:.2f} s after the finding; chat {chat.posts[0]['at'] - found_at:.2f} s")
        assert latency <= FINDING_TO_MAIL_S, f"the RED e-mail took {latency:.2f} s"
        incident_id = chat.posts[0]["message"].rsplit("#incident=", 1)[1].strip()

        def trail() -> list[dict]:
            res = httpx.get(f"{api}/incidents/{incident_id}", headers=auth, timeout=5)
            return res.json()["audit"] if res.status_code == 200 else []

        # Not acknowledged within 2 s: escalated to the town while the mail server is down. Killed before the
        # town's e-mail could go.
        smtp.stop()
        assert wait_for(lambda: any(a["action"] == "notify_failed" for a in trail()), 30), engine.text()[-3000:]
        phase("escalated, its e-mail failed")
        engine.kill(signal.SIGKILL)
        assert smtp.to(town) == []
        smtp.start()
        engine.start()
        assert wait_for(lambda: engine.count("engine running") >= 2, 60), engine.text()[-3000:]
        up_again = phase("engine up again")
        assert wait_for(lambda: smtp.to(town), 30), engine.text()[-3000:]
        print(f"the town's e-mail {smtp.to(town)[0].at - up_again:.2f} s after the restarted engine was up")
        resolved = httpx.post(f"{api}/incidents/{incident_id}/resolve", json={"comment": "pumped dry"},
                              headers=auth, timeout=10)  # fmt: skip
        assert resolved.status_code == 200, resolved.text
        phase("resolved through the API")
        assert wait_for(lambda: len(smtp.to(town)) >= 2 and len(smtp.to(grid)) >= 2 and len(chat.posts) >= 2, 30)
        phase("resolution delivered")
        assert wait_for(lambda: Store(store_url).outbox_backlog().get("people", 0) == 0, 30)
        phase("resolved and told")
        time.sleep(1.0)  # a duplicate would arrive now
        words = lambda mails: [m.subject.split(": ", 1)[1] for m in mails]  # noqa: E731
        assert words(smtp.to(grid)) == ["new incident", "resolved"]
        assert words(smtp.to(town)) == ["escalated: not acknowledged in time", "resolved"]
        assert [p["title"].split(": ", 1)[1] for p in chat.posts] == ["new incident", "resolved"]
        assert "Resolved by duty-officer at" in smtp.to(grid)[1].body
        assert "Close the underpass" in smtp.to(grid)[0].body and "Close the underpass" not in smtp.to(grid)[1].body
        assert f"https://gridwatch.example.org/#incident={incident_id}" in smtp.to(town)[0].body
        assert smtp.refused_logins == 0 and chat.bad_tokens == 0
        lines = [(a["action"], a["detail"].get("receivers")) for a in trail()]
        for who in ("g1-mail", "g1-chat"):
            assert lines.count(("notified", [who])) == 2, lines
        assert lines.count(("notified", ["t1-mail"])) == 2 and ("notify_failed", ["t1-mail"]) in lines, lines
        shown = engine.text() + orjson.dumps(trail()).decode()
        for secret in (SMTP_PASSWORD, CHAT_TOKEN, "hooks/duty", str(town_secret.read_text().strip())):
            assert secret not in shown, secret
    finally:
        pub.stop()
        engine.stop()
        smtp.stop()
        chat.stop()
