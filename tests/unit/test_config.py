"""Config loading: defaults, env substitution, CSV sites, and errors that name file, line, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.config import reference
from engine.config.loader import ConfigError, load_config, parse_config
from tests.conftest import ROOT


def errors(text: str, tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.issues


def test_shipped_config_loads_sites_from_csv():
    cfg = load_config(ROOT / "config" / "gridwatch.yaml")
    assert len(cfg.sites) == 8
    assert cfg.sites[1].devices[1].id == "crack-1"
    assert [d.name for d in cfg.detectors] == [
        "device-health",
        "rain-intensity",
        "rain-total",
        "crack-velocity",
        "gnss-velocity",
        "failure-forecast",
        "gnss-failure-forecast",
        "water-level",
    ]


def test_env_substitution(monkeypatch, tmp_path):
    monkeypatch.setenv("GW_TEST_URL", "mqtt://10.1.2.3:1884")
    (tmp_path / "c.yaml").write_text("mqtt:\n  url: ${GW_TEST_URL}\n  topic_prefix: ${GW_NOT_SET:-city7}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.mqtt.url == "mqtt://10.1.2.3:1884"
    assert cfg.mqtt.topic_prefix == "city7"


def test_missing_env_var_names_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GW_SURELY_UNSET", raising=False)
    (issue,) = errors("city: x\nmqtt:\n  password: ${GW_SURELY_UNSET}\n", tmp_path)
    assert issue.line == 3 and "GW_SURELY_UNSET" in issue.message


def test_unknown_key_gets_line_field_and_did_you_mean(tmp_path):
    (issue,) = errors("city: x\ningest:\n  batch_maxx: 10\n", tmp_path)
    assert (issue.line, issue.field) == (3, "ingest.batch_maxx")
    assert "did you mean 'batch_max'" in issue.hint


def test_every_error_is_reported_at_once(tmp_path):
    issues = errors("mqtt:\n  qos: 7\ningest:\n  batch_ms: -1\n", tmp_path)
    assert {i.field for i in issues} == {"mqtt.qos", "ingest.batch_ms"}
    assert {i.line for i in issues} == {2, 4}


def test_unknown_detector_type(tmp_path):
    (issue,) = errors("detectors:\n  - type: thresold\n    rules: []\n", tmp_path)
    assert issue.line == 2
    assert "did you mean 'threshold'" in issue.hint


def test_detector_rule_error_points_into_the_rule(tmp_path):
    text = "detectors:\n  - type: threshold\n    rules:\n      - metric: rain_mm\n        levels: {blue: 5, red: 2}\n"
    (issue,) = errors(text, tmp_path)
    assert issue.field == "detectors[0].rules[0].levels"
    assert issue.line == 5
    assert "must not decrease" in issue.message


def test_yaml_syntax_error_has_line(tmp_path):
    (issue,) = errors("city: x\nmqtt: [unclosed\n", tmp_path)
    assert issue.line is not None and "YAML" in issue.message


def test_check_config_cli(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["check-config", str(ROOT / "config" / "gridwatch.yaml")])
    assert ok.exit_code == 0 and ok.stdout.startswith("ok")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  batch_maxx: 1\n")
    res = runner.invoke(app, ["check-config", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:2: ingest.batch_maxx" in res.output


def test_schema_and_reference_are_current():
    assert (ROOT / "config" / "schema.json").read_text() == reference.json_schema(), "run `make schema`"
    assert (ROOT / "config" / "README.md").read_text() == reference.markdown_reference(), "run `make schema`"


def test_every_field_is_described():
    from pydantic import BaseModel

    from engine.config.models import EngineConfig

    missing = []
    stack: list[type[BaseModel]] = [EngineConfig]
    seen = set()
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, fld in model.model_fields.items():
            if not fld.description:
                missing.append(f"{model.__name__}.{name}")
            stack.extend(reference._models_in(fld.annotation))
    assert not missing


def test_parse_config_rejects_non_mapping():
    with pytest.raises(ConfigError):
        parse_config("- a\n- b\n", "x.yaml")


def test_check_config_says_which_detector_can_never_judge_a_slow_device(tmp_path):
    path = tmp_path / "slow.yaml"
    path.write_text(
        "city: Test\n"
        "sites:\n"
        "  - {id: S1, lat: 29.5, lon: 106.5, grid: g1, town: t1, district: d1, devices: [\n"
        "      {id: gnss-1, metrics: [disp_mm], expected_interval_s: 950400},\n"
        "      {id: rain-1, metrics: [rain_mm], expected_interval_s: 21600},\n"
        "      {id: rain-2, metrics: [rain_mm], expected_interval_s: 3600}]}\n"
        "detectors:\n"
        "  - {type: displacement_rate, id: gnss-velocity, metrics: [disp_mm], max_window_h: 100}\n"
        "  - {type: displacement_rate, id: gnss-widened, metrics: [disp_mm]}\n"
        "  - {type: rainfall_cumulative, id: rain-total}\n"
    )
    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.output
    assert "S1/gnss-1" in warnings[0] and "gnss-velocity" in warnings[0] and "max_window_h" in warnings[0]
    assert "S1/rain-1" in warnings[1] and "rain-total" in warnings[1] and "max_gap_s" in warnings[1]


def test_a_taken_broker_port_stops_run_with_the_setting_to_change(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        path = tmp_path / "taken.yaml"
        path.write_text(
            f"city: Test\ndata_dir: {tmp_path / 'data'}\nmqtt: {{url: embedded, embedded_port: {port}}}\n"
            "api: {enabled: false}\ndetectors: []\n"
        )
        result = CliRunner().invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{port}" in result.output and "mqtt.embedded_port" in result.output
    assert "Traceback" not in result.output


def test_loading_the_config_does_not_load_opencv_or_onnxruntime():
    import subprocess
    import sys

    # ...nor does a sensor-only engine: the local runner, the CLI, grid reports (the `cameras` extra is optional)
    code = "import sys, engine.config.loader as l; l.load_config('config/gridwatch.yaml'); " \
           "import engine.runners.local, engine.cli.engine_commands, engine.incidents.reports; " \
           "print(sorted(m for m in ('cv2', 'onnxruntime') if m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_city_time_zone_is_an_iana_name():
    from engine.config.models import EngineConfig

    assert EngineConfig.model_validate({"timezone": "Asia/Shanghai"}).timezone == "Asia/Shanghai"
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'; use an IANA name"):
        EngineConfig.model_validate({"timezone": "Mars/Olympus"})


def test_applying_a_suggestion_refuses_an_unknown_detector_and_a_result_that_would_not_load(tmp_path):
    import shutil

    from engine.config.patch import PatchError, apply_detector_settings

    shutil.copytree(ROOT / "config", tmp_path / "config")
    path = tmp_path / "config" / "gridwatch.yaml"
    original = path.read_text()
    with pytest.raises(PatchError, match="no detector with id 'nope' under detectors"):
        apply_detector_settings(path, "nope", {"window_h": 3})
    with pytest.raises(PatchError, match="would not load, left as it was"):
        apply_detector_settings(path, "crack-velocity", {"window_h": -3})
    assert path.read_text() == original and not (path.parent / "gridwatch.yaml.bak").exists()
    diff = apply_detector_settings(path, "thermal", {"alarm": 60.0}, camera=True)
    assert "-      alarm: 55\n+      alarm: 60.0\n" in diff


def test_a_basemap_that_is_not_there_stops_the_config_with_the_file_named(tmp_path):
    from engine.config.loader import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"api.basemap: no file .*nope\.geojson"):
        parse_config("api: {basemap: nope.geojson}\n", "gridwatch.yaml", tmp_path)
    (tmp_path / "city.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    cfg = parse_config("api: {basemap: city.geojson}\n", "gridwatch.yaml", tmp_path)
    assert cfg.api.basemap == str((tmp_path / "city.geojson").resolve())


def test_a_detector_registered_after_the_config_was_imported_is_taken_by_the_loader(tmp_path):
    """A plugin registered at run time (not through an entry point): the loader builds the detector union
    from the registry as it is when a config is read, so the plugin's config validates, with its own fields."""
    from typing import Literal

    from pydantic import Field

    from detectors.base import DetectorConfig, registry
    from detectors.threshold import Threshold
    from engine.config import models

    class SiltGaugeConfig(DetectorConfig):
        type: Literal["silt_gauge_test"] = Field("silt_gauge_test", description="Detector type.")
        max_ntu: float = Field(500.0, gt=0, description="Turbidity that raises the level.")

    class SiltGauge(Threshold):  # its processing borrowed: the config's type is what this test is about
        config_class = SiltGaugeConfig  # type: ignore[assignment]

    text = "detectors:\n  - {type: silt_gauge_test, max_ntu: 350}\n"
    with pytest.raises(ConfigError, match="silt_gauge_test"):
        parse_config(text, "gridwatch.yaml", tmp_path)
    registry.register(SiltGauge)
    try:
        cfg = parse_config(text, "gridwatch.yaml", tmp_path)
        (det,) = cfg.detectors
        assert isinstance(det, SiltGaugeConfig) and det.max_ntu == 350
        (issue,) = errors("detectors:\n  - {type: silt_gauge_test, max_ntu: -1}\n", tmp_path)
        assert issue.field == "detectors[0].max_ntu" and issue.line == 2, issue
    finally:
        registry._classes.pop("silt_gauge_test", None)
        models.current_detector_types()  # back to the shipped detectors
    assert "silt_gauge_test" not in models.EngineConfig.model_json_schema()["$defs"]
