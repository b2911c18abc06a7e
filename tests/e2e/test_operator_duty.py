"""The operator page as a duty officer uses it at 3 a.m., in Chromium at 1440x900 and on a 390 px phone.

One engine (storm-over-slope over Mosquitto, ending now, then a fire seen by a smoke camera and a thermal
camera at S05) serves every test here in order; the last one stops it. Screenshots go to ``test-artifacts/``:
- the time to act: the RED landslide first, its failure forecast counted from now (not from its last level
  change), the acknowledgement deadline before the next escalation, the fire confirmed by two cameras;
- silences: a preview of what a new silence would mute, the silenced tag at once on what it mutes, an
  inhibited incident's header saying so;
- charts in the city's zone (round ticks, units, rain from zero, the fit line over its window only); a site's
  panel never keeps the previous site's chart; a reported position to the metre, centring the map;
- the phone: one card per incident with its actions on screen, nothing sideways; a reporter whose phone gives
  no position files at a site from the list, and the header says it is connected;
- a dead engine: a banner with the last good contact, the board greyed, every action disabled, no "Failed
  to fetch".
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from engine.config.models import ApiConfig, MqttConfig, StoreConfig
from engine.ingest.embedded_broker import free_port
from engine.store.store import Store
from simulators.camera import synthetic
from simulators.publish import messages
from simulators.scenario import load_scenario
from tests.conftest import RunnerThread, default_config, publisher, wait_for
from tests.e2e.test_operator_page import ARTIFACTS, CHROMIUM, OPERATOR, REPORTER, VIEWER, sideways

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


class Engine:
    def __init__(self, runner: RunnerThread, url: str, store_url: str) -> None:
        self.runner, self.url, self.store_url = runner, url, store_url
        self.stopped = False

    def store(self) -> Store:
        return Store(self.store_url)

    def open_incidents(self) -> list[dict]:
        return self.store().list_incidents(open_only=True, limit=500)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.runner.stop()


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package `chromium`; `make test` installs it when it can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: make test")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


FAILED_START: list[str] = []  # a start that failed once is not tried again for every test


@pytest.fixture(scope="module")
def engine(mosquitto, tmp_path_factory):
    if FAILED_START:
        pytest.fail(FAILED_START[0])
    FAILED_START.append("the engine fixture failed to start (see the first test's error)")
    tmp = tmp_path_factory.mktemp("duty")
    port = free_port("127.0.0.1")
    store_url = f"sqlite:///{tmp / 'gridwatch.db'}"
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id=f"engine-duty-{tmp.name}"),
        data_dir=str(tmp),
        store=StoreConfig(url=store_url),
        api=ApiConfig(
            port=port,
            tokens=[
                {"name": "duty-officer", "token": OPERATOR, "role": "operator"},
                {"name": "wall-screen", "token": VIEWER, "role": "viewer"},
                {"name": "grid-worker", "token": REPORTER, "role": "reporter"},
            ],
        ),
        sinks=[],
    )
    runner = RunnerThread(cfg)
    pub = publisher(mosquitto.url)
    t0 = time.monotonic()
    scenario = load_scenario("storm-over-slope")
    rows = scenario.readings(base_ts=time.time() - scenario.duration_h * 3600)  # the storm ends now
    for _ts, topic, payload in messages(rows, "gw"):
        pub.publish(topic, payload, qos=1)
    assert pub.flush()
    assert wait_for(lambda: runner.runner.pipeline.readings >= len(rows), 90)
    # After the storm, a smoke camera and a thermal camera over S05 see a fire (fusion: smoke-and-heat).
    start = time.time() - 60
    feeds = [("gw/cameras/S05/cam-1", synthetic("fire", 0.5, 30, seed=4, start_s=4.0)),
             ("gw/thermal/S05/ir-1", synthetic("thermal-fire", 0.5, 30, seed=4, start_s=4.0))]  # fmt: skip
    for topic, feed in feeds:
        for t, frame in feed:
            pub.publish(topic, frame, qos=1, user_properties={"ts": f"{start + t:.3f}"})
    assert pub.flush()
    eng = Engine(runner, f"http://127.0.0.1:{port}", store_url)
    print(f"storm in {time.monotonic() - t0:.0f} s")

    def fire_confirmed() -> bool:
        fires = [i for i in eng.open_incidents() if i["hazard"] == "fire"]
        return any(
            (f["evidence"] or {}).get("confirmed")
            for i in fires
            for f in (eng.store().incident(i["incident_id"]) or {}).get("findings", [])
        )

    assert wait_for(fire_confirmed, 180, interval_s=1.0), "the smoke and thermal cameras confirm the fire"
    FAILED_START.clear()
    print(f"fire confirmed in {time.monotonic() - t0:.0f} s")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield eng
    finally:
        pub.stop()
        eng.stop()


def signed_in(browser, engine, token: str, viewport: dict, **kw):
    page = browser.new_page(viewport=viewport, bypass_csp=True, **kw)
    page.goto(f"{engine.url}/ui/#token={token}")
    page.wait_for_selector("#whoami:not(:empty)", timeout=15_000)
    return page


def board_rows(page) -> list[dict]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#board tbody tr')].map((r) => ({
          id: r.dataset.incidentId, level: r.querySelector('.badge').textContent,
          hazard: r.querySelector('td.hazard').textContent, site: r.querySelector('td.site').textContent,
          act: r.querySelector('td.act-by').textContent, state: r.querySelector('td.state').textContent,
          urgent: !!r.querySelector('.forecast-left.urgent'), confirmed: !!r.querySelector('.tag.confirmed')}))"""
    )


