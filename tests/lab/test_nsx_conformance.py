"""The NSX Manager stand-in speaks the published NSX Policy API: every answer the suite reads is checked, field by
field, against the structure definitions of VMware's NSX Policy Python SDK 4.2.0, kept as data in
../shared/reference/nsx_policy_4.2.0.json (tests/lab/schemas/SOURCES.md says where it comes from): no field the
schema does not define, every value of its type, enum values from the schema. Skipped, with the reason, when the
schema is not there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from dsfleet.nsx import ENDPOINT_POLICIES, NsxClient
from lab.run import ENV_NSX_PASSWORD, NSX_USER

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "nsx_policy_4.2.0.json"
SCALARS: dict[str, Any] = {"string": str, "integer": int, "boolean": bool, "number": (int, float), "object": dict}


@pytest.fixture(scope="module")
def types() -> dict[str, Any]:
    if not SCHEMA_FILE.is_file():
        pytest.skip(f"the NSX Policy schema is not available at {SCHEMA_FILE} (see tests/lab/schemas/SOURCES.md)")
    return dict(json.loads(SCHEMA_FILE.read_text())["types"])


def problems(value: Any, spec: Any, types: dict[str, Any], where: str) -> list[str]:
    """Every way ``value`` departs from ``spec`` (the schema file's notation), each naming the JSON path."""
    if isinstance(spec, str):
        wanted = SCALARS[spec]
        ok = isinstance(value, wanted) and not (isinstance(value, bool) and spec in ("integer", "number"))
        return [] if ok else [f"{where}: expected {spec}, got {value!r}"]
    if "list" in spec:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        return [p for i, v in enumerate(value) for p in problems(v, spec["list"], types, f"{where}[{i}]")]
    struct = types[spec["ref"]]
    if not isinstance(value, dict):
        return [f"{where}: expected {spec['ref']}, got {value!r}"]
    fields = struct["fields"]
    out = [f"{where}.{k}: not a field of {spec['ref']}" for k in value if k not in fields]
    out += [f"{where}.{k}: required by {spec['ref']}" for k, f in fields.items() if f["required"] and k not in value]
    for key, v in value.items():
        if key in fields and v is not None:
            out += problems(v, fields[key]["type"], types, f"{where}.{key}")
            if "enum" in fields[key] and v not in fields[key]["enum"]:
                out.append(f"{where}.{key}: {v!r} is not one of {fields[key]['enum']}")
    return out


def pages(lab: Any, path: str) -> list[dict[str, Any]]:
    """Every page of one list, read along its cursors as a plain HTTP client would."""
    url = (lab.dir / "nsx.ready").read_text().strip()
    auth = (NSX_USER, lab.env[ENV_NSX_PASSWORD])
    out, params = [], {"page_size": 1000}
    while True:
        response = requests.get(url + path, params=params, auth=auth, verify=str(lab.dir / "ca.pem"), timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        out.append(response.json())
        if "cursor" not in out[-1]:
            return out
        params = {"page_size": 1000, "cursor": out[-1]["cursor"]}


def test_every_answer_conforms_to_the_policy_sdk_schema(start_lab: Any, types: dict[str, Any]) -> None:
    lab = start_lab("engine-offline")
    checked = 0
    policies = pages(lab, ENDPOINT_POLICIES)
    for page in policies:
        assert problems(page, {"ref": "EndpointPolicyListResult"}, types, "endpoint-policies") == []
    for policy in (p for page in policies for p in page["results"]):
        rules = pages(lab, f"/policy/api/v1{policy['path']}/endpoint-rules")
        for page in rules:
            assert problems(page, {"ref": "EndpointRuleListResult"}, types, "endpoint-rules") == []
        for group in {g for page in rules for r in page["results"] for g in r["groups"]}:
            members = pages(lab, f"/policy/api/v1{group}/members/virtual-machines")
            assert len(members) > 1  # the lab pages for real
            for page in members:
                assert problems(page, {"ref": "RealizedVirtualMachineListResult"}, types, group) == []
                checked += len(page["results"])
    assert checked == sum(1 for vm in lab.fleet.vms if vm.kind == "windows" and vm.nsx_tag)


def test_error_bodies_conform_and_only_get_is_served(start_lab: Any, types: dict[str, Any]) -> None:
    lab = start_lab("healthy")
    url = (lab.dir / "nsx.ready").read_text().strip()
    ca = str(lab.dir / "ca.pem")
    denied = requests.get(url + ENDPOINT_POLICIES, auth=(NSX_USER, "wrong"), verify=ca, timeout=10)
    missing = requests.get(url + "/policy/api/v1/infra/domains/default/groups/nope/members/virtual-machines",
                           auth=(NSX_USER, lab.env[ENV_NSX_PASSWORD]), verify=ca, timeout=10)
    post = requests.post(url + ENDPOINT_POLICIES, auth=(NSX_USER, lab.env[ENV_NSX_PASSWORD]), verify=ca, timeout=10)
    assert (denied.status_code, missing.status_code, post.status_code) == (403, 404, 405)
    for response in (denied, missing, post):
        assert problems(response.json(), {"ref": "PolicyApiError"}, types, "error") == []


def test_the_client_reads_the_stand_in_whole(start_lab: Any) -> None:
    lab = start_lab("healthy")
    client = NsxClient((lab.dir / "nsx.ready").read_text().strip(), NSX_USER, lab.env[ENV_NSX_PASSWORD],
                       verify=str(lab.dir / "ca.pem"), timeout_s=10)
    members = list(client.list_all("/policy/api/v1/infra/domains/default/groups/DS-cl-prod/members/virtual-machines"))
    assert [m["display_name"] for m in members] == [f"WIN-0{h}-0{i}" for h in (1, 2) for i in (1, 2, 3)]
    assert client.calls == 3  # a page cap of 2 in the lab: 6 members in 3 pages
