"""Real receivers for the people-facing sink's tests: a local SMTP server (aiosmtpd, plain SMTP with AUTH and
no TLS, as Apprise's ``mailto://…?mode=insecure`` speaks it) and a local HTTP chat endpoint (Apprise's
``json://``). Both can be taken down and brought back on the same port."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from engine.ingest.embedded_broker import free_port

SMTP_USER = "gridwatch"
SMTP_PASSWORD = "smtp-Pa55-w0rd-never-logged"
CHAT_TOKEN = "chat-T0ken-never-logged-42"


@dataclass
class Mail:
    """One e-mail as the SMTP server got it."""

    to: list[str]
    subject: str
    body: str
    at: float  # wall time it arrived


class SmtpReceiver:
    """aiosmtpd on a free loopback port, asking for the password over plain SMTP (``auth_require_tls=False``)."""

    def __init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.mails: list[Mail] = []
        self.refused_logins = 0
        self._controller: Any = None

    def url(self, to: str) -> str:
        """The Apprise URL that sends to ``to`` through this server."""
        return (
            f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"
            f"?mode=insecure&from=gridwatch@example.org&to={to}"
        )

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if not session.authenticated:
                    return "530 5.7.0 Authentication required"
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                part = msg.get_body(("plain", "html"))
                body = part.get_content().replace("\r\n", "\n") if part is not None else ""
                receiver.mails.append(Mail(list(envelope.rcpt_tos), str(msg["subject"]), body, time.time()))
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                SMTP_USER.encode(),
                SMTP_PASSWORD.encode(),
            )
            receiver.refused_logins += int(not ok)
            return AuthResult(success=ok)

        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-session chatter
        # AUTH offered without TLS (what this loopback server is for); mail from a session that did not log in
        # is refused in handle_DATA.
        self._controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate, auth_require_tls=False
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]


class ChatReceiver:
    """An HTTP endpoint taking Apprise's ``json://`` posts (``{"title", "message", "type"}``), checking its
    token header."""

    def __init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.posts: list[dict[str, Any]] = []
        self.bad_tokens = 0
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "hooks/duty") -> str:
        return f"json://127.0.0.1:{self.port}/{path}?+X-Chat-Token={CHAT_TOKEN}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("X-Chat-Token") != CHAT_TOKEN:
                    receiver.bad_tokens += 1
                    self.send_response(401)
                else:
                    receiver.posts.append({**orjson.loads(body), "path": self.path, "at": time.time()})
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class HangingServer:
    """A server that takes TCP connections and never says a word (a mail server behind a broken firewall):
    a client waits for its greeting until its own time-out. Counts the connections it took."""

    def __init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)

    def stop(self) -> None:
        self._closed = True
        self._sock.close()
        for conn in self._held:
            conn.close()
