"""An NSX Manager stand-in: the NSX-T Policy API subset dsfleet reads, over HTTPS on loopback.

``GET /policy/api/v1/infra/domains/endpoint-policies`` (EndpointPolicyListResult),
``GET /policy/api/v1/infra/domains/{domain}/endpoint-policies/{policy}/endpoint-rules`` (EndpointRuleListResult)
and ``GET /policy/api/v1/infra/domains/{domain}/groups/{group}/members/virtual-machines``
(RealizedVirtualMachineListResult), with the fields of VMware's NSX Policy SDK 4.2.0 structures (checked by
tests/lab/test_nsx_conformance.py). Lists page with an opaque ``cursor`` and honour ``page_size`` up to the
config's ``page_size`` cap (small in the lab, so every list really pages); the last page has no cursor.

NSX-V (NSX for vSphere 6.4) XML, from the same policy: ``GET /api/2.0/si/serviceprofiles`` (one Trend Micro
Guest Introspection profile), ``GET /api/2.0/si/serviceprofile/{id}/binding`` (a security group per endpoint
protection group) and ``GET /api/2.0/services/securitygroup/{id}/translation/virtualmachines`` (``vmnode``s by
moref, which the vCenter simulator writes to the config's ``morefs`` file once it has built the VMs).

Basic auth (the user from the config, the password from DSFLEET_LAB_NSX_PASSWORD): a wrong one is answered 403
with NSX's error body. Unknown paths are 404, methods other than GET 405. Every request is appended to
``<lab dir>/requests-nsx.log`` as ``<METHOD> <path>[?query]``, so tests can prove the suite only reads.

Run: ``python -m lab.nsx_server CONFIG.json``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from . import https

PREFIX = "/policy/api/v1"
ROUTES = (
    (re.compile(r"^/infra/domains/endpoint-policies$"), "policies"),
    (re.compile(r"^/infra/domains/([^/]+)/endpoint-policies/([^/]+)/endpoint-rules$"), "rules"),
    (re.compile(r"^/infra/domains/([^/]+)/groups/([^/]+)/members/virtual-machines$"), "members"),
)
AUDIT = {"_create_user": "admin", "_create_time": 1763700000000, "_last_modified_user": "admin",
         "_last_modified_time": 1763700000000, "_system_owned": False, "_protection": "NOT_PROTECTED",
         "_revision": 0, "marked_for_delete": False, "overridden": False}


def _policy_object(kind: str, path: str, display_name: str, **fields: Any) -> dict[str, Any]:
    parent, _, own_id = path.rpartition("/")
    return {"resource_type": kind, "id": own_id, "display_name": display_name, "path": path,
            "relative_path": own_id, "parent_path": parent, "unique_id": _stable_uuid(path), **AUDIT, **fields}


def _stable_uuid(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nsx-lab:" + text))


class State:
    def __init__(self, config: dict[str, Any], lab_dir: Path) -> None:
        self.user: str = config["user"]
        self.password = os.environ.get("DSFLEET_LAB_NSX_PASSWORD", "")
        self.page_cap: int = config.get("page_size", 2)
        self.lists: dict[str, list[dict[str, Any]]] = {}
        policies = []
        for p in config["policies"]:
            path = f"/infra/domains/{p['domain']}/endpoint-policies/{p['id']}"
            policies.append(_policy_object("EndpointPolicy", path, p["display_name"], sequence_number=p["sequence"]))
            self.lists[f"/infra/domains/{p['domain']}/endpoint-policies/{p['id']}/endpoint-rules"] = [
                _policy_object("EndpointRule", f"{path}/endpoint-rules/{r['id']}", r["display_name"],
                               sequence_number=r["sequence"], groups=r["groups"],
                               service_profiles=r["service_profiles"]) for r in p["rules"]]
        self.lists["/infra/domains/endpoint-policies"] = policies
        for group_path, vms in config["members"].items():
            self.lists[f"{group_path}/members/virtual-machines"] = [_realized_vm(vm) for vm in vms]
        # NSX-V: one security group per endpoint protection group, bound to one service profile.
        self.security_groups = {f"securitygroup-{10 + i}": path for i, path in enumerate(config["members"])}
        self.members = config["members"]
        self.morefs = Path(config["morefs"]) if config.get("morefs") else None
        self.log = open(lab_dir / "requests-nsx.log", "a", encoding="utf-8", buffering=1)
        self.lock = threading.Lock()

    def record(self, line: str) -> None:
        with self.lock:
            self.log.write(line + "\n")


def _realized_vm(vm: dict[str, Any]) -> dict[str, Any]:
    """A RealizedVirtualMachine as NSX reports a vSphere VM: ``compute_ids`` carry its vSphere identities."""
    return {"resource_type": "RealizedVirtualMachine", "id": vm["instance_uuid"], "display_name": vm["name"],
            "host_id": _stable_uuid(vm["host"]), "local_id_on_host": vm["moref_on_host"],
            "power_state": vm["power_state"], "state": "REALIZED",
            "compute_ids": [f"moIdOnHost:{vm['moref_on_host']}", f"hostLocalId:{vm['moref_on_host']}",
                            f"locationId:{_stable_uuid(vm['name'] + '/location')}",
                            f"instanceUuid:{vm['instance_uuid']}", f"externalId:{vm['instance_uuid']}",
                            f"biosUuid:{vm['bios_uuid']}"]}


def _error(code: int, message: str) -> dict[str, Any]:
    """NSX's error body (PolicyApiError's fields), as the Manager answers a failed call."""
    return {"error_code": code, "module_name": "common-services", "error_message": message}


class Handler(BaseHTTPRequestHandler):
    state: State
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.state.user}:{self.state.password}".encode()).decode()
        return header.startswith("Basic ") and secrets.compare_digest(header[6:], expected)

    def do_GET(self) -> None:  # noqa: N802
        self.state.record(f"GET {self.path}")
        if not self._authorized():
            self._send(403, _error(403, "The credentials were incorrect or the account specified has been "
                                              "locked."))
            return
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if path.startswith("/api/2.0/"):
            self._nsxv(path)
            return
        if not path.startswith(PREFIX) or not any(r.match(path[len(PREFIX):]) for r, _ in ROUTES):
            self._send(404, _error(500090, f"The requested URI: {parts.path} could not be found."))
            return
        items = self.state.lists.get(path[len(PREFIX):])
        if items is None:  # a route with an unknown policy or group id
            self._send(404, _error(500012, f"The path={path[len(PREFIX):]} is invalid."))
            return
        query = parse_qs(parts.query)
        try:
            size = min(int(query.get("page_size", ["1000"])[0]), self.state.page_cap)
            start = int(base64.b64decode(query["cursor"][0]).decode()) if "cursor" in query else 0
        except ValueError:
            self._send(400, _error(255, "Invalid cursor or page_size."))
            return
        page = items[start:start + size]
        body: dict[str, Any] = {"results": page, "result_count": len(items), "sort_by": "display_name",
                                "sort_ascending": True}
        if start + size < len(items):
            body["cursor"] = base64.b64encode(str(start + size).encode()).decode()
        self._send(200, body)

    def _nsxv(self, path: str) -> None:
        state = self.state
        if path == "/api/2.0/si/serviceprofiles":
            xml = ("<serviceProfiles><serviceProfile><objectId>serviceprofile-1</objectId><name>Default (EBT)</name>"
                   "<service><objectId>service-6</objectId><name>Trend Micro Deep Security</name></service>"
                   "<status>IN_SERVICE</status></serviceProfile></serviceProfiles>")
        elif path == "/api/2.0/si/serviceprofile/serviceprofile-1/binding":
            xml = ("<serviceProfileBinding><distributedVirtualPortGroups/><virtualWires/><excludedVnics/>"
                   "<securityGroups>" + "".join(f"<string>{g}</string>" for g in state.security_groups)
                   + "</securityGroups></serviceProfileBinding>")
        elif (m := re.match(r"^/api/2\.0/services/securitygroup/([^/]+)/translation/virtualmachines$", path)) \
                and m.group(1) in state.security_groups and state.morefs is not None:
            morefs = json.loads(state.morefs.read_text())
            xml = "<vmnodes>" + "".join(
                f"<vmnode><vmId>{morefs[vm['name']]}</vmId><vmName>{escape(vm['name'])}</vmName></vmnode>"
                for vm in state.members[state.security_groups[m.group(1)]]) + "</vmnodes>"
        else:
            self._send(404, _error(404, f"The requested URI: {path} could not be found."))
            return
        data = xml.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self) -> None:
        self.state.record(f"{self.command} {self.path}")
        self._send(405, _error(98, f"Method {self.command} is not allowed by the lab."))

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # noqa: N815


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    state = State(config, Path(config_path).resolve().parent)
    handler = type("H", (Handler,), {"state": state})
    https.serve(config, handler)


if __name__ == "__main__":
    main(sys.argv[1])
