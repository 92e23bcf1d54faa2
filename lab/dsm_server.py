"""A Deep Security Manager stand-in: the REST subset dsfleet reads, over HTTPS on loopback.

Implements ``POST /api/computers/search`` (expand, idValue paging, sortByObjectID, maxItems),
``GET /api/computers/{id}``, ``GET /api/systemsettings/{name}`` and the legacy
``GET /rest/managerInfo/version``; both auth styles; 401 for a bad key; injectable latency and 429s.
Every response deserializes with Trend Micro's SDK (tests/lab/test_dsm_conformance.py).

Run: ``python -m lab.dsm_server CONFIG.json`` (the API key comes from DSFLEET_LAB_DSM_KEY).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Sub-objects the DSM returns only when asked for with ?expand= (names from the SDK's Expand model).
EXPANDABLE = ("computerStatus", "tasks", "securityUpdates", "computerSettings", "antiMalware",
              "webReputation", "firewall", "intrusionPrevention", "integrityMonitoring", "logInspection",
              "applicationControl", "ESXSummary", "vmwareVMVirtualMachineSummary", "interfaces")
ID_TESTS = {"greater-than": lambda a, b: a > b, "less-than": lambda a, b: a < b, "equal": lambda a, b: a == b,
            "greater-than-or-equal": lambda a, b: a >= b, "less-than-or-equal": lambda a, b: a <= b}


class State:
    def __init__(self, config: dict[str, Any], api_key: str) -> None:
        self.computers = sorted(config["computers"], key=lambda c: c["ID"])
        self.settings: dict[str, str] = config.get("settings", {})
        self.manager_version: str = config["manager_version"]
        self.auth: str = config.get("auth", "api-secret-key")
        self.api_key = api_key
        self.latency_s = config.get("latency_ms", 0) / 1000
        self.throttle_every: int = config.get("throttle_every", 0)  # every Nth API call answers 429
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.count = 0

    def tick(self, route: str) -> int:
        with self.lock:
            self.count += 1
            self.calls[route] = self.calls.get(route, 0) + 1
            return self.count


def expanded(computer: dict[str, Any], expand: list[str]) -> dict[str, Any]:
    if not expand or "all" in expand:
        return computer
    keep = set(expand) & set(EXPANDABLE)
    return {k: v for k, v in computer.items() if k not in EXPANDABLE or k in keep}


class Handler(BaseHTTPRequestHandler):
    server_version = "DSM-lab/20.0"
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if content_type ==
                                                     "application/json" else str(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        st = self.state
        if st.auth == "api-secret-key":
            return self.headers.get("api-secret-key") == st.api_key
        return self.headers.get("Authorization") == f"ApiKey {st.api_key}"

    def _gate(self, route: str) -> bool:
        """Latency, auth, api-version and throttling, in the order a real gateway applies them."""
        st = self.state
        n = st.tick(route)
        if st.latency_s:
            time.sleep(st.latency_s)
        if route == "/__lab/stats":
            return True
        if not self._authorized():
            self._send(401, {"message": "Authentication failed."})
            return False
        if route.startswith("/api/") and self.headers.get("api-version") != "v1":
            self._send(400, {"message": "Missing or invalid api-version header."})
            return False
        if st.throttle_every and n % st.throttle_every == 0:
            self._send(429, {"message": "Too many requests."}, headers={"Retry-After": "0"})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        parts = url.path.rstrip("/").split("/")
        if url.path == "/__lab/stats":
            self._gate(url.path)
            self._send(200, {"calls": self.state.calls, "total": self.state.count})
        elif url.path == "/rest/managerInfo/version":
            if self._gate(url.path):
                self._send(200, self.state.manager_version, "text/plain")
        elif len(parts) == 4 and parts[:3] == ["", "api", "systemsettings"]:
            if self._gate("/api/systemsettings/{name}"):
                name = parts[3]
                if name not in self.state.settings:
                    self._send(400, {"message": f"Invalid setting name: {name}"})
                else:
                    self._send(200, {"value": self.state.settings[name]})
        elif len(parts) == 4 and parts[:3] == ["", "api", "computers"] and parts[3].isdigit():
            if self._gate("/api/computers/{id}"):
                found = [c for c in self.state.computers if c["ID"] == int(parts[3])]
                expand = parse_qs(url.query).get("expand", [])
                if found:
                    self._send(200, expanded(found[0], expand))
                else:
                    self._send(404, {"message": "The computer does not exist."})
        else:
            self._gate(url.path)
            self._send(404, {"message": "Not found."})

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/api/computers/search":
            self._send(405 if url.path.startswith("/api/") else 404, {"message": "Not supported by the lab."})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._gate(url.path):
            return
        try:
            body = json.loads(raw or b"{}")
            max_items = int(body.get("maxItems", 5000))
            criteria = body.get("searchCriteria") or []
            for c in criteria:
                if c.get("idTest") not in ID_TESTS or not isinstance(c.get("idValue"), (int, float)):
                    raise ValueError(c)
        except (ValueError, TypeError, AttributeError):
            self._send(400, {"message": "Invalid search criteria."})
            return
        rows = self.state.computers
        for c in criteria:
            test, value = ID_TESTS[c["idTest"]], c["idValue"]
            rows = [r for r in rows if test(r["ID"], value)]
        expand = parse_qs(url.query).get("expand", [])
        self._send(200, {"computers": [expanded(r, expand) for r in rows[:max_items]]})


def serve(config_path: Path) -> None:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    api_key = os.environ.get("DSFLEET_LAB_DSM_KEY")
    if not api_key:
        sys.exit("dsm_server: DSFLEET_LAB_DSM_KEY is not set")
    handler = type("BoundHandler", (Handler,), {"state": State(config, api_key)})
    server = ThreadingHTTPServer((config["host"], config.get("port", 0)), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://{config['host']}:{server.server_address[1]}"
    ready = Path(config["ready_file"])
    ready.with_suffix(".tmp").write_text(url + "\n")
    ready.with_suffix(".tmp").rename(ready)
    server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
