"""An ActiveUpdate stand-in: HTTPS with its own CA (the lab's "Trend Micro" trust anchor), answering
``GET /iau_server.dll``. The update-path probes reach it through tinyproxy (plain CONNECT) or mitmproxy
(TLS interception), so what the suite sees is what a real proxy does to the real source.

Faults: key ``"au"`` of the lab's faults.json, ``{"status": N}``, makes every answer HTTP N (re-read when
the file changes). Every request is logged as ``<METHOD> <path>`` to the configured request log.

Run: ``python -m lab.au_server CONFIG.json``
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from . import https


class Faults:
    """The "au" entry of faults.json, re-read when the file is replaced."""

    def __init__(self, path: Path) -> None:
        self.path, self.lock = path, threading.Lock()
        self.key: tuple[int, int] | None = None
        self.au: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        with self.lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self.key, self.au = None, {}
                return self.au
            if (st.st_mtime_ns, st.st_ino) != self.key:
                self.key = (st.st_mtime_ns, st.st_ino)
                self.au = json.loads(self.path.read_text()).get("au") or {}
            return self.au


class ActiveUpdate(BaseHTTPRequestHandler):
    server_version = "ActiveUpdate-lab/1.0"
    faults: Faults
    request_log: Path
    log_lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        # Every method reaches here, including those the handler has no do_ method for: log them all.
        ok = super().parse_request()
        if ok:
            with self.log_lock, open(self.request_log, "a", encoding="utf-8") as log:
                log.write(f"{self.command} {self.path}\n")
        return ok

    def do_GET(self) -> None:  # noqa: N802
        found = self.path.split("?", 1)[0].rstrip("/") == "/iau_server.dll"
        status = int(self.faults.current().get("status", 200 if found else 404))
        body = b"[Server]\r\nAvailableServer=lab\r\n" if status == 200 else f"HTTP {status}\r\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    ActiveUpdate.faults = Faults(Path(config["faults"]))
    ActiveUpdate.request_log = Path(config["request_log"])
    ActiveUpdate.request_log.touch()
    https.serve(config, ActiveUpdate)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
