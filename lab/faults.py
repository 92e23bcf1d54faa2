"""A fault endpoint for the HTTPS sources (DSM, vCenter, update source): one loopback address that misbehaves
in the way its control file says, a "catcher" that records whatever reaches it, and a refused port.

Modes (``{"mode": ..., ...}`` in the control file, re-read when the file changes, so tests switch modes on a
running lab):

- ``refuse``: use ``refused_url``: a port that is bound but never listened on, so every connect is refused.
- ``hang``: TLS completes, the request is read, no answer ever comes (a stuck backend).
- ``hang-tls``: TCP is accepted, the TLS handshake never finishes (a stuck TLS terminator).
- ``slow``: like ``pass``, each client request forwarded after ``delay_s`` seconds.
- ``status``: answer ``status`` with ``body`` (and ``Retry-After: retry_after`` when given); with ``count``,
  only the first ``count`` requests, then ``pass`` (e.g. 429 once, then the real answer).
- ``gateway``: 502 with nginx's HTML error page (what a reverse proxy says when the backend is down).
- ``malformed``: 200, ``Content-Type: application/json``, a body that is not JSON.
- ``truncated``: 200 announcing more bytes (Content-Length) than are sent, then close.
- ``redirect``: 302 to the catcher (same path); the catcher logs every request line, header and body.
- ``wrong-name``: a certificate from the lab CA, but for another host name; then ``pass``.
- ``pass``: a TLS reverse proxy to ``upstream`` (the real stand-in), so faults combine with real content.

Run: ``python -m lab.faults CONFIG.json``. Binds loopback addresses only.
"""

from __future__ import annotations

import json
import os
import select
import socket
import socketserver
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOLD_S = 600  # a hung connection is held at most this long, so no thread outlives a test run by much
REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
# nginx's own error page (src/http/ngx_http_special_response.c), as a load balancer in front of a DSM sends it.
NGINX_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
# The start of a real-looking page: what a truncated answer delivers before the connection closes.
PARTIAL_JSON = b'{"computers": [{"hostName": "web-01", "ID": 1, "computerStatus": {"agentStatus": "act'
# Complete (every announced byte arrives) but not JSON: a stray comma, as a broken serializer writes it.
BAD_JSON = b'{"computers": [{"hostName": "web-01", "ID": 1,, "computerStatus": {"agentStatus": "active"}}]}'


class Control:
    """The current mode; re-read when the control file is replaced. Counts requests since the mode was set."""

    def __init__(self, path: Path) -> None:
        self.path, self.lock = path, threading.Lock()
        self.key: tuple[int, int] | None = None
        self.conf: dict[str, Any] = {"mode": "pass"}
        self.served = 0

    def current(self) -> dict[str, Any]:
        with self.lock:
            try:
                st = os.stat(self.path)
                key = (st.st_mtime_ns, st.st_ino)
                if key != self.key:
                    self.key, self.conf, self.served = key, json.loads(self.path.read_text()), 0
            except (OSError, ValueError):
                pass  # keep the last good mode: a half-written file must not change behaviour
            return self.conf

    def tick(self) -> int:
        """Count a request; returns its number since the mode was set."""
        with self.lock:
            self.served += 1
            return self.served


