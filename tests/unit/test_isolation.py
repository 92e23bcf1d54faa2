"""Case A / case B isolation of "Anti-Malware Engine Offline", on hand-built snapshots."""

from __future__ import annotations

from dataclasses import replace

from dsfleet.fleet import Fleet
from dsfleet.isolation import isolate
from dsfleet.snapshot import CommandOutput, HostProbe, Match, RemoteFacts

from .test_snapshot_join import computer, sample, vm

SC_RUNNING = "SERVICE_NAME: {0}\r\n        STATE              : 4  RUNNING\r\n"


def fleet(offline: set[str], tools_off: set[str] = frozenset(), dsva_agent: str = "running", n: int = 3) -> Fleet:
    snap = sample()
    vc = snap.vcenters[0]
    vc.vms = [replace(vm(f"vc/vm-{i}", f"WIN-{i}", f"U{i}"),
                      tools_running="guestToolsNotRunning" if f"WIN-{i}" in tools_off else "guestToolsRunning")
              for i in range(1, n + 1)]
    vc.vms.append(replace(vm("vc/dsva", "Trend Micro DSVA", "UD"), guest_family="linuxGuest"))
    snap.dsm.computers = [replace(computer(i, f"WIN-{i}", f"U{i}"),
                                  appliance_messages=["Anti-Malware Engine Offline"] if f"WIN-{i}" in offline else [])
                          for i in range(1, n + 1)]
    snap.join.matches = [Match(i, f"vc/vm-{i}", "uuid") for i in range(1, n + 1)]
    probes = [HostProbe("windows", f"vc/vm-{i}", f"WIN-{i}", "10.0.0.1", "ssh", "ok", outputs=[
        CommandOutput(f"sc query {d}", 0, SC_RUNNING.format(d), "", 0.1) for d in ("vsepflt", "vmci")])
        for i in range(1, n + 1)]
    active = "active (running)" if dsva_agent == "running" else "inactive (dead)"
    probes.append(HostProbe("dsva", "vc/dsva", "Trend Micro DSVA", "10.0.0.2", "ssh", "ok", outputs=[
        CommandOutput("service ds_agent status", 0, f"   Active: {active} since today\n", "", 0.1),
        CommandOutput("/opt/ds_agent/dsa_query -c GetAgentStatus", 0, "AgentStatus.agentState: green\n", "", 0.1)]))
    snap.remote = RemoteFacts(configured_roles=["dsva", "windows"], probes=probes)
    return Fleet(snap)


def host(f: Fleet):  # type: ignore[no-untyped-def]
    return f.esx_hosts()[0]


def test_no_offline_vm_is_no_case() -> None:
    f = fleet(set())
    assert isolate(f, host(f), "nsx-t").case == "none"


def test_particular_vms_are_case_a_with_their_causes() -> None:
    f = fleet({"WIN-1", "WIN-2"}, tools_off={"WIN-2"})
    verdict = isolate(f, host(f), "nsx-t")
    assert verdict.case == "A" and verdict.offline == ["WIN-1", "WIN-2"]
    assert verdict.causes == ["WIN-1: drivers running; configure nsx.url (nsx: {type, url, user, password_env}) in "
                              "the inventory: the NSX Manager was not read, so its endpoint protection policy is "
                              "unknown; check its NSX security tag / policy",
                              "WIN-2: VMware Tools is not running"]


def test_every_vm_of_the_host_is_case_b_with_the_ordered_remedy() -> None:
    f = fleet({"WIN-1", "WIN-2", "WIN-3"})
    verdict = isolate(f, host(f), "nsx-v")
    assert verdict.case == "B" and "of 3" in verdict.observed
    assert verdict.remedy[0].startswith("1) on Trend Micro DSVA: sudo service ds_agent restart")
    assert "/etc/init.d/vShield-Endpoint-Mux restart" in verdict.remedy[1]


def test_a_host_level_fault_makes_even_one_offline_vm_case_b() -> None:
    f = fleet({"WIN-1"}, dsva_agent="stopped")
    verdict = isolate(f, host(f), "nsx-t")
    assert verdict.case == "B" and verdict.causes == ["ds_agent on Trend Micro DSVA is inactive (dead)"]


def test_a_single_protected_vm_offline_without_host_fault_is_case_a() -> None:
    f = fleet({"WIN-1"}, n=1)
    assert isolate(f, host(f), "nsx-t").case == "A"
