"""Cameras the engine pulls itself, against real servers started here.

- RTSP: GStreamer's RTSP server (Debian's gst-rtsp-server, run by tests/rtsp_server.py) serves a clip recorded
  with cv2.VideoWriter, behind a user and password; the engine pulls it at 1 frame/s through the real camera
  stage, the server goes away (the camera is reported without frames, its password nowhere) and comes back
  (frames again within 10 s). Frames are never older than 2 s when the camera stage takes them.
- ONVIF: the stream URL asked of a camera (GetCapabilities, GetProfiles, GetStreamUri with a WS-Security
  digest) is that RTSP server's.
- HTTP snapshots: a local HTTP server behind basic authentication; a wrong password, a snapshot too large
  and a picture no camera takes are refused with their reasons.
- `gridwatch pull-cameras` publishes a pulled camera's frames to gw/cameras/<site>/<camera> with their `ts`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from engine import metrics
from engine.config.models import ApiConfig, CameraConfig, CamerasConfig, EngineConfig, MqttConfig, StoreConfig
from engine.ingest.camera_intake import CameraIntake
from engine.ingest.camera_sources import CameraSource
from engine.ingest.embedded_broker import free_port
from engine.ingest.mqtt_client import MqttClient, broker_address
from engine.ingest.topics import Topic
from tests.conftest import ROOT, BrokerProcess, RunnerThread, default_config, wait_for

cv2 = pytest.importorskip("cv2")

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = ROOT / "tests" / "rtsp_server.py"
USER, PASSWORD = "viewer", "p@ss:w/rd x"  # characters that must be percent-encoded in an RTSP URL


def _rtsp_server_missing() -> str | None:
    """Why GStreamer's RTSP server cannot run here, or None (CI must have it: there it fails, never skips)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    done = subprocess.run([SYSTEM_PYTHON, str(SERVER), "--check"], capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["--check failed"])[-1]


