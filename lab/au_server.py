"""An ActiveUpdate stand-in: HTTPS with its own CA (the lab's "Trend Micro" trust anchor), answering
``GET /iau_server.dll``. The update-path probes reach it through tinyproxy (plain CONNECT) or mitmproxy
(TLS interception), so what the suite sees is what a real proxy does to the real source.

Run: ``python -m lab.au_server CONFIG.json``
"""

from __future__ import annotations

import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class ActiveUpdate(BaseHTTPRequestHandler):
    server_version = "ActiveUpdate-lab/1.0"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        found = self.path.split("?", 1)[0].rstrip("/") == "/iau_server.dll"
        body = (b"[Server]\r\nAvailableServer=lab\r\n" if found else b"not found\r\n")
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    server = ThreadingHTTPServer((config["host"], 0), ActiveUpdate)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ready = Path(config["ready_file"])
    ready.with_suffix(".tmp").write_text(f"https://{config['host']}:{server.server_address[1]}\n")
    ready.with_suffix(".tmp").rename(ready)
    server.serve_forever()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
