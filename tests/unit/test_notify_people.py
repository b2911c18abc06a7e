"""The Apprise sink behind the outbox, in one process: real Apprise sending to a real local SMTP server and a
real local HTTP chat endpoint, the real store and dispatcher. What each receiver gets, once; retries that skip
whom an event already reached; rate limits that hold a burst and summarise it; URLs that never leak."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine.cli import app
from engine.config.loader import ConfigError, parse_config
from engine.config.models import EngineConfig
from engine.core.findings import Finding
from engine.core.levels import Level
from engine.dispatch.apprise_sink import AppriseSink, Redactor
from engine.dispatch.dispatcher import Dispatcher
from engine.dispatch.outbox import OutboxDelivery, RetryPolicy
from engine.dispatch.routing import Router
from engine.incidents.tracker import IncidentTracker
from engine.store.store import Store
from engine.store.tables import OutboxRow
from tests.conftest import ROOT, wait_for
from tests.notify_receivers import CHAT_TOKEN, SMTP_PASSWORD, ChatReceiver, HangingServer, SmtpReceiver

SITES = [
    {"id": "S1", "name": "Hillside above road 12", "lat": 29.5, "lon": 106.5, "grid": "g1", "town": "t1",
     "district": "d1"},
    {"id": "S2", "lat": 29.6, "lon": 106.6, "grid": "g1", "town": "t1", "district": "d1"},
]  # fmt: skip
PLAN = {"hazard": "landslide", "level": "red", "title": "Evacuate", "role": "district emergency office",
        "steps": ["Evacuate the danger zone now", "Keep the road closed"], "contacts": ["Geotech team"]}  # fmt: skip


@pytest.fixture
def chat():
    receiver = ChatReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def engine_config(receivers: list[dict], sites: list[dict[str, object]] | None = None, **sink: object) -> EngineConfig:
    apprise = {"type": "apprise", "name": "people", "public_url": "https://gridwatch.example.org",
               "receivers": receivers, "backoff_s": 0.05, **sink}  # fmt: skip
    return EngineConfig(
        city="Chongqing", timezone="Asia/Shanghai", sites=SITES + (sites or []), plans=[PLAN], sinks=[apprise],
        routing=[{"first": "grid", "ack_within_s": 600, "repeat_s": 100_000}],
    )  # fmt: skip


class Desk:
    """The dispatcher writing to the store's outbox, and the outbox delivering to the Apprise sink."""

    def __init__(self, cfg: EngineConfig, store: Store) -> None:
        self.cfg, self.store = cfg, store
        router = Router(cfg)
        self.tracker = IncidentTracker(cfg.incidents, route_of=router.route, plan_of=router.plan)
        self.dispatcher = Dispatcher(cfg, self.tracker, store)
        self.dispatcher.sinks = ["people"]
        self.sink = AppriseSink(cfg.sinks[0], store, cfg)  # type: ignore[arg-type]
        self.delivery = OutboxDelivery(store, [self.sink], {"people": RetryPolicy(0.05, 0.1)})

    def red(self, site: str, ts: float) -> str:
        f = Finding("crack", "landslide", site, "crack-1", ts, Level.RED, 5.0)
        (note,) = self.dispatcher.handle(self.tracker.apply([f]), now=ts)
        self.sent = {**note.event, "receivers": note.detail["receivers"]}  # as the outbox holds it
        return str(note.event["incident_id"])

    def drain(self, final: bool = False) -> int:
        return asyncio.run(self.delivery.drain(self.sink, final=final))

    def restart(self) -> None:
        """A new sink on the same store, as an engine started again has."""
        self.sink.close()
        self.sink = AppriseSink(self.cfg.sinks[0], self.store, self.cfg)  # type: ignore[arg-type]
        self.delivery = OutboxDelivery(self.store, [self.sink], {"people": RetryPolicy(0.05, 0.1)})


@pytest.fixture
def store(tmp_path: Path):
    st = Store(f"sqlite:///{tmp_path / 'gridwatch.db'}")
    st.migrate()
    yield st
    st.close()