@pytest.fixture(scope="module")
def rtsp_server_ready() -> None:
    missing = _rtsp_server_missing()
    if missing is not None:
        reason = f"GStreamer's RTSP server cannot run ({missing}); `make rtsp-server` installs its Debian packages"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded clip: 60 s of 320x240 at 10 frames/s, Motion-JPEG (what cv2.VideoWriter writes everywhere)."""
    path = tmp_path_factory.mktemp("clip") / "tower.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for k in range(600):
        img = np.full((240, 320, 3), (60, 90, 40), np.uint8)  # a green hillside
        cv2.rectangle(img, (0, 0), (320, 90), (200, 160, 120), -1)  # sky
        cv2.putText(img, str(k), (120, 170), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        writer.write(img)
    writer.release()
    return path


class RtspServer(BrokerProcess):
    """tests/rtsp_server.py on a free loopback port; ``start`` again after ``stop`` keeps the port."""

    def __init__(self, clip: Path, workdir: Path) -> None:
        self.port = free_port("127.0.0.1")
        self.workdir = workdir
        self.clip = clip
        self.proc = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.launch([SYSTEM_PYTHON, str(SERVER), str(self.port), str(self.clip), USER, PASSWORD], "rtsp-server", 20)


@pytest.fixture
def rtsp(rtsp_server_ready: None, clip: Path, tmp_path: Path) -> Any:
    server = RtspServer(clip, tmp_path)
    server.start()
    yield server
    server.stop()


def _ages() -> tuple[float, float, float]:
    """(frames taken by the camera stage, of them at most 2 s old, sum of their ages) so far."""
    got = {s.name + str(s.labels.get("le", "")): s.value for m in metrics.FRAME_AGE.collect() for s in m.samples}
    return (
        got["gridwatch_frame_age_seconds_count"],
        got["gridwatch_frame_age_seconds_bucket2.0"],
        got["gridwatch_frame_age_seconds_sum"],
    )


def test_rtsp_camera_through_the_engine_survives_its_server_going_away(mosquitto, rtsp, tmp_path, caplog, capfd):
    secret = tmp_path / "camera-password"
    secret.write_text(PASSWORD + "\n")
    cameras = CamerasConfig.model_validate(
        {
            "devices": [
                {"site": "S01", "id": "tower-1", "min_interval_s": 1.0,
                 "source": {"url": rtsp.url, "username": USER, "password_file": str(secret), "no_frames_after_s": 2}}
            ],
            "detectors": [{"type": "flame_color_motion", "id": "flames"}],
        }
    )  # fmt: skip
    cfg = default_config(
        mqtt=MqttConfig(url=mosquitto.url, client_id=f"engine-rtsp-{tmp_path.name}"),
        data_dir=str(tmp_path),
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'gridwatch.db'}"),
        api=ApiConfig(enabled=False),
        cameras=cameras,
        sinks=[],
    )
    count0, fresh0, sum0 = _ages()
    with caplog.at_level("INFO"):
        engine = RunnerThread(cfg)
        try:
            assert wait_for(lambda: engine.runner.camera_sources is not None, 10)
            assert engine.runner.camera_sources is not None
            source = engine.runner.camera_sources.sources[0]
            assert wait_for(lambda: source.health.frames >= 3, 20), source.health
            assert wait_for(lambda: _ages()[0] - count0 >= 3, 10)
            count1, fresh1, _ = _ages()
            assert count1 - count0 >= 3 and fresh1 - fresh0 == count1 - count0, "a frame over 2 s old was scored"

            rtsp.stop()  # the camera's server goes away
            down = engine.runner.health
            assert wait_for(lambda: "S01/tower-1" in down()["cameras_without_frames"], 15), down()
            state = down()["cameras_without_frames"]["S01/tower-1"]
            assert state["state"] in ("failing", "connecting") and state["reconnects"] >= 1, state

            rtsp.start()  # ... and comes back
            back_at, frames = time.time(), source.health.frames
            assert wait_for(lambda: source.health.frames > frames, 15), source.health
            recovered_s = (source.health.last_frame_at or 0.0) - back_at
            assert recovered_s < 10.0, f"frames again {recovered_s:.1f} s after the server came back"
            assert wait_for(lambda: not down()["cameras_without_frames"], 5)
            assert wait_for(lambda: _ages()[0] - count1 >= 2, 10)
            count2, fresh2, sum2 = _ages()
            assert fresh2 - fresh1 == count2 - count1, "a frame over 2 s old was scored after the reconnection"
        finally:
            engine.stop()
    told = caplog.text + str(state) + "".join(capfd.readouterr())  # FFmpeg's own messages too (stderr)
    for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)):
        assert form not in told, "the camera's password reached a log or /readyz"
    with capfd.disabled():  # the figures, for the report (pytest -s)
        print(f"rtsp: {count2 - count0:.0f} frames scored, mean age {(sum2 - sum0) / (count2 - count0) * 1000:.1f} ms, "
              f"all <= 2 s; frames again {recovered_s:.1f} s after the server came back")  # fmt: skip


def _element(body: str, name: str) -> str:
    """The text of the first ``<name …>text<`` in a SOAP body (of ``s:Body``: the name of the call in it)."""
    pattern = r"<s:Body><(\w+)" if name == "s:Body" else rf"<{name}[^>]*>([^<]+)<"
    found = re.search(pattern, body)
    return found.group(1) if found else ""


class OnvifCamera(BaseHTTPRequestHandler):
    """An ONVIF device and media service (the three calls a client needs), checking the WS-Security digest."""

    stream_url = ""
    calls: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        nonce = base64.b64decode(_element(body, "Nonce"))
        created, digest = _element(body, "Created"), _element(body, "Password")
        expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + PASSWORD.encode()).digest()).decode()
        if digest != expected or f"<Username>{USER}</Username>" not in body:
            return self._answer(400, "<s:Fault><s:Reason><s:Text>Sender not authorized</s:Text></s:Reason></s:Fault>")
        call = _element(body, "s:Body")
        OnvifCamera.calls.append(call)
        media = f"http://127.0.0.1:{self.server.server_port}/onvif/media_service"  # type: ignore[attr-defined]
        answers = {
            "GetCapabilities": f"<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Media><tt:XAddr>{media}</tt:XAddr>"
            "</tt:Media></tds:Capabilities></tds:GetCapabilitiesResponse>",
            "GetProfiles": '<trt:GetProfilesResponse><trt:Profiles token="main" fixed="true"><tt:Name>main</tt:Name>'
            '</trt:Profiles><trt:Profiles token="sub"/></trt:GetProfilesResponse>',
            "GetStreamUri": f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{self.stream_url}</tt:Uri>"
            "</trt:MediaUri></trt:GetStreamUriResponse>",
        }
        self._answer(200, answers[call])

    def _answer(self, status: int, body: str) -> None:
        ns = (
            'xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
            'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema"'
        )
        data = f'<?xml version="1.0"?><s:Envelope {ns}><s:Body>{body}</s:Body></s:Envelope>'.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", free_port("127.0.0.1")), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_onvif_discovery_finds_the_stream(rtsp):
    OnvifCamera.stream_url, OnvifCamera.calls = rtsp.url, []
    server = _serve(OnvifCamera)
    got: list[float] = []
    try:
        url = f"onvif://127.0.0.1:{server.server_address[1]}"
        cam = CameraConfig(site="S01", id="dome-2", source={"url": url, "username": USER, "password": PASSWORD})
        source = CameraSource(cam, lambda c, payload, ts: got.append(ts))
        source.start()
        assert wait_for(lambda: len(got) >= 1, 20), source.health
        source.stop(10)
    finally:
        server.shutdown()
    assert OnvifCamera.calls[:3] == ["GetCapabilities", "GetProfiles", "GetStreamUri"]


class EndlessOnvif(BaseHTTPRequestHandler):
    """A device service that answers a SOAP call without end (chunked, until the client hangs up)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/soap+xml")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"<a>" * 20_000
        try:
            for _ in range(5_000):  # 300 MB at most: a test of the old reader ends too
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            return

    def log_message(self, *args: Any) -> None:
        pass