def minutes(text: str) -> float:
    """ "1 h 30 min" / "2 d 3 h" / "12 min" / "40 s" in minutes."""
    total = 0.0
    for n, unit in re.findall(r"(\d+) (d|h|min|s)\b", text):
        total += int(n) * {"d": 1440, "h": 60, "min": 1, "s": 1 / 60}[unit]
    return total


def test_time_to_act_from_now_red_first_and_confirmation(browser, engine):
    page = signed_in(browser, engine, OPERATOR, DESKTOP)
    try:
        page.wait_for_selector("#status.live", timeout=15_000)
        page.wait_for_function(
            "document.querySelectorAll('#board tbody tr .tag.confirmed').length >= 2", timeout=20_000
        )
        rows = board_rows(page)
        levels = [r["level"] for r in rows]
        order = ["red", "orange", "yellow", "blue"]
        assert levels == sorted(levels, key=order.index), f"RED first: {levels}"
        slide = next(r for r in rows if r["hazard"] == "landslide" and r["site"] == "S02")
        assert slide["level"] == "red" and slide["confirmed"], slide
        # The forecast counted from now, as the detector's finding states it (not from the last level change).
        stored = engine.store().incident(slide["id"])
        assert stored is not None
        fc = max((f for f in stored["findings"] if "predicted_failure_ts" in f["evidence"]), key=lambda f: f["ts"])
        left_min = (fc["evidence"]["predicted_failure_ts"] - time.time()) / 60
        if left_min > 1:
            said = re.search(r"failure in ([^a]+?)(?:ack|$)", slide["act"])
            assert said, slide["act"]
            assert abs(minutes(said.group(1)) - left_min) <= 2, (slide["act"], left_min)
        else:
            assert "failure overdue" in slide["act"], slide["act"]
        # the acknowledgement deadline counts down to the next escalation
        # (at the top of its route, the city, it can only be overdue: no tier is left to escalate to)
        assert re.search(r"ack (in \d+.* → (town|district|city)|overdue)", slide["act"]), slide["act"]
        # The fire, confirmed by the smoke camera and the thermal camera: tagged, named, ranked above its level's
        # unconfirmed rows.
        fire = next(r for r in rows if r["hazard"] == "fire" and r["site"] == "S05")
        assert fire["confirmed"], fire
        title = page.get_attribute(f"tr[data-incident-id='{fire['id']}'] .tag.confirmed", "title") or ""
        assert "cam-1" in title and "ir-1" in title, title
        same = [r for r in rows if r["level"] == fire["level"]]
        assert not any(not r["confirmed"] for r in same[: same.index(fire)]), "confirmed ranks first within a level"
        # The RED's header: the same countdown from now, emphasised.
        page.locator(f"tr[data-incident-id='{slide['id']}'] td.hazard").click()
        page.wait_for_selector("#detail p.forecast strong.urgent", timeout=10_000)
        header = page.locator("#detail p.forecast").inner_text()
        if left_min > 1:
            said = re.search(r"UTC\+8.*?, (.+?) left", header)
            assert said and abs(minutes(said.group(1)) - left_min) <= 2, (header, left_min)
        assert "confirmed by" in page.locator("#detail h3").inner_text()
        page.screenshot(path=str(ARTIFACTS / "duty-time-to-act.png"), full_page=True)
        # The clocks move on by themselves (in place, every 5 s), with no event to redraw the board.
        before = page.locator(f"tr[data-incident-id='{fire['id']}'] td.age").inner_text()
        page.wait_for_function(
            f"document.querySelector(\"tr[data-incident-id='{fire['id']}'] td.age\").textContent !== {before!r}",
            timeout=70_000,
        )
    finally:
        page.close()


