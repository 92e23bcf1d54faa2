"""Snapshot round trip and strict loading; the DSM ↔ vCenter join; vCenter continuation paging."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyVmomi import vim

from dsfleet import snapshot, vcenter
from dsfleet.errors import InputError
from dsfleet.join import join
from dsfleet.snapshot import (DsmComputer, DsmFacts, InventoryRef, JoinResult, Snapshot, VcenterFacts, VcHost,
                              VcVm)


def computer(cid: int, name: str, uuid: str | None = None) -> DsmComputer:
    return DsmComputer(id=cid, host_name=f"{name.lower()}.corp.local", display_name=name, platform="", agent_version=None,
                       relay_list_id=0, is_relay=False, appliance_protected=True, bios_uuid=uuid, agent_status=None,
                       agent_messages=[], appliance_status=None, appliance_messages=[], am_state="on", am_messages=[],
                       vm_state=None)


def vm(key: str, name: str, uuid: str | None = None, template: bool = False) -> VcVm:
    return VcVm(key=key, name=name, host_key="vc/host-1", power_state="poweredOn", uuid=uuid, instance_uuid=None,
                guest_id="windows2019srv_64Guest", guest_family="windowsGuest", tools_running="guestToolsRunning",
                tools_version_status="guestToolsCurrent", guest_hostname=None, template=template)


def sample() -> Snapshot:
    return Snapshot(
        schema=snapshot.SCHEMA, version=snapshot.VERSION, created_utc="2026-11-21T00:00:00+00:00", gather_seconds=1.5,
        inventory=InventoryRef(name="t", path="t.yml", sha256="0" * 64, nsx="nsx-t", scope_clusters=[], scope_hosts=[],
                               dsva_vm_pattern="^Trend Micro", include_unmatched_agents=True, tls_exceptions=[]),
        dsm=DsmFacts(url="https://dsm", auth="api-secret-key", tls_verify=True, computers=[computer(1, "WIN-1", "U1")]),
        vcenters=[VcenterFacts(name="vc", url="https://vc/sdk", tls_verify=True,
                               hosts=[VcHost("vc/host-1", "esx-01", "cl", "connected", False, "ESXi")],
                               vms=[vm("vc/vm-1", "WIN-1", "U1")])],
        join=JoinResult(), relay_groups=[])


def test_round_trip(tmp_path: Path) -> None:
    snap = sample()
    sha = snap.write(tmp_path / "s.json")
    loaded, sha2 = snapshot.load(tmp_path / "s.json")
    assert loaded == snap and sha == sha2


@pytest.mark.parametrize("edit,field,expected", [
    (lambda d: d.update(schema="other"), "schema", "'dsfleet-snapshot'"),
    (lambda d: d.update(version=99), "version", "1 (this dsfleet reads snapshot version 1)"),
    (lambda d: d["dsm"]["computers"][0].update(id="1"), "dsm.computers[0].id", "int"),
    (lambda d: d["vcenters"][0]["vms"][0].pop("uuid"), "vcenters[0].vms[0].uuid", "present (required)"),
    (lambda d: d["dsm"].update(password="x"), "dsm.password", "no such field"),
])
def test_bad_snapshots_name_the_field(tmp_path: Path, edit: Any, field: str, expected: str) -> None:
    data = json.loads(sample().to_json())
    edit(data)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        snapshot.load(path)
    assert str(err.value).startswith(f"{path}: {field}: expected {expected}")


def test_join_prefers_uuid_then_name_and_reports_leftovers() -> None:
    computers = [computer(1, "renamed-in-dsm", "AAA"), computer(2, "WIN-2"), computer(3, "ghost"),
                 computer(4, "twin")]
    vms = [vm("vc/1", "WIN-1", "aaa"), vm("vc/2", "win-2"), vm("vc/3", "orphan"), vm("vc/4", "twin"),
           replace(vm("vc/5", "other"), guest_hostname="twin.corp.local"), vm("vc/6", "tpl", template=True)]
    result = join(computers, vms)
    assert {(m.computer_id, m.vm_key, m.method) for m in result.matches} == {(1, "vc/1", "uuid"), (2, "vc/2", "name")}
    assert result.unmatched_computers == [3, 4]
    assert result.unmatched_vms == ["vc/3", "vc/4", "vc/5"]
    assert any("twin" in note and "2 VMs" in note for note in result.ambiguous)


class ScriptedCollector:
    """Answers RetrievePropertiesEx in pages, as a vCenter does when maxObjects is smaller than the result."""

    def __init__(self, pages: list[list[Any]]) -> None:
        self.pages, self.calls = pages, []

    def RetrievePropertiesEx(self, specs: Any, options: Any) -> Any:  # noqa: N802 - vSphere method name
        self.calls.append(("RetrievePropertiesEx", options.maxObjects))
        return self._page(0)

    def ContinueRetrievePropertiesEx(self, token: str) -> Any:  # noqa: N802
        self.calls.append(("ContinueRetrievePropertiesEx", token))
        return self._page(int(token))

    def _page(self, i: int) -> Any:
        return SimpleNamespace(objects=self.pages[i], token=str(i + 1) if i + 1 < len(self.pages) else None)


def test_retrieve_follows_continuation_tokens() -> None:
    destroyed = []

    class View(vim.view.ContainerView):  # type: ignore[misc]
        def Destroy(self) -> None:  # noqa: N802 - vSphere method name
            destroyed.append(True)

    view = View("session[lab]view-1")
    collector = ScriptedCollector([["a", "b"], ["c", "d"], ["e"]])
    content = SimpleNamespace(rootFolder=None, propertyCollector=collector,
                              viewManager=SimpleNamespace(CreateContainerView=lambda *a: view))
    assert list(vcenter.retrieve(content, page_size=2)) == ["a", "b", "c", "d", "e"]
    assert collector.calls == [("RetrievePropertiesEx", 2), ("ContinueRetrievePropertiesEx", "1"),
                               ("ContinueRetrievePropertiesEx", "2")]
    assert destroyed == [True]


def test_facts_from_objects_tolerates_missing_properties() -> None:
    host = vim.HostSystem("host-1")
    objects = [SimpleNamespace(obj=host, propSet=[SimpleNamespace(name="name", val="esx-01")]),
               SimpleNamespace(obj=vim.VirtualMachine("vm-1"), propSet=[SimpleNamespace(name="name", val="W"),
                                                                        SimpleNamespace(name="runtime.host", val=host)])]
    hosts, vms = vcenter.facts_from_objects("vc", iter(objects))
    assert hosts[0].name == "esx-01" and hosts[0].cluster is None
    assert vms[0].host_key == "vc/host-1" and vms[0].power_state is None and vms[0].tools_running is None


def test_ssl_context_verifies_unless_turned_off() -> None:
    import ssl
    assert vcenter.ssl_context(True, None).verify_mode is ssl.CERT_REQUIRED
    off = vcenter.ssl_context(False, None)
    assert off.verify_mode is ssl.CERT_NONE and not off.check_hostname