def test_an_onvif_answer_without_end_is_cut_at_its_bound():
    """The camera's thread reads at most ONVIF_MAX_BYTES of an answer, then retries with backoff: it is neither
    held by the device nor filled with what it sends."""
    from engine.config.models import CameraSourceConfig
    from engine.ingest.camera_sources import ONVIF_MAX_BYTES, SourceError, onvif_stream_uri

    server = _serve(EndlessOnvif)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            src = CameraSourceConfig(url=f"onvif://127.0.0.1:{server.server_address[1]}", timeout_s=5)
            onvif_stream_uri(src, None)
        except BaseException as exc:  # what the thread ended with
            outcome.append(exc)

    try:
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        asker.join(20)
        assert not asker.is_alive(), "the ONVIF answer was read without a bound"
    finally:
        server.shutdown()
    (exc,) = outcome
    assert isinstance(exc, SourceError) and f"more than {ONVIF_MAX_BYTES} bytes" in str(exc), exc


JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
STRIP = cv2.imencode(".png", np.zeros((10, 1000, 3), np.uint8))[1].tobytes()  # 100:1, no camera's frame
RADIOMETRIC = np.full((24, 32), 21.5, np.float32)  # a thermal camera's frame in °C
RADIOMETRIC[10:12, 15:17] = 240.0


class SnapshotCamera(BaseHTTPRequestHandler):
    """An IP camera's snapshot URL behind basic authentication: /snap.jpg, /big.jpg (too large), /strip.png."""

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        npy = io.BytesIO()
        np.save(npy, RADIOMETRIC)
        body = {"/snap.jpg": JPEG, "/big.jpg": JPEG + bytes(200_000), "/strip.png": STRIP,
                "/radiometric.npy": npy.getvalue()}[self.path.split("?")[0]]  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def snapshot_camera() -> Any:
    server = _serve(SnapshotCamera)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _snapshot(url: str, password: str = PASSWORD, **source: Any) -> CameraConfig:
    spec = {"url": url, "username": USER, "password": password, "http_auth": "basic", "interval_s": 0.2, **source}
    return CameraConfig(site="S02", id="pole-7", min_interval_s=0.2, source=spec)


