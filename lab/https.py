"""Serve a lab stand-in over HTTPS on its loopback address and announce its URL in its ready file."""

from __future__ import annotations

import os
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def serve(config: dict[str, Any], handler: type[BaseHTTPRequestHandler]) -> None:
    """Bind ``config["host"]`` (port 0: any), wrap in TLS with the lab CA's leaf, write the URL to
    ``config["ready_file"]`` atomically (the lab waits for it), then serve until killed."""
    server = ThreadingHTTPServer((config["host"], config.get("port", 0)), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ready = Path(config["ready_file"])
    ready.with_suffix(".tmp").write_text(f"https://{config['host']}:{server.server_address[1]}\n")
    os.replace(ready.with_suffix(".tmp"), ready)
    server.serve_forever()
