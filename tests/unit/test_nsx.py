"""NSX Manager client over real HTTP (cursor paging that does not trust the server, redirects refused, auth and
HTTP errors in plain words), reading NSX-T and NSX-V answers, and the join of NSX members to vCenter VMs."""

from __future__ import annotations

import json
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from dsfleet.errors import AuthError, GatherError
from dsfleet.fleet import Fleet, Unavailable
from dsfleet.nsx import NsxClient, read_nsxt, read_nsxv
from dsfleet.snapshot import NsxFacts

from .conftest import Serve
from .test_snapshot_join import sample, vm

Script = Callable[[str, dict[str, list[str]]], tuple[int, Any, dict[str, str]]]
GROUP = "/infra/domains/default/groups/DS-Protected"
MEMBERS = f"/policy/api/v1{GROUP}/members/virtual-machines"


@pytest.fixture
def server(serve_http: Serve) -> Iterator[Callable[[Script], tuple[str, list[str]]]]:
    def start(script: Script) -> tuple[str, list[str]]:
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                seen.append(self.path)
                parts = urlsplit(self.path)
                status, body, headers = script(parts.path, parse_qs(parts.query))
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return serve_http(Handler), seen

    yield start


def client(url: str, **kwargs: Any) -> NsxClient:
    return NsxClient(url, "audit", "secret", timeout_s=5, **kwargs)


