"""A Deep Security Manager stand-in: the REST subset dsfleet reads, over HTTPS on loopback.

Implements ``POST /api/computers/search`` (expand, idValue paging, sortByObjectID, maxItems),
``GET /api/computers/{id}``, ``GET /api/systemsettings/{name}`` and the legacy
``GET /rest/managerInfo/version``; both auth styles; 401 for a bad key; injectable latency and 429s.
Every response deserializes with Trend Micro's SDK (tests/lab/test_dsm_conformance.py).

Runtime faults come from the "dsm" entry of ``<lab dir>/faults.json`` (the folder of the config file), re-read
whenever the file changes: ``paging`` ("repeat", "ignore-cursor": the first page again whatever the id cursor;
"short": pages of about half of maxItems), ``malformed`` (``[{"id", "field", "value"}]``: that computer's field,
a dotted path, served with that JSON value) and ``soap`` ("truncated-empty": the first page says truncated and
holds no event; "repeat": every page is the first page and says truncated).

Every request, whatever its method or path, is appended to ``<lab dir>/requests-dsm.log`` as ``<METHOD> <path>``
(SOAP calls: ``POST /webservice/Manager <operation>``) and counted in ``GET /__lab/stats`` under that line.
Methods other than GET and POST are answered 405.

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
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import https

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
    def __init__(self, config: dict[str, Any], api_key: str, lab_dir: Path) -> None:
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
        self.log = open(lab_dir / "requests-dsm.log", "a", encoding="utf-8", buffering=1)
        self.faults_file = lab_dir / "faults.json"
        self._faults: tuple[tuple[int, int, int], dict[str, Any]] = ((0, 0, 0), {})

    def record(self, line: str) -> int:
        """Log and count one request (``<METHOD> <path>[ <SOAP operation>]``); returns the running count."""
        with self.lock:
            self.count += 1
            self.calls[line] = self.calls.get(line, 0) + 1
            self.log.write(line + "\n")
            return self.count

    def faults(self) -> dict[str, Any]:
        """The "dsm" entry of <lab dir>/faults.json, re-read when the file changes; absent means no fault."""
        try:
            st = self.faults_file.stat()
        except FileNotFoundError:
            return {}
        # The file is replaced atomically (a new inode); mtime alone can repeat within the clock's granularity.
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self.lock:
            if self._faults[0] != key:
                self._faults = (key, json.loads(self.faults_file.read_text(encoding="utf-8")).get("dsm") or {})
            return self._faults[1]

    def served(self, computer: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        """A computer as the API returns it: the expanded parts asked for, then any "malformed" fault applied."""
        out = expanded(computer, expand)
        for bad in self.faults().get("malformed", []):
            if bad["id"] == computer["ID"]:
                out = json.loads(json.dumps(out))  # a deep copy: the scenario's record stays intact
                *parents, last = bad["field"].split(".")
                node = out
                for key in parents:
                    node = node.setdefault(key, {})
                node[last] = bad["value"]
        return out


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

    def __getattr__(self, name: str) -> Any:
        # http.server dispatches to do_<METHOD>: every method without one (PUT, DELETE, PATCH, ...) is refused
        # here, and logged like any other request, instead of http.server's unlogged 501.
        if name.startswith("do_"):
            return self._refuse_method
        raise AttributeError(name)

    def _refuse_method(self) -> None:
        self._body()
        self.state.record(f"{self.command} {urlsplit(self.path).path}")
        self._send(405, {"message": f"{self.command} is not supported."}, headers={"Allow": "GET, POST"})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

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

    def _gate(self, api: bool) -> bool:
        """Log, latency, auth, api-version and throttling, in the order a real gateway applies them."""
        st = self.state
        n = st.record(f"{self.command} {urlsplit(self.path).path}")
        if st.latency_s:
            time.sleep(st.latency_s)
        if not self._authorized():
            self._send(401, {"message": "Authentication failed."})
            return False
        if api and self.headers.get("api-version") != "v1":
            self._send(400, {"message": "Missing or invalid api-version header."})
            return False
        if st.throttle_every and n % st.throttle_every == 0:
            self._send(429, {"message": "Too many requests."}, headers={"Retry-After": "0"})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        parts = url.path.rstrip("/").split("/")
        st = self.state
        if url.path == "/__lab/stats":
            st.record(f"GET {url.path}")
            self._send(200, {"calls": st.calls, "total": st.count,
                             "soap_sessions_open": len(st.sessions), "soap_sessions_ended": st.ended})
        elif url.path == "/webservice/Manager" and url.query.upper() == "WSDL":
            st.record(f"GET {url.path}")
            self._send(200, WSDL.read_bytes(), "text/xml")
        elif url.path == "/rest/managerInfo/version":
            if self._gate(api=False):
                self._send(200, st.manager_version, "text/plain")
        elif len(parts) == 4 and parts[:3] == ["", "api", "systemsettings"]:
            if self._gate(api=True):
                name = parts[3]
                if name not in st.settings:
                    self._send(400, {"message": f"Invalid setting name: {name}"})
                else:
                    self._send(200, {"value": st.settings[name]})
        elif len(parts) == 4 and parts[:3] == ["", "api", "computers"] and parts[3].isdigit():
            if self._gate(api=True):
                found = [c for c in st.computers if c["ID"] == int(parts[3])]
                if found:
                    self._send(200, st.served(found[0], parse_qs(url.query).get("expand", [])))
                else:
                    self._send(404, {"message": "The computer does not exist."})
        elif self._gate(api=url.path.startswith("/api/")):
            self._send(404, {"message": "Not found."})

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        raw = self._body()
        if url.path == "/webservice/Manager":
            self._soap(raw)
        elif url.path != "/api/computers/search":
            self.state.record(f"POST {url.path}")
            self._send(405 if url.path.startswith("/api/") else 404, {"message": "Not supported by the lab."})
        elif self._gate(api=True):
            self._search(url.query, raw)

    def _search(self, query: str, raw: bytes) -> None:
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
        paging = self.state.faults().get("paging")
        if paging in ("repeat", "ignore-cursor"):
            criteria = []  # the only criteria are the id cursor: either way the first page comes back
        elif paging == "short":
            max_items = max(1, (max_items + 1) // 2)  # fewer than asked for while more exist
        rows = self.state.computers
        for c in criteria:
            test, value = ID_TESTS[c["idTest"]], c["idValue"]
            rows = [r for r in rows if test(r["ID"], value)]
        expand = parse_qs(query).get("expand", [])
        self._send(200, {"computers": [self.state.served(r, expand) for r in rows[:max_items]]})

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
        try:
            body = ET.fromstring(raw).find(f"{{{SOAP_ENV}}}Body")
            call = body[0] if body is not None and len(body) else None
        except ET.ParseError:
            call = None
        op = call.tag.split("}", 1)[1] if call is not None and call.tag.startswith(f"{{{MANAGER}}}") else None
        st.record(f"POST /webservice/Manager {op or '(not a urn:Manager call)'}")
        if call is None or op is None:
            self._fault("not a urn:Manager SOAP call")
            return
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
        fault = self.state.faults().get("soap")
        if fault == "repeat":
            after = 0  # every page is the first page, still saying truncated
        rows = [e for e in self.state.events if e["systemEventID"] > after
                and (start is None or dt.datetime.fromisoformat(e["time"]) >= start)
                and (end is None or dt.datetime.fromisoformat(e["time"]) <= end)]
        rows.sort(key=lambda e: e["systemEventID"])
        page, truncated = rows[: self.state.soap_page], len(rows) > self.state.soap_page
        if fault == "repeat":
            truncated = True
        elif fault == "truncated-empty" and after == 0:
            page, truncated = [], True  # the events come only on later pages, by id cursor
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
    handler = type("BoundHandler", (Handler,), {"state": State(config, api_key, config_path.parent)})
    if config.get("cef_file"):
        write_cef(config.get("events", []), Path(config["cef_file"]), config["manager_version"])
    https.serve(config, handler)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