def test_a_link_in_a_message_opens_its_incident(browser, engine):
    """A message to a person (SMS, e-mail, chat: the `apprise` sink) links to `<public_url>/#incident=<id>`: the
    page opens that incident once signed in, on a phone."""
    slide = next(i for i in engine.open_incidents() if i["hazard"] == "landslide" and i["level"] == "red")
    page = browser.new_page(viewport=PHONE, bypass_csp=True)
    try:
        page.goto(f"{engine.url}/ui/#token={OPERATOR}&incident={slide['incident_id']}")
        page.wait_for_selector(f"#detail[data-id='{slide['incident_id']}']:not([hidden])", timeout=15_000)
        assert f"landslide at {slide['site']}" in page.locator("#detail h3").inner_text()
        assert "token=" not in page.url, "the token leaves the address bar"
    finally:
        page.close()


def test_silence_preview_tags_at_once_and_inhibition(browser, engine):
    page = signed_in(browser, engine, OPERATOR, DESKTOP)
    try:
        page.wait_for_selector("#status.live", timeout=15_000)
        page.wait_for_selector("#board tbody tr", timeout=10_000)
        # An inhibited incident (S02's rain under its RED landslide) says so, on the board and in its header.
        rain = page.locator("#board tbody tr", has=page.locator("td.site", has_text="S02")).filter(has_text="rainstorm")
        rain.locator(".tag.inhibited").wait_for(timeout=10_000)
        rain.locator("td.hazard").click()
        page.locator("#detail .muted-note", has_text="Inhibited by the landslide red at S02").wait_for(timeout=10_000)
        # The preview: what a silence on S05's fire would mute, before it is made.
        page.fill("#silence-form input[name=site]", "S05")
        page.fill("#silence-form input[name=hazard]", "fire")
        page.locator("#silence-preview", has_text="Would mute 1 open incident").wait_for(timeout=10_000)
        assert "fire at S05" in page.locator("#silence-preview").inner_text()
        page.screenshot(path=str(ARTIFACTS / "duty-silence-preview.png"), full_page=True)
        page.fill("#silence-form input[name=comment]", "crew on site, known fire")
        page.click("#silence-form button")
        fire = page.locator("#board tbody tr", has=page.locator("td.site", has_text="S05")).filter(has_text="fire")
        fire.locator(".tag.silenced").wait_for(timeout=5_000)  # at once, not at the fire's next event
        page.screenshot(path=str(ARTIFACTS / "duty-silenced.png"), full_page=True)
        silence = next(s for s in engine.store().silences() if s.comment == "crew on site, known fire")
        page.click(f"#silences tbody tr[data-silence-id='{silence.id}'] button[data-expire]")
        page.wait_for_function(
            "![...document.querySelectorAll('#board tbody tr')].some(r => r.textContent.includes('S05') "
            "&& r.querySelector('.tag.silenced'))",
            timeout=10_000,
        )
        # a silence with no end is refused by the page before it is sent
        page.fill("#silence-form input[name=site]", "S05")
        page.fill("#silence-form input[name=hours]", "")
        page.click("#silence-form button")
        assert len(engine.store().silences()) == 0
    finally:
        page.close()


