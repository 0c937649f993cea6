"""The node's HTTP server, in a thread: `/metrics` (Prometheus), `/healthz` and
`/v1/signatures/<agreement>/<period>` (the signatures it collected, for its peers)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.engine import Engine

from oracle.core.addresses import checksum
from oracle.node.signatures import served


def start_http(listen: str, registry: CollectorRegistry, engine: Engine) -> tuple[ThreadingHTTPServer, str]:
    """Serve in a daemon thread on `listen` ("host:port", port 0: any); returns the server and
    its base URL."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts == ["metrics"]:
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif parts == ["healthz"]:
                self._json(200, {"ok": True})
            elif len(parts) == 4 and parts[:2] == ["v1", "signatures"] and parts[3].isdigit():
                try:
                    address = checksum(parts[2])
                except ValueError:
                    self._json(400, {"error": "not an address"})
                    return
                self._json(200, served(engine, address, int(parts[3])))
            else:
                self._json(404, {"error": "not found"})

        def _json(self, code: int, body: Any) -> None:
            self._send(code, json.dumps(body).encode(), "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="oracle-http", daemon=True).start()
    return server, f"http://{host or '127.0.0.1'}:{server.server_address[1]}"
