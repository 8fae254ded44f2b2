"""A loopback HTTP endpoint publishing a simulator-style market clock, for clock and trigger tests."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ClockEndpoint:
    """A loopback HTTP endpoint serving a simulator-style clock document at /sim/clock."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {}
        self.fail_next = 0
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.requests += 1
                if endpoint.fail_next > 0 or self.path != "/sim/clock":
                    endpoint.fail_next = max(0, endpoint.fail_next - 1)
                    self.send_response(503 if self.path == "/sim/clock" else 404)
                    self.end_headers()
                    return
                body = json.dumps(endpoint.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base_url}/sim/clock"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def anchor(self, market: datetime, speed: float, wall: float | None = None) -> None:
        """Publish: market time ``market`` at wall time ``wall`` (now by default), running at ``speed``."""
        w = datetime.fromtimestamp(time.time() if wall is None else wall, UTC)
        self.doc = {"market_time": market.isoformat(), "wall_time": w.isoformat(), "speed": speed}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