def test_charts_zone_ticks_units_and_site_panel(browser, engine):
    page = signed_in(browser, engine, OPERATOR, DESKTOP)
    try:
        page.wait_for_selector("#map .marker[data-site='S02']", timeout=15_000)
        page.click("#map .marker[data-site='S02']")
        page.click("#site-panel button[data-device='crack-1']")
        page.wait_for_selector("#chart svg.chart >> nth=2", timeout=10_000)
        ticks = page.evaluate("[...document.querySelectorAll('#chart svg.chart')[0].querySelectorAll('.xtick')]"
                              ".map(t => t.textContent)")  # fmt: skip
        assert ticks and all(re.search(r"\d\d:(00|30|15|45)$|^\d\d-\d\d$", t) for t in ticks), ticks
        assert "UTC+8" in page.locator("#chart svg.chart .xlabel").first.text_content()
        assert page.locator("#chart svg.chart .ylabel").first.text_content() == "mm"
        # the fit line starts inside the fit window, on the dots, not at the first sample
        fit = page.evaluate(
            """() => { const svg = document.querySelectorAll('#chart svg.chart')[2];
              const line = svg.querySelector('polyline.forecast');
              const [x, y] = line.getAttribute('points').split(' ')[0].split(',').map(Number);
              const dot = [...svg.querySelectorAll('circle')].find(d => Math.abs(+d.getAttribute('cx') - x) < 0.01);
              return {x, y, dot: dot ? +dot.getAttribute('cy') : null}; }"""
        )
        assert fit["dot"] is not None, f"the fit line starts at a sample of its window, not before: {fit}"
        assert abs(fit["y"] - fit["dot"]) < 40, f"and on the dots: {fit}"
        # rain: the axis starts at zero
        page.click("#site-panel button[data-device='rain-1']")
        page.wait_for_function("document.querySelector('#chart').dataset.device.endsWith('rain-1/rain_mm')")
        yticks = page.evaluate("[...document.querySelectorAll('#chart svg.chart')[0].querySelectorAll('.ytick')]"
                               ".map(t => +t.textContent)")  # fmt: skip
        assert min(yticks) == 0, yticks
        page.screenshot(path=str(ARTIFACTS / "duty-charts.png"), full_page=True)
        # another site's panel clears this site's chart
        page.click("#map .marker[data-site='S07']")
        assert page.locator("#chart svg").count() == 0
    finally:
        page.close()


def test_phone_cards_and_reporter_without_position(browser, engine):
    page = signed_in(browser, engine, OPERATOR, PHONE)
    try:
        page.wait_for_selector("#status.live", timeout=15_000)
        page.wait_for_selector("#board tbody tr", timeout=10_000)
        assert not (wide := sideways(page)), ", ".join(wide)
        # every card's actions are on screen: inside the page's width
        right = page.evaluate(
            "Math.max(...[...document.querySelectorAll('#board button[data-act]')]"
            ".map(b => b.getBoundingClientRect().right))"
        )
        assert 330 <= right <= 390, f"the actions fill the card, within the page: {right}"
        age = page.locator("#board tbody tr td.age").first
        assert age.evaluate("e => e.getClientRects().length") == 1, "an age stays on one line"
        page.screenshot(path=str(ARTIFACTS / "duty-phone-board.png"), full_page=True)
    finally:
        page.close()
    # A grid worker whose phone denies its position: the site list is there, the report is filed by name.
    phone = signed_in(browser, engine, REPORTER, PHONE, permissions=[])
    try:
        phone.locator("#status", has_text="connected").wait_for(timeout=10_000)
        phone.wait_for_selector("#report-form select[name=site] option[value='S07']", state="attached")
        form = phone.locator("#report-form")
        form.locator("select[name=category]").select_option("crack")
        form.locator("input[name=text]").fill("new cracks in the wall")
        # The browser will not give a position: the form says so before the first try, and asks for a site.
        nearest = form.locator("select[name=site] option[value='']")
        assert "choose the site" in nearest.inner_text() and nearest.is_disabled()
        form.locator("button").click()
        phone.wait_for_timeout(500)
        assert phone.locator("#report-result").inner_text() == "", "nothing filed without a place"
        phone.screenshot(path=str(ARTIFACTS / "duty-phone-reporter-no-position.png"), full_page=True)
        form.locator("select[name=site]").select_option("S07")
        form.locator("button").click()
        phone.locator("#report-result", has_text="filed at S07").wait_for(timeout=10_000)
        assert not (wide := sideways(phone)), ", ".join(wide)
        phone.screenshot(path=str(ARTIFACTS / "duty-phone-reporter.png"), full_page=True)
    finally:
        phone.close()