def trail(store: Store, incident_id: str) -> list[tuple[str, list[str], str]]:
    """The incident's audit lines as the API's detail (and the page) shows them: action, receivers, note."""
    inc = store.incident(incident_id)
    assert inc is not None
    return [(a["action"], a["detail"].get("receivers", []), a["detail"].get("note", "")) for a in inc["audit"]]


def test_each_receiver_gets_the_plan_level_site_and_link_once_and_a_retry_reaches_only_who_missed_it(store, smtp, chat):
    cfg = engine_config([{"to": "grid:g1", "name": "g1-mail", "url": smtp.url("g1@example.org")},
                         {"to": "grid:*", "name": "g1-chat", "url": chat.url()},
                         {"to": "town:t1", "url": smtp.url("t1@example.org"), "min_level": "red"},
                         {"to": "district:d1", "url": smtp.url("d1@example.org")}])  # fmt: skip
    desk = Desk(cfg, store)
    now = time.time()
    iid = desk.red("S1", now)
    # The chat endpoint is down: the e-mail goes, the event stays in the outbox for the chat.
    assert desk.drain() == 0
    (mail,) = smtp.mails
    assert mail.to == ["g1@example.org"]
    assert mail.subject == "[RED] landslide at S1 Hillside above road 12: new incident"
    assert "RED landslide at S1 Hillside above road 12 (t1, d1): new incident." in mail.body
    assert "Plan: Evacuate (district emergency office)\n1. Evacuate the danger zone now\n2. Keep the road closed" in (
        mail.body
    )
    assert "Contacts: Geotech team" in mail.body
    assert f"Open: https://gridwatch.example.org/#incident={iid}" in mail.body
    assert "UTC+08:00" in mail.body  # the city's time zone
    (row,) = store.outbox_due("people")
    assert row.attempts == 1
    chat.start()
    desk.drain(final=True)
    assert len(smtp.mails) == 1, "the e-mail receiver already had it: not sent again"
    (post,) = chat.posts
    assert post["title"] == mail.subject and f"#incident={iid}" in post["message"] and post["type"] == "failure"
    assert store.outbox_backlog() == {}
    # An engine started again that finds the event due again (killed before it marked the row) sends nothing.
    desk.restart()
    desk.sink.send(desk.sent, f"{iid}.1.people")
    assert (len(smtp.mails), len(chat.posts)) == (1, 1)
    lines = trail(store, iid)
    assert ("notified", ["g1-mail"], "mailto message sent to g1-mail") in lines
    assert ("notified", ["g1-chat"], "json message sent to g1-chat") in lines
    (failed,) = [line for line in lines if line[0] == "notify_failed"]
    assert failed[1] == ["g1-chat"] and "attempt 1; retried" in failed[2]
    # Acknowledged, then resolved: both go to everyone who heard of it (the town's receiver takes red only).
    for note in desk.dispatcher.acknowledge(iid, "duty officer", now + 10):
        assert note.detail["receivers"] == ["grid:g1"]
    desk.drain()
    assert [m.subject.split(": ")[-1] for m in smtp.to("g1@example.org")] == ["new incident", "acknowledged"]
    assert "Acknowledged by duty officer, open since" in smtp.to("g1@example.org")[1].body
    assert smtp.to("t1@example.org") == [] and smtp.to("d1@example.org") == []


def test_no_url_reaches_the_log_the_trail_or_the_outbox(store, smtp, chat, caplog):
    cfg = engine_config([{"to": "grid:g1", "name": "g1-chat", "url": chat.url()},
                         {"to": "grid:g1", "name": "g1-mail", "url": smtp.url("g1@example.org")}])  # fmt: skip
    smtp.stop()  # both down: every failure text is written somewhere
    desk = Desk(cfg, store)
    caplog.set_level("DEBUG")
    iid = desk.red("S1", time.time())
    desk.drain()
    (row,) = store.outbox_due("people")
    with store.session() as s:
        stored = s.get(OutboxRow, row.id)
        error = stored.last_error if stored is not None else None
    assert error and "g1-chat" in error and "g1-mail" in error
    texts = [error, caplog.text, repr(trail(store, iid)), repr(cfg), str(cfg.sinks[0])]
    for text in texts:
        for secret in (CHAT_TOKEN, SMTP_PASSWORD, f"127.0.0.1:{chat.port}", "hooks/duty"):
            assert secret not in text, (secret, text[:2000])


