"""Camera sources in the config and the secrets around them: what is refused (with the fix), and that a camera's
password never survives into a text meant for a log or /readyz (property-tested)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from engine.cli import app
from engine.config.loader import ConfigError, parse_config
from engine.config.models import CameraConfig, EngineConfig
from engine.ingest.camera_sources import CameraSources, Scrubber, backoff_delay, redact, with_credentials

passwords = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=4, max_size=40)
users = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=12)


@settings(deadline=None)  # a loaded CI box must not fail a property on time
@given(users, passwords)
def test_credentials_written_into_a_url_read_back_the_same(user: str, password: str) -> None:
    parts = urlsplit(with_credentials("rtsp://10.1.2.3:554/Streaming/Channels/101", user, password))
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == (user, password)
    assert parts.hostname == "10.1.2.3" and parts.port == 554


@settings(deadline=None)  # a loaded CI box must not fail a property on time
@given(users, passwords, st.sampled_from(["could not open {url}", "{url}: ConnectError: refused {pw}", "{pw}"]))
def test_a_camera_password_never_survives_the_scrubber(user: str, password: str, template: str) -> None:
    url = with_credentials("rtsp://cam.example:554/live?channel=1", user, password)
    clean = template.format(url="rtsp://***@cam.example:554/live?channel=***", pw="***")
    assume(password not in clean and "*" not in password)
    out = Scrubber([password])(template.format(url=url, pw=password))
    assert out == clean


@settings(deadline=None)  # a loaded CI box must not fail a property on time
@given(st.dictionaries(st.sampled_from(["user", "pwd", "token", "channel"]), passwords, min_size=1))
def test_redacted_urls_keep_no_query_value(query: dict[str, str]) -> None:
    from urllib.parse import urlencode

    out = redact(f"http://cam.example/cgi-bin/snapshot.cgi?{urlencode(query)}")
    assert out.startswith("http://cam.example/cgi-bin/snapshot.cgi?")
    assert all(f"{k}=***" in out for k in query) and out.count("=") == len(query)


def _camera(**source: object) -> dict[str, object]:
    return {"site": "S01", "id": "tower-1", "source": {"url": "rtsp://10.0.0.5/live", **source}}


@pytest.mark.parametrize(
    ("camera", "says"),
    [
        (_camera(url="rtsp://admin:secret@10.0.0.5/live"), "no user or password in the URL"),
        (_camera(url="ftp://10.0.0.5/live"), "use rtsp://"),
        (_camera(password="a", password_file="/run/secrets/cam"), "not both"),
        (_camera(password_file="/no/such/secret"), "no file /no/such/secret"),
        (_camera(backoff_s=10, backoff_max_s=5), "backoff_max_s"),
        ({**_camera(), "kind": "thermal"}, "false-colour picture, not temperatures"),
    ],
)
def test_bad_camera_sources_stop_at_start_with_the_fix(camera: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        CameraConfig.model_validate(camera)


def test_a_bad_source_in_a_config_file_names_the_file_and_field() -> None:
    text = "cameras:\n  devices:\n    - {site: S01, id: c1, source: {url: 'rtsp://u:p@cam/1'}}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cams.yaml", Path())
    assert "cams.yaml" in str(err.value) and "cams.yaml:3: cameras.devices[0].source.url" in str(err.value)


def test_sources_and_their_intervals() -> None:
    thermal = CameraConfig.model_validate({**_camera(url="https://10.0.0.9/radiometric.tiff"), "kind": "thermal"})
    assert thermal.source is not None and thermal.source.scheme == "http"
    assert CameraConfig.model_validate(_camera(url="/dev/video0")).source.scheme == "device"  # type: ignore[union-attr]
    assert CameraConfig.model_validate(_camera(url="0")).pull_interval_s() == 1.0
    assert CameraConfig.model_validate({**_camera(), "min_interval_s": 0}).pull_interval_s() == 1.0
    assert CameraConfig.model_validate(_camera(interval_s=5)).pull_interval_s() == 5.0
    cam = CameraConfig.model_validate(_camera(password="hunter2"))
    assert "hunter2" not in repr(cam) and "hunter2" not in str(cam)
    cfg = EngineConfig(cameras={"devices": [_camera(), {"site": "S02", "id": "mqtt-cam"}]})
    assert [s.key for s in CameraSources(cfg, lambda c, b, t: None).sources] == ["S01/tower-1"]


def test_backoff_doubles_to_its_bound_with_jitter() -> None:
    delays = [backoff_delay(n, 1.0, 8.0) for n in range(1, 8)]
    assert all(0.9 * min(8.0, 2 ** (n - 1)) <= d <= 1.1 * min(8.0, 2 ** (n - 1)) for n, d in enumerate(delays, 1))


def test_check_config_warns_of_sources_the_engine_would_not_pull(tmp_path: Path) -> None:
    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n  devices:\n    - {site: S01, id: c1, source: {url: 'rtsp://cam.example/1'}}\n")
    done = CliRunner().invoke(app, ["check-config", str(path)])
    assert done.exit_code == 0, done.output
    assert "cameras.detectors is empty" in done.output and "gridwatch pull-cameras" in done.output


def test_pull_cameras_needs_a_source_and_a_broker(tmp_path: Path) -> None:
    none = tmp_path / "none.yaml"
    none.write_text("mqtt: {url: 'mqtt://127.0.0.1:1883'}\n")
    done = CliRunner().invoke(app, ["pull-cameras", "--config", str(none)])
    assert done.exit_code == 2 and "no camera has a source" in done.output
    embedded = tmp_path / "embedded.yaml"
    embedded.write_text("cameras:\n  devices:\n    - {site: S01, id: c1, source: {url: 'rtsp://cam.example/1'}}\n")
    done = CliRunner().invoke(app, ["pull-cameras", "--config", str(embedded)])
    assert done.exit_code == 2 and "mqtt.url is `embedded`" in done.output
    private = tmp_path / "private.yaml"  # /metrics needs a token: pull-cameras has none to ask for
    private.write_text(embedded.read_text() + "api: {metrics_public: false}\n")
    done = CliRunner().invoke(app, ["pull-cameras", "--config", str(private), "--metrics-port", "9999"])
    assert done.exit_code == 2 and "api.metrics_public is false" in " ".join(done.output.split())
