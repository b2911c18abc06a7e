"""MQTT over TLS with a password from a file: the engine verifies the broker, a wrong CA is refused."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from engine.config.models import ApiConfig, MqttConfig, StoreConfig
from engine.ingest.embedded_broker import free_port
from engine.ingest.mqtt_client import MqttClient, broker_address
from tests.conftest import RunnerThread, _mosquitto_binary, default_config, wait_for

OPENSSL = shutil.which("openssl") or "openssl"
PASSWD = shutil.which("mosquitto_passwd") or "mosquitto_passwd"


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)  # fmt: skip
    return key, crt


def make_server_cert(folder: Path, ca_key: Path, ca_crt: Path) -> tuple[Path, Path]:
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run([OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key,
                    "-out", csr], check=True, capture_output=True)  # fmt: skip
    subprocess.run([OPENSSL, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", crt], check=True, capture_output=True)  # fmt: skip
    return key, crt


@pytest.fixture
def tls_broker(tmp_path):
    binary = _mosquitto_binary()
    if binary is None or shutil.which(OPENSSL) is None or shutil.which(PASSWD) is None:
        pytest.skip("needs mosquitto, mosquitto_passwd and openssl")
    ca_key, ca_crt = make_ca(tmp_path, "gridwatch-test-ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca_crt)
    passwords = tmp_path / "passwd"
    subprocess.run([PASSWD, "-c", "-b", passwords, "engine", "s3cret-from-a-file"], check=True, capture_output=True)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"cafile {ca_crt}\ncertfile {crt}\nkeyfile {key}\nuser root\n"
    )
    proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    yield port, ca_crt
    proc.terminate()
    proc.wait(10)


def test_engine_connects_over_tls_with_a_password_file_and_refuses_a_wrong_ca(tls_broker, tmp_path):
    port, ca_crt = tls_broker
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret-from-a-file\n")
    mqtt = MqttConfig(url=f"mqtts://127.0.0.1:{port}", client_id="engine-tls", username="engine",
                      password_file=str(secret), tls_ca_file=str(ca_crt))  # fmt: skip
    assert "s3cret" not in repr(mqtt)
    cfg = default_config(mqtt=mqtt, data_dir=str(tmp_path), store=StoreConfig(url=f"sqlite:///{tmp_path / 'g.db'}"),
                         api=ApiConfig(enabled=False), sinks=[])  # fmt: skip
    engine = RunnerThread(cfg)  # waits until connected: TLS verified against the CA, password accepted
    try:
        pub = MqttClient(mqtt, client_id="device-tls", clean=True, track=True)
        pub.start(*broker_address(mqtt.url))
        pub.publish("gw/sensors/S01/rain-1", orjson.dumps({"ts": time.time(), "values": {"rain_mm": 0.2}}), qos=1)
        assert pub.flush()
        pub.stop()
        assert wait_for(lambda: engine.runner.pipeline.readings == 1, 10)
    finally:
        engine.stop()
    _other_key, other_ca = make_ca(tmp_path, "someone-else")
    wrong = MqttClient(mqtt.model_copy(update={"tls_ca_file": str(other_ca)}), client_id="engine-wrong-ca")
    with pytest.raises(ssl.SSLError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        wrong.client.connect("127.0.0.1", port)