def test_a_burst_is_held_per_receiver_and_summarised_even_across_a_restart(store, chat):
    sites: list[dict[str, object]] = [
        {"id": f"B{k:02d}", "lat": 29.5, "lon": 106.5, "grid": "g1", "town": "t1", "district": "d1"} for k in range(20)
    ]
    cfg = engine_config(
        [{"to": "grid:g1", "url": chat.url("grid")}, {"to": "town:t1", "url": chat.url("town")}], sites,
        rate_limit={"messages": 3, "window_s": 600, "summary_every_s": 0.5},
    )  # fmt: skip
    chat.start()
    desk = Desk(cfg, store)
    now = time.time()
    ids = [desk.red(str(s["id"]), now + k) for k, s in enumerate(sites)]
    desk.drain()
    assert [p["path"] for p in chat.posts] == ["/grid"] * 3, "three messages, then the burst is held"
    assert desk.sink.flush_held() == 0, "no summary before summary_every_s"
    held = trail(store, ids[-1])[-1]
    assert held[0] == "notify_held" and held[1] == ["grid:g1"] and "rate limit of 3 messages per 600 s" in held[2]
    desk.restart()  # what is held is in the store, not in memory
    chat.stop()  # the summary's first try fails: the held incidents' trails say so, and it is tried again
    assert wait_for(lambda: desk.sink.flush_held() or trail(store, ids[-1])[-1][0] == "notify_failed", 10)
    assert "json summary to grid:g1 failed (retried)" in trail(store, ids[-1])[-1][2]
    chat.start()
    assert wait_for(lambda: desk.sink.flush_held() or len(chat.posts) > 3, 10)
    summary = chat.posts[3]
    assert summary["title"] == "[RED] gridwatch: 17 events on 17 incidents held for you"
    assert "17 events held for grid:g1 since" in summary["message"] and "… and" not in summary["message"]
    assert all(f"incident {i}" in summary["message"] for i in ids[3:]) and ids[0] not in summary["message"]
    assert trail(store, ids[5])[-1][0] == "notify_summarised"
    # Later news for one of them joins the next summary, never overtaking it.
    desk.dispatcher.acknowledge(ids[0], "duty officer", now + 30)
    desk.drain()
    assert len(chat.posts) == 4
    assert wait_for(lambda: desk.sink.flush_held() or len(chat.posts) > 4, 10)
    assert "acknowledged (incident " + ids[0] in chat.posts[4]["message"]
    assert store.receivers_holding("people") == []
    assert all(p["path"] == "/grid" for p in chat.posts), "the town is not on these incidents' route yet"


ALPHABET = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?&=@:#,;%")


@settings(max_examples=100, deadline=None)
@given(
    password=st.text(ALPHABET, min_size=3, max_size=24),
    token=st.text(ALPHABET, min_size=4, max_size=40).filter(lambda t: not (t.isdigit() and len(t) <= 5)),  # a port
    host=st.from_regex(r"[a-z][a-z0-9-]{3,20}\.example\.org", fullmatch=True),
    prefix=st.text(max_size=20),
)
def test_redaction_cuts_every_key_of_a_url_out_of_any_text(password, token, host, prefix):
    url = f"json://bot:{password}@{host}:8443/hooks/{token}?+X-Key={token[::-1]}"
    cut = Redactor(url)
    said = f"{prefix}POST {url} to {host} as bot:{password} with {token} and {token[::-1]} failed"
    out = cut(said)
    for secret in (password, token, token[::-1], host):
        assert secret not in out.replace(prefix, ""), out


