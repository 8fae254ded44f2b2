"""Real local receivers for the alert channels: an HTTP server for ``json://`` and an SMTP server for
``mailto://``, each recording what it received."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONN_ENV = "AIRFLOW_CONN_OPENBELL_NOTIFY"


class HttpReceiver:
    """A loopback HTTP server recording each POSTed JSON body (Apprise's ``json://`` payload)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A loopback SMTP server (aiosmtpd) recording each message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return (f"mailto://127.0.0.1:{self.port}?mode=insecure"
                "&from=openbell@example.com&to=operator@example.com")

    def close(self) -> None:
        self.controller.stop()


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection(*urls: str) -> str:
    """The ``AIRFLOW_CONN_OPENBELL_NOTIFY`` value for ``urls`` (one dict, or a list for several)."""
    config: Any = {"path": urls[0]} if len(urls) == 1 else [{"path": u} for u in urls]
    return json.dumps({"conn_type": "apprise", "extra": {"config": config}})