def paged(items: list[dict[str, Any]], size: int = 2) -> Script:
    def script(path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        start = int(query.get("cursor", ["0"])[0])
        body: dict[str, Any] = {"results": items[start:start + size], "result_count": len(items)}
        if start + size < len(items):
            body["cursor"] = str(start + size)
        return 200, body, {}
    return script


def test_pages_along_the_cursor_to_the_page_without_one(server: Any) -> None:
    url, seen = server(paged([{"id": str(i)} for i in range(5)]))
    c = client(url, page_size=2)
    assert [r["id"] for r in c.list_all(MEMBERS)] == ["0", "1", "2", "3", "4"] and c.calls == 3
    assert seen[1].endswith("page_size=2&cursor=2")


@pytest.mark.parametrize("body, reason", [
    ({"results": [{"id": "a"}], "cursor": "same"}, "returned cursor 'same' again after 2 items (it repeats a page)"),
    ({"results": [], "cursor": "x"}, "a page with no results but a cursor (no progress after 0 items)"),
    ({"results": [{"id": "a"}], "result_count": 3}, "read 1 items but the NSX Manager counts 3"),
    ({"results": "nope"}, "'results' is not a list of objects"),
])
def test_a_server_that_pages_wrongly_is_an_error_never_a_loop(server: Any, body: Any, reason: str) -> None:
    url, seen = server(lambda path, query: (200, body, {}))
    with pytest.raises(GatherError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        list(client(url).list_all(MEMBERS))
    assert len(seen) <= 2


def test_more_items_than_the_bound_stops(server: Any) -> None:
    url, _ = server(paged([{"id": str(i)} for i in range(10)], size=3))
    with pytest.raises(GatherError, match="more than 4 items: stopped"):
        list(client(url, max_items=4).list_all(MEMBERS))


def test_a_redirect_is_refused_naming_the_target(server: Any) -> None:
    url, seen = server(lambda path, query: (302, "", {"Location": "https://elsewhere.example:8443/login"}))
    with pytest.raises(GatherError, match="answered 302 redirecting to elsewhere.example:8443: not followed"):
        client(url).get_json(MEMBERS)
    assert len(seen) == 1


def test_auth_and_http_errors_are_one_line(server: Any) -> None:
    url, _ = server(lambda path, query: (403, {"error_code": 403, "error_message": "The credentials were incorrect"},
                                         {"Content-Type": "application/json"}))
    with pytest.raises(AuthError, match="answered 403 to GET .*: The credentials were incorrect"):
        client(url).get_json(MEMBERS)
    url, _ = server(lambda path, query: (404, {"error_message": "not found"}, {}))
    with pytest.raises(GatherError, match="HTTP 404 Not Found from 127.0.0.1"):
        client(url).get_json(MEMBERS)


def test_connection_refused_is_plain(server: Any) -> None:
    url, _ = server(paged([]))
    with pytest.raises(GatherError, match="connection refused"):
        client(url.rsplit(":", 1)[0] + ":1").get_json(MEMBERS)


def nsxt_script(members: list[dict[str, Any]], fail_group: str | None = None) -> Script:
    answers = {
        "/policy/api/v1/infra/domains/endpoint-policies": [
            {"id": "ds", "path": "/infra/domains/default/endpoint-policies/ds"},
            {"id": "old", "path": "/infra/domains/default/endpoint-policies/old", "marked_for_delete": True}],
        "/policy/api/v1/infra/domains/default/endpoint-policies/ds/endpoint-rules": [
            {"id": "r1", "path": "/infra/domains/default/endpoint-policies/ds/endpoint-rules/r1",
             "groups": [GROUP, "/infra/domains/default/groups/DS-DMZ"], "service_profiles": ["/infra/sp/ebt"]}],
        MEMBERS: members,
        "/policy/api/v1/infra/domains/default/groups/DS-DMZ/members/virtual-machines": [],
    }

    def script(path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        if fail_group and path.endswith(f"/{fail_group}/members/virtual-machines"):
            return 500, {"error_message": "internal"}, {}
        return (200, {"results": answers[path]}, {}) if path in answers else (404, {}, {})
    return script


RVM = {"id": "5003-i1", "display_name": "WIN-1", "compute_ids": ["moIdOnHost:5", "instanceUuid:5003-I1",
                                                                "biosUuid:4203-B1"]}


def test_nsxt_reads_rules_groups_and_members(server: Any) -> None:
    url, seen = server(nsxt_script([RVM, {"id": "x", "display_name": "bare", "compute_ids": ["moIdOnHost:9"]}]))
    facts = NsxFacts(configured=True, url=url)
    read_nsxt(client(url), facts)
    assert facts.policies == ["/infra/domains/default/endpoint-policies/ds"]  # the deleted one is skipped
    assert [(g.name, g.members, g.service_profiles) for g in facts.groups] == [
        ("DS-DMZ", 0, ["/infra/sp/ebt"]), ("DS-Protected", 2, ["/infra/sp/ebt"])]
    assert [(v.name, v.instance_uuid, v.bios_uuid, v.groups) for v in facts.vms] == [
        ("WIN-1", "5003-i1", "4203-b1", [GROUP])]
    assert facts.unreadable == [f"member 'bare' of group {GROUP}: no instanceUuid or biosUuid in compute_ids, it "
                                f"cannot be tied to a vCenter VM"]
    assert len(seen) == 4


def test_nsxv_reads_profiles_bindings_and_security_groups(server: Any) -> None:
    xml = {"/api/2.0/si/serviceprofiles": "<serviceProfiles><serviceProfile><objectId>serviceprofile-1</objectId>"
                                          "<name>Default (EBT)</name></serviceProfile></serviceProfiles>",
           "/api/2.0/si/serviceprofile/serviceprofile-1/binding":
               "<serviceProfileBinding><virtualWires/><securityGroups><string>securitygroup-30</string>"
               "</securityGroups></serviceProfileBinding>",
           "/api/2.0/services/securitygroup/securitygroup-30/translation/virtualmachines":
               "<vmnodes><vmnode><vmName>WIN-1</vmName><vmId>vm-1</vmId></vmnode></vmnodes>"}
    url, _ = server(lambda path, query: (200, xml[path], {"Content-Type": "application/xml"}))
    facts = NsxFacts(configured=True, url=url)
    read_nsxv(client(url), facts)
    assert [(g.path, g.members) for g in facts.groups] == [("securitygroup-30", 1)]
    assert [(v.id, v.name, v.groups) for v in facts.vms] == [("vm-1", "WIN-1", ["securitygroup-30"])]


def fleet_with(facts: NsxFacts) -> Fleet:
    snap = sample()
    snap.nsx = facts
    return Fleet(snap)


def test_join_by_instance_uuid_then_bios_uuid(server: Any) -> None:
    url, _ = server(nsxt_script([RVM]))
    facts = NsxFacts(configured=True, url=url)
    read_nsxt(client(url), facts)
    f = fleet_with(facts)
    by_instance = f.nsx_membership(replace(vm("vc/vm-1", "WIN-1", "other"), instance_uuid="5003-I1"))
    assert by_instance.covered and by_instance.matched_by == "instance UUID 5003-i1"
    by_bios = f.nsx_membership(vm("vc/vm-1", "WIN-1", "4203-B1"))
    assert by_bios.covered and by_bios.matched_by == "BIOS UUID 4203-b1"
    outside = f.nsx_membership(vm("vc/vm-2", "WIN-2", "4203-B2"))
    assert outside.covered is False and outside.observed == (
        f"not in any of the NSX groups DS-DMZ (/infra/domains/default/groups/DS-DMZ), DS-Protected ({GROUP}) (the "
        f"endpoint protection rules' groups, NSX Manager {url})")


def test_an_unread_group_makes_a_missing_vm_unknown_not_a_finding(server: Any) -> None:
    url, _ = server(nsxt_script([RVM], fail_group="DS-DMZ"))
    facts = NsxFacts(configured=True, url=url)
    read_nsxt(client(url), facts)
    f = fleet_with(facts)
    assert f.nsx_membership(vm("vc/vm-1", "WIN-1", "4203-B1")).covered is True
    unknown = f.nsx_membership(vm("vc/vm-2", "WIN-2", "4203-B2"))
    assert unknown.covered is None and "not read: members of group /infra/domains/default/groups/DS-DMZ: GET " in \
        unknown.observed


def test_no_endpoint_rule_is_said_so() -> None:
    f = fleet_with(NsxFacts(configured=True, url="https://nsx"))
    membership = f.nsx_membership(vm("vc/vm-1", "WIN-1", "U1"))
    assert membership.covered is False and membership.observed == (
        "no endpoint-protection group applies: NSX Manager https://nsx lists no endpoint protection rule with a group")


@pytest.mark.parametrize("facts, reason", [
    (NsxFacts(), "configure nsx.url (nsx: {type, url, user, password_env}) in the inventory"),
    (NsxFacts(configured=True, url="https://nsx", error="timed out during connect"),
     "NSX Manager https://nsx was not read: timed out during connect"),
])
def test_without_nsx_facts_membership_is_unavailable(facts: NsxFacts, reason: str) -> None:
    with pytest.raises(Unavailable, match=reason.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        fleet_with(facts).nsx_membership(vm("vc/vm-1", "WIN-1", "U1"))