@pytest.mark.parametrize(
    ("receiver", "says"),
    [
        ({"to": "twn:Nanshan", "url": "json://k3y-abcdef@h/p"}, "`to` must be <tier>:<name>"),
        ({"to": "town:t1"}, "give `url` (from ${ENV_VAR}) or `url_file`, one of them"),
        ({"to": "town:t1", "url": "k3y-abcdef"}, "`url` is not an Apprise URL"),
        ({"to": "town:t1", "url_file": "/no/such/secret"}, "url_file: no file /no/such/secret"),
        ({"to": "contact:" + "x" * 193, "url": "json://k3y-abcdef@h/p"}, "at most 200 characters"),
        ({"to": "town:t1", "name": "n" * 201, "url": "json://k3y-abcdef@h/p"}, "at most 200 characters"),
    ],
)
def test_a_bad_receiver_stops_at_load_naming_its_field_never_its_url(receiver, says):
    text = (
        "sinks:\n  - type: apprise\n    receivers:\n"
        f"      - {{{', '.join(f'{k}: {v!r}' for k, v in receiver.items())}}}\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cfg.yaml")
    (issue,) = err.value.issues
    assert issue.field == "sinks[0].receivers[0]" and issue.line == 4 and says in issue.message, str(issue)
    assert "k3y-abcdef" not in str(err.value)


