"""Seed 000's triage flow on the hosts themselves: guest drivers, the DSVA's agent, the ESXi MUX, and the
per-host verdict on "Anti-Malware Engine Offline" (case A: particular VMs; case B: the whole host)."""

import pytest

from dsfleet.fleet import Fleet, Target
from dsfleet.isolation import driver_states, isolate
from dsfleet.parsers import parse_agent_state, parse_init_status, parse_rpm_query, parse_service_status
from dsfleet.pytest_plugin import agent_build_of, expect, no_evidence, not_applicable
from dsfleet.allowlist import MUX
from dsfleet.snapshot import HostProbe


@pytest.mark.check("DRV-001")
def test_guest_drivers_running(protected_windows_vm: Target, probe: HostProbe, fleet: Fleet) -> None:
    vm = protected_windows_vm.vm
    assert vm is not None
    # A VM that is not running, or whose Tools are down, has that cause (PRT-003/PRT-004), not a driver one.
    if vm.power_state != "poweredOn":
        not_applicable(f"the VM is {vm.power_state}: PRT-003 reports that cause")
    if vm.tools_running != "guestToolsRunning":
        not_applicable("VMware Tools is not running: PRT-004 reports that cause")
    bad, unknown = driver_states(fleet, protected_windows_vm)
    if unknown:
        no_evidence(unknown, "vsepflt and vmci RUNNING")
    expect(not bad, observed=", ".join(bad) or "vsepflt: RUNNING, vmci: RUNNING",
           required="vsepflt and vmci RUNNING", remedy=f"On {vm.name}: repair or reinstall VMware Tools with "
           f"Guest Introspection." if bad else "")


def _require_probed(dsva: Target, probe: HostProbe, required: str) -> None:
    """A DSVA that does not run is PRT-005's finding; one that runs but was not reached has no evidence."""
    __tracebackhide__ = True
    assert dsva.vm is not None
    if probe.status != "not probed":
        return
    if dsva.vm.power_state != "poweredOn":
        not_applicable(f"{probe.reason}: PRT-005 reports a DSVA that does not run")
    no_evidence(f"the DSVA was not contacted: {probe.reason}", required)


@pytest.mark.check("DSV-001")
def test_dsva_agent_running(dsva: Target, probe: HostProbe) -> None:
    assert dsva.vm is not None
    _require_probed(dsva, probe, "ds_agent running, agentState green")
    status, query = probe.output("service ds_agent status"), probe.output("/opt/ds_agent/dsa_query -c GetAgentStatus")
    if status is None or query is None:
        no_evidence("the ds_agent status commands were not run", "ds_agent running, agentState green")
    running, state = parse_service_status("ds_agent", status.stdout, status.rc)
    agent = parse_agent_state(query.stdout) if running else "not queried (ds_agent is not running)"
    expect(running and agent == "green", observed=f"service ds_agent: {state}; AgentStatus.agentState: {agent}",
           required="ds_agent running, agentState green",
           remedy="" if running and agent == "green" else f"On {dsva.vm.name}: sudo service ds_agent restart.")


@pytest.mark.check("DSV-002")
def test_dsva_package_matches_dsm(dsva: Target, probe: HostProbe) -> None:
    _require_probed(dsva, probe, "the installed build")
    if dsva.computer is None:
        no_evidence("no DSM computer matches this DSVA VM", "the build the DSM reports")
    out = probe.output("rpm -q ds_agent")
    if out is None:
        no_evidence("rpm -q ds_agent was not run", "the installed build")
    installed = parse_rpm_query("ds_agent", out.stdout, out.rc)
    reported = agent_build_of(dsva.computer, "DSVA")
    expect(installed == reported, observed=f"installed {installed or 'no ds_agent package'}, DSM reports {reported}",
           required="the installed package is the build the DSM reports")


@pytest.mark.check("MUX-001")
def test_endpoint_mux_running(esx_host: Target, probe: HostProbe, fleet: Fleet) -> None:
    mux = MUX[fleet.snap.inventory.nsx]
    out = probe.output(f"/etc/init.d/{mux} status")
    if out is None:
        no_evidence(f"/etc/init.d/{mux} status was not run", f"{mux} running")
    running = parse_init_status(mux, out.stdout, out.rc)
    expect(running, observed=out.stdout.strip() or f"rc {out.rc}", required=f"{mux} running",
           remedy="" if running else f"On {esx_host.object_id}: /etc/init.d/{mux} restart.")


@pytest.mark.check("ISO-001")
def test_engine_offline_isolated(isolation_host: Target, fleet: Fleet) -> None:
    assert isolation_host.host is not None
    if not fleet.protected_on_host(isolation_host.host):
        not_applicable("no agentlessly protected VM on this host")
    verdict = isolate(fleet, isolation_host, fleet.snap.inventory.nsx)
    expect(verdict.case == "none", observed=verdict.observed,
           required="no protected VM with Anti-Malware Engine Offline", remedy=" ".join(verdict.remedy))