def _drain(sock: socket.socket) -> None:
    """Hold the connection without answering until the client gives up (or HOLD_S passes)."""
    sock.settimeout(HOLD_S)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _read_request(sock: socket.socket) -> bytes:
    """One request: the head and, by Content-Length, its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None,
              length: int | None = None) -> bytes:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body) if length is None else length),
               "Connection": "close", **(extra or {})}
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'OK' if status == 200 else 'Status')}\r\n"
    return (head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


def _append(path: Path, text: str, lock: threading.Lock) -> None:
    with lock, open(path, "a", encoding="utf-8") as f:
        f.write(text)


class FaultServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__((config["host"], 0), FaultHandler)
        self.control = Control(Path(config["control"]))
        self.log, self.log_lock = Path(config["log"]), threading.Lock()
        self.catcher_url: str = ""
        self.tls = _server_context(config["cert"], config["key"])
        self.wrong_tls = _server_context(config["wrong_cert"], config["wrong_key"])
        self.upstream_tls = ssl.create_default_context()
        for ca in config["upstream_cas"]:
            self.upstream_tls.load_verify_locations(ca)


class FaultHandler(socketserver.BaseRequestHandler):
    server: FaultServer

    def handle(self) -> None:
        conf = self.server.control.current()
        if conf.get("mode") == "hang-tls":
            _drain(self.request)
            return
        context = self.server.wrong_tls if conf.get("mode") == "wrong-name" else self.server.tls
        self.request.settimeout(60)
        try:
            client = context.wrap_socket(self.request, server_side=True)
            request = _read_request(client)
        except (OSError, ssl.SSLError):
            return  # the client gave up (or refused our certificate, as it should for wrong-name)
        if not request:
            return
        served = self.server.control.tick()
        mode = conf.get("mode", "pass")
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        _append(self.server.log, f"{mode} {line}\n", self.server.log_lock)
        if mode == "status" and served > conf.get("count", served):
            mode = "pass"
        try:
            self._answer(client, request, mode, conf)
        except OSError:
            pass
        finally:
            client.close()

    def _answer(self, client: ssl.SSLSocket, request: bytes, mode: str, conf: dict[str, Any]) -> None:
        if mode == "hang":
            _drain(client)
        elif mode == "status":
            extra = {"Retry-After": str(conf["retry_after"])} if "retry_after" in conf else {}
            body = conf.get("body", json.dumps({"message": REASONS.get(conf["status"], "error")})).encode()
            client.sendall(_response(conf["status"], body, "application/json", extra))
        elif mode == "gateway":
            client.sendall(_response(502, NGINX_502, "text/html", {"Server": "nginx"}))
        elif mode == "malformed":
            client.sendall(_response(200, BAD_JSON, "application/json"))
        elif mode == "truncated":
            client.sendall(_response(200, PARTIAL_JSON, "application/json", length=len(PARTIAL_JSON) + 4096))
        elif mode == "redirect":
            path = request.split(b" ", 2)[1].decode("latin-1")
            client.sendall(_response(302, b"", "text/plain", {"Location": self.server.catcher_url + path}))
        elif mode in ("pass", "slow", "wrong-name"):
            self._forward(client, request, float(conf.get("delay_s", 0)) if mode == "slow" else 0.0, conf)
        else:
            client.sendall(_response(500, f"lab.faults: unknown mode {mode!r}".encode(), "text/plain"))

    def _forward(self, client: ssl.SSLSocket, request: bytes, delay_s: float, conf: dict[str, Any]) -> None:
        """Relay bytes both ways to the upstream; each client chunk (a request) waits delay_s first.

        One thread serves both directions: an SSL object used by two threads at once (one reading, one
        writing) corrupts its records now and then (DECRYPTION_FAILED_OR_BAD_RECORD_MAC on the client), which
        made a healthy proxied run look like a TLS fault.
        """
        target = urlsplit(conf["upstream"])
        host, port = target.hostname or "", target.port or 443
        raw = socket.create_connection((host, port), timeout=60)
        with self.server.upstream_tls.wrap_socket(raw, server_hostname=host) as upstream:
            time.sleep(delay_s)
            upstream.sendall(request)
            peer = {client: upstream, upstream: client}
            try:
                while True:
                    # Bytes already decrypted inside an SSL object do not make its socket readable.
                    ready = [s for s in peer if s.pending()] or select.select(list(peer), [], [], 60)[0]
                    if not ready:
                        break
                    for sock in ready:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise EOFError
                        if sock is client:
                            time.sleep(delay_s)
                        peer[sock].sendall(chunk)
            except (OSError, EOFError):
                pass
            _shutdown(upstream)
            _shutdown(client)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class Catcher(socketserver.ThreadingTCPServer):
    """Where redirects point: records everything a client sends it (a client that follows a redirect with
    its credentials leaks them here), answers 404."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__((config["catcher_host"], 0), CatcherHandler)
        self.tls = _server_context(config["catcher_cert"], config["catcher_key"])
        self.log, self.log_lock = Path(config["catcher_log"]), threading.Lock()


class CatcherHandler(socketserver.BaseRequestHandler):
    server: Catcher

    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            with self.server.tls.wrap_socket(self.request, server_side=True) as client:
                request = _read_request(client)
                _append(self.server.log, request.decode("utf-8", "replace") + "\n", self.server.log_lock)
                client.sendall(_response(404, b"caught\n", "text/plain"))
        except (OSError, ssl.SSLError):
            pass


def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    for name in ("log", "catcher_log"):
        Path(config[name]).touch()
    faults, catcher = FaultServer(config), Catcher(config)
    faults.catcher_url = f"https://{config['catcher_host']}:{catcher.server_address[1]}"
    # Bound, never listened on: the kernel refuses every connection, and no other process can take the port.
    refused = socket.socket()
    refused.bind((config["refused_host"], 0))
    for server in (faults, catcher):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready = Path(config["ready_file"])
    ready.with_suffix(".tmp").write_text(json.dumps({
        "url": f"https://{config['host']}:{faults.server_address[1]}", "catcher_url": faults.catcher_url,
        "refused_url": f"https://{config['refused_host']}:{refused.getsockname()[1]}"}))
    ready.with_suffix(".tmp").rename(ready)
    threading.Event().wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
