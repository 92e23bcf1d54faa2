"""The DSM stand-in speaks the real API: Trend Micro's own SDK (deep-security-api) deserializes every answer."""

from __future__ import annotations

from typing import Any

import deepsecurity
import pytest
import requests

from dsfleet.dsm import DsmClient
from dsfleet.gather import DSM_EXPAND


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
