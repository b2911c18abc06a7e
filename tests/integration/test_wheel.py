"""The built wheel, installed (not editable) in a fresh virtual environment, runs the scale-out deployment.

What a container image does: ``pip install 'gridwatch[kafka,postgres]'`` from the wheel, then ``gridwatch
bridge`` and ``gridwatch worker`` from a directory that is not the checkout, so nothing can come from the
source tree: the detectors, the camera model and its card, the migrations and the operator page must all
be inside the wheel. Checked against the test broker (Tansu) and Mosquitto.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from tests.conftest import ROOT, logged_url, publisher, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def clean_env() -> dict[str, str]:
    """The environment without what points at the checkout or its venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Installed:
    """The fresh venv's bin folder, and what ``check-config`` said there before the `cameras` extra went in."""

    bin: Path
    cv2_before_cameras: subprocess.CompletedProcess[str]
    check_before_cameras: subprocess.CompletedProcess[str]
    pulled_before_cameras: subprocess.CompletedProcess[str]  # a config whose only camera is pulled (a source)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv with the built wheel and its kafka and postgres extras, checked once without the `cameras`
    extra, then with it installed: every test of the module gets the same, complete venv whatever order the
    tests run in or which of them runs (the bridge-and-worker test needs the camera detectors of the shipped
    config; it used to get them only from the other test installing the extra first)."""
    base = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(ROOT)], base)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (base / "dist").glob("gridwatch-*.whl")
    venv = base / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], base)
    assert made.returncode == 0, made.stderr
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = run([*pip, "-c", str(ROOT / "constraints.txt"), f"{wheel}[kafka,postgres]"], base, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    work = base / "bare"
    shutil.copytree(ROOT / "config", work / "config")
    cv2 = run([str(venv / "bin" / "python"), "-c", "import cv2"], work)
    bare = run([str(venv / "bin" / "gridwatch"), "check-config", "config/gridwatch.yaml"], work)
    (work / "pulled.yaml").write_text(
        "cameras:\n  devices:\n    - {site: S01, id: tower-1, source: {url: 'rtsp://cam/1'}}\n"
    )
    pulled = run([str(venv / "bin" / "gridwatch"), "check-config", "pulled.yaml"], work)
    extra = run([*pip, "-c", str(ROOT / "constraints.txt"), f"{wheel}[cameras]"], base, timeout=900)
    assert extra.returncode == 0, extra.stderr[-3000:]
    return Installed(venv / "bin", cv2, bare, pulled)


def test_the_installed_wheel_checks_the_shipped_config_with_its_camera_model(installed, tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    # Without the `cameras` extra, a config with camera detectors stopped at once with the extra to install.
    assert installed.cv2_before_cameras.returncode != 0, "cameras not installed"
    bare = installed.check_before_cameras
    assert bare.returncode == 2 and "pip install 'gridwatch[cameras]'" in bare.stderr, bare.stdout + bare.stderr
    pulled = installed.pulled_before_cameras  # a camera pulled over RTSP needs OpenCV's FFmpeg: the same extra
    assert pulled.returncode == 2 and "pip install 'gridwatch[cameras]'" in pulled.stderr, pulled.stdout + pulled.stderr
    assert "cameras.devices[].source of S01/tower-1" in pulled.stderr
    out = run([str(installed.bin / "gridwatch"), "check-config", "config/gridwatch.yaml"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "smoke-fire-model" in out.stdout  # the ONNX model and its card came with the wheel
    where = run([str(installed.bin / "python"), "-c", "import detectors, engine; print(detectors.__file__)"], tmp_path)
    assert "site-packages" in where.stdout, "imported from the installed wheel, not the checkout"
    gone = run([str(installed.bin / "gridwatch"), "demo", "--duration", "1"], tmp_path)
    assert gone.returncode == 2 and "pip install 'gridwatch[demo]'" in gone.stderr, gone.stdout + gone.stderr


def test_the_installed_wheel_runs_bridge_and_worker(installed, tansu, mosquitto, tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "gridwatch.yaml").read_text())
    cfg.update(
        data_dir=str(tmp_path / "data"),
        sites_file=str(ROOT / "config" / "sites" / "demo-sites.csv"),
        devices_file=str(ROOT / "config" / "sites" / "demo-devices.csv"),
        mqtt={**cfg["mqtt"], "url": mosquitto.url, "client_id": f"unused-{tmp_path.name}"},
        api={"port": 0},
        kafka={
            "url": tansu.url, "partitions": 2, "session_timeout_s": 6, "take_within_s": 0.1, "bridge_http_port": 0,
            "bridge_client_id": f"bridge-{tmp_path.name}", "bridge_group": f"g-{tmp_path.name}",
        },
        sinks=[{"type": "log"}],
    )  # fmt: skip
    (tmp_path / "gridwatch.yaml").write_text(yaml.safe_dump(cfg))
    env = clean_env()
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("worker", "bridge")}
    procs = {
        name: subprocess.Popen(
            [str(installed.bin / "gridwatch"), name, "-c", "gridwatch.yaml"],
            cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=logs[name], stderr=subprocess.STDOUT,
        )
        for name in ("worker", "bridge")
    }  # fmt: skip

    def log(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text(errors="replace")

    def url_after(name: str, needle: str) -> str | None:
        return logged_url(log(name), needle)

    try:
        assert wait_for(lambda: "Worker ready" in log("worker"), 120), log("worker")[-3000:]
        assert wait_for(lambda: "bridge running" in log("bridge"), 60), log("bridge")[-3000:]
        assert wait_for(lambda: url_after("worker", "worker HTTP API at ") is not None, 30), log("worker")[-3000:]
        api = url_after("worker", "worker HTTP API at ")
        assert api is not None
        pub = publisher(mosquitto.url)
        now = time.time()
        for k in range(20):
            body = {"ts": now - 600 * (20 - k), "values": {"rain_mm": 1.0}}
            pub.publish("gw/sensors/S01/rain-1", orjson.dumps(body), qos=1)
        assert pub.flush()
        pub.stop()
        assert wait_for(lambda: httpx.get(f"{api}/readyz").json().get("readings", 0) >= 20, 60), log("worker")[-3000:]
        assert httpx.get(f"{api}/readyz").status_code == 200
        assert httpx.get(f"{api}/ui/").status_code == 200  # the operator page's files came with the wheel
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(30)
        for f in logs.values():
            f.close()


def test_the_installed_wheel_names_the_notify_extra_for_a_people_facing_sink(installed, tmp_path):
    """The venv has no `notify` extra: a config with an Apprise sink stops with the line that installs it."""
    (tmp_path / "people.yaml").write_text(
        "sinks:\n  - {type: apprise, receivers: [{to: 'town:*', url: 'json://duty.example.org/hook'}]}\n"
    )
    out = run([str(installed.bin / "gridwatch"), "check-config", "people.yaml"], tmp_path)
    assert out.returncode == 2 and "pip install 'gridwatch[notify]'" in out.stderr, out.stdout + out.stderr
    assert "sinks[0]: type apprise" in out.stderr and "duty.example.org" not in out.stdout + out.stderr