def test_reported_position_to_the_metre_centres_the_map(browser, engine):
    page = signed_in(browser, engine, OPERATOR, DESKTOP)
    try:
        page.wait_for_selector("#status.live", timeout=15_000)
        body = {"category": "smoke", "text": "smoke by the road", "lat": 29.490123, "lon": 106.529876}
        res = page.evaluate(
            "([t, b]) => fetch('/api/reports', {method: 'POST', headers: {Authorization: 'Bearer ' + t,"
            " 'Content-Type': 'application/json'}, body: JSON.stringify(b)}).then(r => r.json())",
            [OPERATOR, body],
        )
        iid = res["incident_id"]
        row = page.locator(f"tr[data-incident-id='{iid}']")
        row.wait_for(timeout=10_000)
        row.locator("td.hazard").click()
        page.wait_for_selector("#detail a.locate", timeout=10_000)
        text = page.locator("#detail td.evidence", has_text="lat").first.inner_text()
        assert "lat 29.49012" in text and "lon 106.52988" in text, text
        page.click("#detail a.locate")
        page.wait_for_selector("#map .pin", timeout=5_000)
        view = page.evaluate("gridwatch.map.view.view")
        assert view[0] < 29.490123 < view[1] and view[2] < 106.529876 < view[3], view
        page.locator("#map").screenshot(path=str(ARTIFACTS / "duty-map-position.png"))
    finally:
        page.close()


def test_fire_snapshots_captioned_at_their_aspect_and_thermal_units(browser, engine):
    page = signed_in(browser, engine, OPERATOR, DESKTOP)
    try:
        page.wait_for_selector("#status.live", timeout=15_000)
        fire = page.locator("#board tbody tr", has=page.locator("td.site", has_text="S05")).filter(has_text="fire")
        fire.first.locator("td.hazard").click()
        page.wait_for_selector("#detail figure.snapshot img", timeout=10_000)
        page.wait_for_function(
            "[...document.querySelectorAll('#detail figure.snapshot img')].every(i => i.complete && i.naturalWidth)",
            timeout=10_000,
        )
        shots = page.evaluate(
            """() => [...document.querySelectorAll('#detail figure.snapshot')].map((f) => {
              const img = f.querySelector('img'), r = img.getBoundingClientRect();
              return {camera: f.dataset.camera, caption: f.querySelector('figcaption').textContent,
                      natural: img.naturalWidth / img.naturalHeight, shown: r.width / r.height}; })"""
        )
        assert {s["camera"] for s in shots} >= {"cam-1", "ir-1"}, shots
        for s in shots:
            assert abs(s["shown"] - s["natural"]) < 0.02, f"a frame at its own aspect ratio: {s}"
            assert f"camera {s['camera']}" in s["caption"] and "UTC+8" in s["caption"], s
        thermal = page.locator("#detail tr", has=page.locator("td", has_text="ir-1")).filter(has_text="peak")
        assert re.search(r"peak [\d.]+ (°C|z)", thermal.first.inner_text()), thermal.first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "duty-fire-snapshots.png"), full_page=True)
    finally:
        page.close()
    # The same under the page's own Content-Security-Policy (script-src 'self'): modules, no inline script.
    strict = browser.new_page(viewport=DESKTOP)
    violations: list[str] = []
    strict.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        strict.goto(f"{engine.url}/ui/#token={OPERATOR}")
        row = strict.locator("#board tbody tr", has=strict.locator("td.site", has_text="S05")).filter(has_text="fire")
        row.first.locator("td.hazard").click()
        strict.wait_for_selector("#detail figure.snapshot .region", state="attached", timeout=10_000)
        strict.locator("#map .camera").first.click()
        strict.wait_for_selector("#site-panel figure", timeout=10_000)
        assert violations == [], violations
    finally:
        strict.close()


