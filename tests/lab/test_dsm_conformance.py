"""The DSM stand-in speaks the real API: Trend Micro's own SDK (deep-security-api) deserializes every answer."""

from __future__ import annotations

from typing import Any

import deepsecurity
import pytest
import requests

from dsfleet.dsm import DsmClient
from dsfleet.errors import GatherError
from dsfleet.gather import DSM_EXPAND, computer_from_api


def sdk(lab: Any) -> deepsecurity.ApiClient:
    config = deepsecurity.Configuration()
    config.host = (lab.dir / "dsm.ready").read_text().strip() + "/api"
    config.api_key["api-secret-key"] = lab.env["DSFLEET_LAB_DSM_KEY"]
    config.verify_ssl = True  # the SDK defaults to False; the conformance test verifies like the suite does
    config.ssl_ca_cert = str(lab.dir / "ca.pem")
    return deepsecurity.ApiClient(config)


def test_search_computers_deserializes_with_the_sdk(start_lab: Any) -> None:
    lab = start_lab("engine-offline")
    api = deepsecurity.ComputersApi(sdk(lab))
    expand = deepsecurity.Expand(*DSM_EXPAND)
    criteria = deepsecurity.SearchCriteria(id_value=0, id_test="greater-than")
    page = api.search_computers("v1", search_filter=deepsecurity.SearchFilter(
        max_items=4, search_criteria=[criteria], sort_by_object_id=True), expand=expand.list())
    assert [c.id for c in page.computers] == [1, 2, 3, 4]
    everyone = api.search_computers("v1", search_filter=deepsecurity.SearchFilter(
        max_items=5000, search_criteria=[criteria], sort_by_object_id=True), expand=expand.list()).computers
    assert len(everyone) == len(lab.fleet.computers)
    offline = [c for c in everyone if c.computer_status.appliance_status_messages == ["Anti-Malware Engine Offline"]]
    assert offline and all(c.anti_malware.state == "on" for c in offline)
    relay = everyone[0]
    assert relay.computer_settings.platform_setting_relay_state.value == "true"
    vm = next(c for c in everyone if c.vmware_vm_virtual_machine_summary is not None)
    assert vm.vmware_vm_virtual_machine_summary.bios_uuid


def test_expand_returns_only_what_was_asked(start_lab: Any) -> None:
    lab = start_lab("healthy")
    api = deepsecurity.ComputersApi(sdk(lab))
    one = api.describe_computer(1, "v1", expand=["computerStatus"])
    assert one.computer_status is not None and one.anti_malware is None and one.computer_settings is None
    assert one.agent_version and one.host_name


def test_system_setting_deserializes(start_lab: Any) -> None:
    lab = start_lab("healthy")
    api = deepsecurity.SystemSettingsApi(sdk(lab))
    mode = api.describe_system_setting("platformSettingUpdateSecurityPrimarySourceMode", "v1")
    url = api.describe_system_setting("platformSettingUpdateSecurityPrimarySourceUrl", "v1")
    assert mode.value == "Other Update Source" and url.value.endswith("/iau_server.dll")


def test_auth_and_headers_are_enforced(start_lab: Any) -> None:
    lab = start_lab("healthy")
    url = (lab.dir / "dsm.ready").read_text().strip()
    ca = str(lab.dir / "ca.pem")
    key = lab.env["DSFLEET_LAB_DSM_KEY"]
    body = {"maxItems": 1}
    assert requests.post(f"{url}/api/computers/search", json=body, verify=ca,
                         headers={"api-secret-key": "wrong", "api-version": "v1"}).status_code == 401
    assert requests.post(f"{url}/api/computers/search", json=body, verify=ca,
                         headers={"Authorization": f"ApiKey {key}", "api-version": "v1"}).status_code == 401
    assert requests.post(f"{url}/api/computers/search", json=body, verify=ca,
                         headers={"api-secret-key": key}).status_code == 400
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/rest/managerInfo/version", verify=True)


def test_client_pages_through_injected_429s(start_lab: Any) -> None:
    lab = start_lab("healthy", dsm_throttle_every=2)
    lab_url = (lab.dir / "dsm.ready").read_text().strip()
    client = DsmClient(base_url=lab_url, api_key=lab.env["DSFLEET_LAB_DSM_KEY"], auth_style="api-secret-key",
                       verify=str(lab.dir / "ca.pem"), sleep=lambda s: None)
    ids = [c["ID"] for c in client.search_computers(DSM_EXPAND, page_size=3)]
    assert ids == sorted(c["ID"] for c in lab.fleet.computers)
    assert client.calls > len(ids) // 3 + 1  # some calls were answered 429 and retried


# -- runtime faults (faults.json "dsm") and the request log ---------------------------------------------


def lab_client(lab: Any) -> DsmClient:
    return DsmClient(base_url=(lab.dir / "dsm.ready").read_text().strip(), api_key=lab.env["DSFLEET_LAB_DSM_KEY"],
                     auth_style="api-secret-key", verify=str(lab.dir / "ca.pem"), sleep=lambda s: None)


def searches(lab: Any) -> int:
    return (lab.dir / "requests-dsm.log").read_text().splitlines().count("POST /api/computers/search")


