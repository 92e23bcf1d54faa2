"""A Deep Security Manager stand-in: the REST subset dsfleet reads, over HTTPS on loopback.

Implements ``POST /api/computers/search`` (expand, idValue paging, sortByObjectID, maxItems),
``GET /api/computers/{id}``, ``GET /api/systemsettings/{name}`` and the legacy
``GET /rest/managerInfo/version``; both auth styles; 401 for a bad key; injectable latency and 429s.
Every response deserializes with Trend Micro's SDK (tests/lab/test_dsm_conformance.py).

The legacy SOAP API at ``/webservice/Manager`` (WSDL at ``?WSDL``): authenticate, authenticateTenant,
systemEventRetrieve (time range, systemEventID paging with ``truncated``) and endSession. At start it also
writes the scenario's events as syslog/CEF lines, as a DSM forwarding to a syslog server does.

Run: ``python -m lab.dsm_server CONFIG.json`` (the API key comes from DSFLEET_LAB_DSM_KEY).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape
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


SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MANAGER = "urn:Manager"
WSDL = Path(__file__).resolve().parent / "manager.wsdl"


class State:
    def __init__(self, config: dict[str, Any], api_key: str) -> None:
        self.events: list[dict[str, Any]] = config.get("events", [])
        self.soap_user: str | None = config.get("soap_user")
        self.soap_password = os.environ.get("DSFLEET_LAB_SOAP_PASSWORD", "")
        self.soap_page = config.get("soap_page_size", 2)
        self.sessions: set[str] = set()
        self.ended = 0
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
            self._send(200, {"calls": self.state.calls, "total": self.state.count,
                             "soap_sessions_open": len(self.state.sessions), "soap_sessions_ended": self.state.ended})
        elif url.path == "/webservice/Manager" and url.query.upper() == "WSDL":
            self.state.tick(url.path + "?WSDL")
            self._send(200, WSDL.read_bytes(), "text/xml")
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
        if url.path == "/webservice/Manager":
            self._soap(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            return
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


    # -- legacy SOAP API ------------------------------------------------------------------------------

    def _soap_reply(self, body: str, status: int = 200) -> None:
        data = (f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:m="{MANAGER}"><soapenv:Body>{body}'
                f"</soapenv:Body></soapenv:Envelope>").encode()
        self._send(status, data, "text/xml; charset=utf-8")

    def _fault(self, text: str) -> None:
        self._soap_reply(f"<soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>{escape(text)}"
                         f"</faultstring></soapenv:Fault>", 500)

    def _soap(self, raw: bytes) -> None:
        st = self.state
        st.tick("/webservice/Manager")
        try:
            body = ET.fromstring(raw).find(f"{{{SOAP_ENV}}}Body")
            call = body[0] if body is not None and len(body) else None
        except ET.ParseError:
            call = None
        if call is None or not call.tag.startswith(f"{{{MANAGER}}}"):
            self._fault("not a urn:Manager SOAP call")
            return
        op = call.tag.split("}", 1)[1]
        arg = lambda name: call.findtext(f"{{{MANAGER}}}{name}")  # noqa: E731
        if op in ("authenticate", "authenticateTenant"):
            if arg("username") != st.soap_user or arg("password") != st.soap_password:
                self._fault("Authentication failed: bad user name or password")
                return
            sid = secrets.token_hex(16)
            st.sessions.add(sid)
            self._soap_reply(f"<m:{op}Response><m:{op}Return>{sid}</m:{op}Return></m:{op}Response>")
        elif op == "endSession":
            sid = arg("sID")
            if sid in st.sessions:
                st.sessions.remove(sid)
                st.ended += 1
            self._soap_reply("<m:endSessionResponse/>")
        elif op == "systemEventRetrieve":
            if arg("sID") not in st.sessions:
                self._fault("Invalid session ID")
                return
            self._soap_reply(self._system_events(call))
        else:
            self._fault(f"operation {op} is not served by the lab")

    def _system_events(self, call: ET.Element) -> str:
        def when(path: str) -> dt.datetime | None:
            text = call.findtext(path)
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

        m = f"{{{MANAGER}}}"
        start, end = when(f"{m}timeFilter/{m}rangeFrom"), when(f"{m}timeFilter/{m}rangeTo")
        after = int(call.findtext(f"{m}eventIdFilter/{m}id") or 0)
        rows = [e for e in self.state.events if e["systemEventID"] > after
                and (start is None or dt.datetime.fromisoformat(e["time"]) >= start)
                and (end is None or dt.datetime.fromisoformat(e["time"]) <= end)]
        rows.sort(key=lambda e: e["systemEventID"])
        page, truncated = rows[: self.state.soap_page], len(rows) > self.state.soap_page
        items = "".join(
            "<m:item>" + "".join(f"<m:{k}>{escape(str(e[k]))}</m:{k}>" for k in (
                "actionPerformedBy", "description", "event", "eventID", "eventOrigin", "managerHostname",
                "systemEventID", "tags", "target", "targetID", "targetType", "time", "type")) + "</m:item>"
            for e in page)
        return (f"<m:systemEventRetrieveResponse><m:systemEventRetrieveReturn><m:truncated>{str(truncated).lower()}"
                f"</m:truncated><m:systemEvents>{items}</m:systemEvents></m:systemEventRetrieveReturn>"
                f"</m:systemEventRetrieveResponse>")


def _cef_escape(value: str, header: bool = False) -> str:
    value = value.replace("\\", "\\\\")
    if header:
        return value.replace("|", "\\|")
    return value.replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


def write_cef(events: list[dict[str, Any]], path: Path, version: str) -> None:
    """The events as a syslog server receives them from the DSM: RFC 5424, the DSM's ISO form, RFC 3164."""
    lines = []
    for n, e in enumerate(events):
        when = dt.datetime.fromisoformat(e["time"]).astimezone(dt.timezone.utc)
        agent = e["eventID"] == 9017
        product = "Deep Security Agent" if agent else "Deep Security Manager"
        ext = (f"{'dvchost' if agent else 'target'}={_cef_escape(e['target'])} "
               f"msg={_cef_escape(e['description'])} TrendMicroDsTenant=Primary TrendMicroDsTenantId=0")
        cef = (f"CEF:0|Trend Micro|{product}|{_cef_escape(version, True)}|{e['eventID']}|"
               f"{_cef_escape(e['event'], True)}|6|{ext}")
        if n % 3 == 0:
            lines.append(f"<134>1 {when.strftime('%Y-%m-%dT%H:%M:%S.000Z')} dsm-lab - - - - {cef}")
        elif n % 3 == 1:
            lines.append(f"<134>{when.isoformat()} dsm-lab {cef}")
        else:
            lines.append(f"<134>{when.strftime('%b')} {when.day:>2} {when.strftime('%H:%M:%S')} dsm-lab {cef}")
    lines.append("<134>1 2025-09-24T00:00:00.000Z dsm-lab - - - - LEEF:1.0|Trend Micro|Deep Security Manager|20|600|")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def serve(config_path: Path) -> None:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    api_key = os.environ.get("DSFLEET_LAB_DSM_KEY")
    if not api_key:
        sys.exit("dsm_server: DSFLEET_LAB_DSM_KEY is not set")
    handler = type("BoundHandler", (Handler,), {"state": State(config, api_key)})
    if config.get("cef_file"):
        write_cef(config.get("events", []), Path(config["cef_file"]), config["manager_version"])
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