def test_check_config_refuses_a_url_apprise_cannot_use_and_warns_of_a_receiver_nobody_routes_to(tmp_path, monkeypatch):
    secret = tmp_path / "town-mail-url"
    secret.write_text("mailto://gw:k3y-abcdef@127.0.0.1:2525?mode=insecure&to=t1@example.org&from=gw@example.org\n")
    monkeypatch.setenv("GW_TEST_CHAT_URL", "json://127.0.0.1:9/hooks/k3y-abcdef")
    path = tmp_path / "gridwatch.yaml"
    path.write_text(
        "city: Chongqing\n"
        "sites: [{id: S1, lat: 29.5, lon: 106.5, grid: g1, town: Nanshan, district: d1}]\n"
        "sinks:\n  - type: apprise\n    receivers:\n"
        f"      - {{to: town:Nanshn, url_file: {secret}}}\n"
        "      - {to: grid:g1, url: '${GW_TEST_CHAT_URL}'}\n"
    )
    ok = CliRunner().invoke(app, ["check-config", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "warning: sinks[0].receivers[0].to: town:Nanshn is no town of the config's sites (did you mean " \
           "town:Nanshan?)" in ok.output  # fmt: skip
    monkeypatch.setenv("GW_TEST_CHAT_URL", "nosuchservice://k3y-abcdef/x")
    bad = CliRunner().invoke(app, ["check-config", str(path)])
    assert bad.exit_code == 2
    assert "sinks[0].receivers[1] (grid:g1): Apprise cannot use this URL (scheme 'nosuchservice')" in bad.output
    run = CliRunner().invoke(app, ["run", "-c", str(path)])  # the engine stops at start, before anything runs
    assert run.exit_code == 2 and "sinks[0].receivers[1] (grid:g1): Apprise cannot use this URL" in run.output
    assert "k3y-abcdef" not in ok.output + bad.output + run.output


def test_the_shipped_configs_commented_example_checks_ok(tmp_path, monkeypatch):
    """The commented `apprise` sink of config/gridwatch.yaml, uncommented, is a config check-config passes."""
    text = (ROOT / "config" / "gridwatch.yaml").read_text()
    start = text.index("  # - type: apprise\n")
    end = text.index("\n\n", start)
    example = "\n".join(line.replace("  # ", "  ", 1) for line in text[start:end].splitlines())
    secret = tmp_path / "town-duty-mail"
    secret.write_text("mailtos://duty:k3y-abcdef@smtp.example.org?to=town@example.org&from=gw@example.org\n")
    example = example.replace("/run/secrets/town-duty-mail", str(secret))
    monkeypatch.setenv("GW_SMS_GRID_1", "json://sms-gateway.example.org/send?+Authorization=k3y-abcdef")
    monkeypatch.setenv("GW_DISTRICT_DINGTALK", "dingtalk://k3yabcdef0123/")
    monkeypatch.setenv("GRIDWATCH_DATA_DIR", str(tmp_path / "data"))
    shutil.copytree(ROOT / "config", tmp_path / "config")
    path = tmp_path / "config" / "gridwatch.yaml"
    path.write_text(text[:end] + "\n" + example + text[end:])
    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code == 0 and result.output.splitlines()[-1].startswith("ok"), result.output
    assert "warning: sinks" not in result.output
    assert "k3y-abcdef" not in result.output and "k3yabcdef0123" not in result.output


def test_a_reload_s_diff_shows_no_receiver_url():
    from engine.runners.reload import config_diff

    old = engine_config([{"to": "grid:g1", "url": "tgram://123456789:AAHdq-old/12315544/"}])
    new = engine_config([{"to": "grid:g1", "url": "tgram://123456789:AAHdq-new/12315544/"}])
    (line,) = config_diff(old.model_dump(mode="json"), new.model_dump(mode="json"))
    assert line == "sinks[people].receivers[0].url: 'tgram://•••' -> 'tgram://•••'"


def test_receiver_marks_claims_and_purge_on_each_store(store_url):
    """What the scale-out relies on, on SQLite and PostgreSQL: a mark is written once (a second worker's is
    refused), one summary takes the held events (a second, at once, gets none), a failed one gives them back."""
    st = Store(store_url)
    st.migrate()
    try:

        def mark(delivery: str, state: str, at: float) -> bool:
            return st.receiver_mark("people", "town:t1", delivery, "i1", state, at, "red", "RED at S1")

        assert mark("i1.1.people", "sent", 100.0)
        assert not mark("i1.1.people", "sent", 101.0)
        for seq in (2, 3):
            assert mark(f"i1.{seq}.people", "held", 100.0 + seq)
        assert st.receiver_window("people", "town:t1", since=0.0) == (1, 100.0)
        assert st.receivers_holding("people") == ["town:t1"]
        first = st.receiver_claim("people", "town:t1", "summary.a")
        assert [h.line for h in first] == ["RED at S1"] * 2
        assert st.receiver_claim("people", "town:t1", "summary.b") == []
        st.receiver_unclaim("people", "summary.a")
        assert len(st.receiver_claim("people", "town:t1", "summary.c")) == 2
        st.receiver_summarised("people", "town:t1", "summary.c", 200.0, "summary of 2 events", [])
        assert st.receivers_holding("people") == [] and st.receiver_window("people", "town:t1", 150.0) == (1, 200.0)
        assert st.receiver_purge("people", before=1000.0) == 4
    finally:
        st.close()


def test_a_hanging_mail_server_is_not_waited_for_again_until_its_backoff(store, chat):
    """A receiver whose server takes the connection and never answers costs one time-out, not one per event:
    the next event reaches the others at once and leaves it for its retry."""
    hanging = HangingServer()
    chat.start()
    try:
        url = f"mailto://gw:pw-123@127.0.0.1:{hanging.port}?mode=insecure&from=gw@example.org&to=t1@example.org"
        cfg = engine_config(
            [{"to": "grid:g1", "name": "hung-mail", "url": url}, {"to": "grid:g1", "name": "chat", "url": chat.url()}],
            [{"id": "S3", "lat": 29.5, "lon": 106.5, "grid": "g1", "town": "t1", "district": "d1"}],
            timeout_s=1.0, backoff_s=30.0,
        )  # fmt: skip
        desk = Desk(cfg, store)
        now = time.time()
        first, second = desk.red("S1", now), desk.red("S3", now + 1)
        desk.drain()
        assert [p["message"].rsplit("=", 1)[1] for p in chat.posts] == [first, second]
        assert hanging.connections == 1, "the second event did not wait for the hanging server again"
        lines = [line for line in trail(store, second) if line[0] == "notify_failed"]
        assert lines and "not tried: its last attempt hung" in lines[0][2]
    finally:
        hanging.stop()


def test_a_receiver_that_keeps_failing_gets_its_news_in_a_summary_and_holds_back_no_one(store, smtp, chat):
    cfg = engine_config(
        [{"to": "grid:g1", "name": "g1-chat", "url": chat.url()}, {"to": "grid:g1", "name": "g1-mail",
                                                                    "url": smtp.url("g1@example.org")}],
        hold_after_failures=2,
    )  # fmt: skip
    desk = Desk(cfg, store)  # the chat endpoint is down
    now = time.time()
    iid = desk.red("S1", now)
    desk.drain()
    desk.drain(final=True)  # its second failure: held for the chat's next summary, the event is done
    assert store.outbox_backlog() == {} and len(smtp.mails) == 1
    held = trail(store, iid)[-1]
    assert held[0] == "notify_held" and "json message to g1-chat failed 2 times" in held[2]
    desk.dispatcher.acknowledge(iid, "duty officer", now + 10)
    desk.drain()
    assert [m.subject.split(": ")[-1] for m in smtp.mails] == ["new incident", "acknowledged"], "not held back"
    chat.start()
    assert wait_for(lambda: desk.sink.flush_held() or chat.posts, 10)
    (summary,) = chat.posts
    assert "2 events held for g1-chat" in summary["message"] and "acknowledged (incident" in summary["message"]


def test_apprise_s_own_log_lines_and_tracebacks_are_redacted(store, chat, caplog):
    Desk(engine_config([{"to": "grid:g1", "url": chat.url()}]), store)
    caplog.set_level("DEBUG")
    try:
        raise ValueError(f"cannot post to http://127.0.0.1:{chat.port}/hooks/duty?token={CHAT_TOKEN}")
    except ValueError:
        logging.getLogger("apprise").exception("JSON POST to /hooks/duty (%s) failed", CHAT_TOKEN)
    logging.getLogger("urllib3.connectionpool").debug('"POST /hooks/duty?t=%s HTTP/1.1" 200', CHAT_TOKEN)
    assert "JSON POST to /…/… (…) failed" in caplog.text and "ValueError: cannot post to" in caplog.text
    assert CHAT_TOKEN not in caplog.text and "hooks/duty" not in caplog.text


def test_one_key_dispatch_reaches_the_plan_s_contacts_and_tiers_with_the_plan(store, chat):
    cfg = engine_config([{"to": "contact:Geotech team", "url": chat.url("geotech")},
                         {"to": "district:*", "url": chat.url("district")}])  # fmt: skip
    chat.start()
    desk = Desk(cfg, store)
    now = time.time()
    iid = desk.red("S1", now)
    desk.drain()
    assert chat.posts == [], "the first news goes to the grid, which has no receiver here"
    (note,) = desk.dispatcher.dispatch(iid, "duty officer", now + 5)
    assert "Geotech team" in note.detail["receivers"]
    desk.drain()
    assert sorted(p["path"] for p in chat.posts) == ["/district", "/geotech"]
    for post in chat.posts:
        assert post["title"].endswith("dispatched with its response plan by duty officer")
        assert "1. Evacuate the danger zone now" in post["message"]


def test_a_receivers_file_lists_a_city_s_staff_and_a_bad_row_is_named_by_line_never_by_url(tmp_path):
    (tmp_path / "people.csv").write_text(
        "to,name,url,min_level\n"
        "grid:g1,g1-mail,mailto://gw:k3y-abcdef@smtp.example.org?from=gw@example.org&to=g1@example.org,\n"
        "town:t1,,json://duty.example.org/hooks/k3y-abcdef,orange\n"
    )
    (tmp_path / "gridwatch.yaml").write_text(
        "sites: [{id: S1, lat: 29.5, lon: 106.5, grid: g1, town: t1, district: d1}]\n"
        "sinks:\n  - type: apprise\n    receivers_file: people.csv\n"
        "    receivers: [{to: 'district:d1', url: 'json://d1.example.org/x'}]\n"
    )
    ok = CliRunner().invoke(app, ["check-config", str(tmp_path / "gridwatch.yaml")])
    assert ok.exit_code == 0 and "warning" not in ok.output, ok.output
    cfg = parse_config((tmp_path / "gridwatch.yaml").read_text(), str(tmp_path / "gridwatch.yaml"), tmp_path)
    sink = cfg.sinks[0]
    assert [(r.label, r.min_level) for r in sink.receivers] == [  # type: ignore[union-attr]
        ("district:d1", "blue"), ("g1-mail", "blue"), ("town:t1", "orange")
    ]  # fmt: skip
    (tmp_path / "people.csv").write_text(
        "to,name,url,min_level\ngrid:g1,,json://duty.example.org/hooks/k3y-abcdef,\ntown:t1,,k3y-abcdef,\n"
    )
    bad = CliRunner().invoke(app, ["check-config", str(tmp_path / "gridwatch.yaml")])
    said = f"{tmp_path / 'people.csv'}:3: row: receiver town:t1: `url` is not an Apprise URL"
    assert bad.exit_code == 2 and said in bad.output, bad.output
    assert "k3y-abcdef" not in ok.output + bad.output