def test_the_map_follows_a_stream_of_events_within_its_maximum_wait(browser, engine):
    """A steady stream of events (one every 200 ms) must not hold the map back: it reloads within 2 s."""
    page = signed_in(browser, engine, OPERATOR, DESKTOP)
    try:
        page.wait_for_selector("#status.live", timeout=15_000)
        page.wait_for_selector("#map .marker", timeout=10_000)
        loads: list[float] = []
        page.on("request", lambda r: loads.append(time.monotonic()) if r.url.endswith("/api/sites") else None)
        t0 = time.monotonic()
        page.evaluate("() => { window.__burst = setInterval(() => gridwatch.map.schedule(), 200); }")
        page.wait_for_timeout(4500)
        page.evaluate("() => clearInterval(window.__burst)")
        assert loads and loads[0] - t0 < 2.6, [round(t - t0, 2) for t in loads]
        assert len(loads) >= 2, "and again while the stream goes on"
    finally:
        page.close()


def test_dead_engine_turns_the_page_grey(browser, engine):
    """Last: it stops the engine."""
    pages = [signed_in(browser, engine, OPERATOR, DESKTOP), signed_in(browser, engine, OPERATOR, PHONE)]
    try:
        for p in pages:
            p.wait_for_selector("#status.live", timeout=15_000)
            p.wait_for_selector("#board tbody tr", timeout=10_000)
            assert p.locator("#banner").is_hidden()
        engine.stop()
        for p in pages:
            p.wait_for_selector("#banner:not([hidden])", timeout=20_000)
            banner = p.locator("#banner").inner_text()
            assert "does not answer" in banner and "last good contact" in banner, banner
            assert "engine-down" in (p.get_attribute("body", "class") or "")
            assert p.locator("#status").inner_text() == "no contact"
            assert "live" not in (p.get_attribute("#last-data", "class") or ""), "the data clock is not green"
            assert p.locator("#board button[data-act]").count() > 0
            assert p.locator("#board button[data-act]:enabled").count() == 0, "every action disabled"
            assert p.locator("#silence-form button:enabled").count() == 0
            assert "Failed to fetch" not in p.locator("body").inner_text()
        pages[0].screenshot(path=str(ARTIFACTS / "duty-engine-down.png"), full_page=True)
        pages[1].screenshot(path=str(ARTIFACTS / "duty-engine-down-phone.png"), full_page=True)
        (ARTIFACTS / "duty.json").write_text(json.dumps({"banner": pages[0].locator("#banner").inner_text()}))
    finally:
        for p in pages:
            p.close()


def test_an_unready_engine_says_what_fails_and_comes_back(browser, tmp_path):
    """The engine answers but its broker is gone (/readyz 503): the banner names it, actions are disabled;
    with the broker back the page is live again by itself."""
    from tests.conftest import Mosquitto, _mosquitto_binary

    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(binary, tmp_path)
    broker.start()
    port = free_port("127.0.0.1")
    cfg = default_config(
        mqtt=MqttConfig(url=broker.url, client_id=f"engine-unready-{tmp_path.name}"),
        data_dir=str(tmp_path),
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'gridwatch.db'}"),
        api=ApiConfig(port=port, tokens=[{"name": "duty-officer", "token": OPERATOR, "role": "operator"}]),
        sinks=[],
    )
    runner = RunnerThread(cfg)
    eng = Engine(runner, f"http://127.0.0.1:{port}", "")
    page = signed_in(browser, eng, OPERATOR, DESKTOP)
    try:
        page.wait_for_selector("#status.live", timeout=15_000)
        body = {"category": "crack", "text": "cracks", "site": "S07"}  # an incident with buttons to disable
        page.evaluate(
            "([t, b]) => fetch('/api/reports', {method: 'POST', headers: {Authorization: 'Bearer ' + t,"
            " 'Content-Type': 'application/json'}, body: JSON.stringify(b)})",
            [OPERATOR, body],
        )
        page.wait_for_selector("#board button[data-act=ack]:enabled", timeout=10_000)
        broker.stop()
        page.locator("#banner", has_text="not ready: no broker connection").wait_for(timeout=20_000)
        assert page.locator("#status").inner_text() == "not ready"
        assert page.locator("#board button[data-act]:enabled").count() == 0
        page.screenshot(path=str(ARTIFACTS / "duty-engine-unready.png"), full_page=True)
        broker.start()
        page.wait_for_selector("#banner[hidden]", state="attached", timeout=40_000)
        page.wait_for_selector("#board button[data-act=ack]:enabled", timeout=5_000)
    finally:
        page.close()
        runner.stop()
        broker.stop()