def test_http_snapshots_enter_the_camera_intake_with_their_capture_time(snapshot_camera):
    refused: list[str] = []
    ir = _snapshot(f"{snapshot_camera}/radiometric.npy").model_copy(update={"id": "ir-1", "kind": "thermal"})
    cfg = EngineConfig(cameras={"devices": [_snapshot(f"{snapshot_camera}/snap.jpg").model_dump(), ir.model_dump()]})
    intake = CameraIntake(cfg, lambda rejected, topic, payload, now: refused.extend(r.reason for r in rejected))
    cam = cfg.cameras.devices[0]

    def into_intake(c: CameraConfig, payload: bytes, ts: float) -> None:
        kind = "thermal" if c.kind == "thermal" else "cameras"  # as the engine addresses a pulled frame
        intake.handle(Topic(kind, c.site, c.id), f"gw/{kind}/{c.site}/{c.id}", payload, {"ts": repr(ts)},
                      time.time())  # fmt: skip

    source = CameraSource(cam, into_intake)
    started = time.time()
    source.start()
    frames: list[Any] = []

    def three_taken() -> bool:
        frames.extend(intake.take())  # as the camera stage takes them
        return len(frames) >= 3

    assert wait_for(three_taken, 15), source.health
    source.stop(5)
    assert all(f.image.shape == (48, 64, 3) and started <= f.ts <= time.time() for f in frames)
    assert [f.ts for f in frames] == sorted(f.ts for f in frames) and not refused

    strip = CameraSource(_snapshot(f"{snapshot_camera}/strip.png"), into_intake)  # the intake's bounds hold
    strip.start()
    assert wait_for(lambda: "not_an_image" in refused, 10), refused
    strip.stop(5)

    # A thermal camera is pulled from its radiometric snapshot (°C as it came), never from its video stream
    thermal = CameraSource(cfg.cameras.devices[1], into_intake)
    thermal.start()
    hot: list[Any] = []

    def thermal_taken() -> bool:
        hot.extend(f for f in intake.take() if f.camera == "ir-1")
        return bool(hot)

    assert wait_for(thermal_taken, 10), refused
    thermal.stop(5)
    assert hot[0].image.dtype == np.float32 and float(hot[0].image.max()) == 240.0 and hot[0].units == "celsius"


def test_http_snapshot_refusals_say_why_and_never_the_password(snapshot_camera):
    wrong = CameraSource(_snapshot(f"{snapshot_camera}/snap.jpg?pwd=hunter2", password="not-it"), lambda *a: None)
    wrong.start()
    assert wait_for(lambda: wrong.health.error is not None, 10)
    wrong.stop(5)
    error = wrong.health.error or ""
    assert "HTTP 401" in error and "not-it" not in error
    assert "hunter2" not in error and "pwd=***" in error

    refusals: list[tuple[str, str]] = []
    big = CameraSource(_snapshot(f"{snapshot_camera}/big.jpg"), lambda *a: None,
                       lambda c, reason, detail: refusals.append((reason, detail)), max_bytes=100_000)  # fmt: skip
    big.start()
    assert wait_for(lambda: refusals, 10)
    big.stop(5)
    assert refusals[0][0] == "too_large" and big.health.frames == 0


def test_pull_cameras_publishes_frames_with_their_capture_time(mosquitto, snapshot_camera, tmp_path):
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    config = tmp_path / "cameras.yaml"
    config.write_text(
        f"mqtt: {{url: '{mosquitto.url}', client_id: pull-{tmp_path.name}}}\n"
        "cameras:\n  devices:\n"
        f"    - {{site: S03, id: gate-1, min_interval_s: 0.5, source: {{url: '{snapshot_camera}/snap.jpg', "
        f"username: {USER}, password_file: '{secret}', http_auth: basic}}}}\n"
    )
    got: list[tuple[bytes, dict[str, str]]] = []
    topic = "gw/cameras/S03/gate-1"
    sub = MqttClient(MqttConfig(url=mosquitto.url), lambda t, p, props: got.append((p, props)),
                     subscriptions=[topic], client_id=f"watch-{tmp_path.name}", clean=True)  # fmt: skip
    sub.start(*broker_address(mosquitto.url))
    port = free_port("127.0.0.1")
    args = ["pull-cameras", "--config", str(config), "--metrics-port", str(port)]
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert wait_for(lambda: len(got) >= 2, 30)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'gridwatch_camera_source_frames_total{outcome="taken"}' in scraped
        assert "gridwatch_camera_sources_without_frames 0.0" in scraped
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        sub.stop()
    assert proc.returncode == 0, out.decode()[-2000:]
    assert got[0][0] == JPEG and abs(float(got[0][1]["ts"]) - time.time()) < 30
    told = " ".join(out.decode().split())  # rich wraps its log lines
    assert PASSWORD not in told and "frames published from 1 cameras" in told
