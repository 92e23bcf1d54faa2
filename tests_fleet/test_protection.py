"""Agentless protection of every VM in scope (seed 000: Anti-Malware Engine Offline, case A causes)."""

import pytest

from dsfleet.fleet import Target, agent_build
from dsfleet.isolation import engine_offline
from dsfleet.pytest_plugin import expect, no_evidence, not_applicable


@pytest.mark.check("PRT-001")
def test_windows_vm_protected(windows_vm: Target) -> None:
    c = windows_vm.computer
    required = "known to the DSM and activated (agentless through the DSVA, or an agent)"
    if c is None:
        expect(False, observed="not known to the DSM: no computer matches its BIOS UUID or name", required=required)
        return
    agent = agent_build(c)
    protected = c.appliance_protected or (agent is not None and c.agent_status == "active")
    how = ("agentless (applianceFingerPrint set)" if c.appliance_protected
           else f"agent {agent} ({c.agent_status})" if agent else "neither agentless activation nor an agent")
    expect(protected, observed=f"DSM computer {c.name} (ID {c.id}): {how}", required=required)


@pytest.mark.check("PRT-002")
def test_anti_malware_engine_online(protected_vm: Target) -> None:
    c = protected_vm.computer
    assert c is not None
    if c.am_state is None:
        no_evidence("the DSM reports no antiMalware.state", "anti-malware state")
    messages = c.agent_messages + c.appliance_messages + c.am_messages
    on = c.am_state.lower().startswith("on")
    status = "; ".join(dict.fromkeys(messages)) or "no status messages"
    expect(on and not engine_offline(c), observed=f"antiMalware.state={c.am_state}; status: {status}",
           required="anti-malware on, no \"Anti-Malware Engine Offline\"")


@pytest.mark.check("PRT-003")
def test_protected_vm_running(protected_vm: Target) -> None:
    vm = protected_vm.vm
    if vm is None:
        no_evidence("no vCenter VM matches this DSM computer (by BIOS UUID or name)", "the VM's power state")
    if vm.power_state is None:
        no_evidence("vCenter reported no runtime.powerState", "the VM's power state")
    expect(vm.power_state == "poweredOn", observed=f"runtime.powerState={vm.power_state}", required="poweredOn")


@pytest.mark.check("PRT-004")
def test_vmware_tools_running(protected_vm: Target) -> None:
    vm = protected_vm.vm
    if vm is None:
        no_evidence("no vCenter VM matches this DSM computer (by BIOS UUID or name)", "VMware Tools status")
    if vm.power_state != "poweredOn":
        not_applicable(f"the VM is {vm.power_state}: PRT-003 reports that cause; Tools cannot run")
    if vm.tools_running is None:
        no_evidence("vCenter reported no guest.toolsRunningStatus", "VMware Tools status")
    expect(vm.tools_running == "guestToolsRunning",
           observed=f"guest.toolsRunningStatus={vm.tools_running}; toolsVersionStatus2={vm.tools_version_status}",
           required="guestToolsRunning")


@pytest.mark.check("PRT-005")
def test_esx_host_has_dsva(esx_host: Target) -> None:
    running = [vm for vm in esx_host.dsva_vms if vm.power_state == "poweredOn"]
    listed = ", ".join(f"{vm.name} ({vm.power_state})" for vm in esx_host.dsva_vms) or "no DSVA VM"
    expect(bool(running), observed=listed, required="a powered-on DSVA VM on this host")