def test_short_pages_still_deserialize_and_a_correct_client_reads_everyone(start_lab: Any) -> None:
    lab = start_lab("engine-offline")
    lab.set_faults({"dsm": {"paging": "short"}})
    api = deepsecurity.ComputersApi(sdk(lab))
    page = api.search_computers("v1", search_filter=deepsecurity.SearchFilter(
        max_items=4, search_criteria=[deepsecurity.SearchCriteria(id_value=0, id_test="greater-than")],
        sort_by_object_id=True), expand=deepsecurity.Expand(*DSM_EXPAND).list())
    assert [c.id for c in page.computers] == [1, 2]  # fewer than asked for, although more exist
    before = searches(lab)
    ids = [c["ID"] for c in lab_client(lab).search_computers(DSM_EXPAND, page_size=4)]
    assert ids == sorted(c["ID"] for c in lab.fleet.computers)
    assert searches(lab) - before == -(-len(ids) // 2) + 1  # pages of 2, then the empty page


@pytest.mark.parametrize("paging", ["repeat", "ignore-cursor"])
def test_a_server_that_ignores_the_cursor_is_an_error(start_lab: Any, paging: str) -> None:
    lab = start_lab("healthy")
    lab.set_faults({"dsm": {"paging": paging}})
    with pytest.raises(GatherError, match="asked for ids after 3, the DSM returned computer 1 again"):
        list(lab_client(lab).search_computers(DSM_EXPAND, page_size=3))
    assert searches(lab) == 2
    lab.set_faults({})
    assert len(list(lab_client(lab).search_computers(DSM_EXPAND, page_size=3))) == len(lab.fleet.computers)


def test_a_malformed_record_keeps_its_good_fields(start_lab: Any) -> None:
    lab = start_lab("healthy")
    lab.set_faults({"dsm": {"malformed": [{"id": 2, "field": "computerStatus", "value": "online"},
                                          {"id": 3, "field": "agentVersion", "value": 20}]}})
    computers = [computer_from_api(raw, n) for n, raw in
                 enumerate(lab_client(lab).search_computers(DSM_EXPAND), 1)]
    problems = {c.id: c.problems for c in computers if c.problems}
    assert problems == {2: ["DSM computer 2: computerStatus: expected an object, got 'online'"],
                        3: ["DSM computer 3: agentVersion: expected a string, got 20"]}
    assert computers[1].host_name and computers[2].agent_status  # the other fields survive


def test_every_request_is_logged_and_counted_whatever_its_method(start_lab: Any) -> None:
    lab = start_lab("healthy")
    url = (lab.dir / "dsm.ready").read_text().strip()
    ca = str(lab.dir / "ca.pem")
    headers = {"api-secret-key": lab.env["DSFLEET_LAB_DSM_KEY"], "api-version": "v1"}
    statuses = [requests.request(method, f"{url}{path}", headers=headers, verify=ca, timeout=10).status_code
                for method, path in [("PUT", "/api/computers/1"), ("DELETE", "/api/computers/1"),
                                     ("PATCH", "/api/systemsettings/x"), ("OPTIONS", "/"),
                                     ("GET", "/no/such/path"), ("POST", "/api/computers/1")]]
    assert statuses == [405, 405, 405, 405, 404, 405]
    stats = requests.get(f"{url}/__lab/stats", verify=ca, timeout=10).json()
    log = (lab.dir / "requests-dsm.log").read_text().splitlines()
    expected = ["PUT /api/computers/1", "DELETE /api/computers/1", "PATCH /api/systemsettings/x", "OPTIONS /",
                "GET /no/such/path", "POST /api/computers/1"]
    assert log[-7:] == [*expected, "GET /__lab/stats"]
    assert all(stats["calls"][line] == 1 for line in expected) and stats["total"] == len(log)


def test_security_updates_deserialize_and_reduce_as_the_sdk_reads_them(start_lab: Any) -> None:
    """UPD-005's facts: the SDK's SecurityUpdates / UpdateStatus / Component models read what the stand-in
    serves, in the same paged search, and dsfleet's reduction agrees with them field by field."""
    lab = start_lab("update-failed")
    api = deepsecurity.ComputersApi(sdk(lab))
    everyone = api.search_computers("v1", search_filter=deepsecurity.SearchFilter(
        max_items=5000, search_criteria=[deepsecurity.SearchCriteria(id_value=0, id_test="greater-than")],
        sort_by_object_id=True), expand=deepsecurity.Expand(*DSM_EXPAND).list()).computers
    ours = {c.id: c for c in (computer_from_api(raw, n) for n, raw in
                              enumerate(lab_client(lab).search_computers(DSM_EXPAND), 1))}
    takers = [c for c in everyone if c.security_updates is not None]
    assert {c.display_name for c in takers} >= {"relay-01", "relay-02", "app-win-01", "LNX-02-01"}
    for c in takers:
        mine = ours[c.id]
        assert isinstance(c.security_updates.last_changed, int) and not mine.problems
        assert (mine.update_status, mine.update_message, mine.update_last_changed_ms) == (
            c.security_updates.update_status.status, c.security_updates.update_status.status_message,
            c.security_updates.last_changed)
        assert [(m.name, m.version, m.latest, m.platform) for m in mine.am_components] == [
            (m.name, m.version, m.latest, m.platform) for m in c.security_updates.anti_malware]
    relay = next(c for c in takers if c.display_name == "relay-02")
    assert relay.security_updates.update_status.status == "error"
    assert "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE" in relay.security_updates.update_status.status_message
    assert [m.latest for m in relay.security_updates.anti_malware] == [False, True, True]
    # Only when asked for: securityUpdates is an expandable part of the record.
    assert api.describe_computer(relay.id, "v1", expand=["computerStatus"]).security_updates is None
