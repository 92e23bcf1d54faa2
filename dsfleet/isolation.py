"""Seed 000's triage as a function: where "Anti-Malware Engine Offline" appears, which case it is.

Case A — particular VMs: the cause is in the VM (suspended, VMware Tools not running, the guest drivers
``vsepflt``/``vmci`` stopped or missing, or the NSX policy). Case B — every protected VM on one ESXi host:
the cause is the host's DSVA (``ds_agent``) or the ESXi endpoint MUX, fixed in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fleet import Fleet, Target, Unavailable
from .parsers import UnexpectedOutput, parse_agent_state, parse_init_status, parse_sc_query, parse_service_status
from .allowlist import DRIVERS, MUX
from .snapshot import DsmComputer, VcVm

ENGINE_OFFLINE = "anti-malware engine offline"


def engine_offline(computer: DsmComputer) -> bool:
    """The alert may sit in any of the four status message fields: look in all of them."""
    messages = computer.agent_messages + computer.appliance_messages + computer.am_messages
    return any(ENGINE_OFFLINE in m.lower() for m in messages)


@dataclass
class Isolation:
    host: str
    case: str  # "none", "A" (particular VMs) or "B" (the whole host)
    protected: int
    offline: list[str]
    offline_objects: list[str] = field(default_factory=list)  # the offline VMs' object ids (what case B explains)
    causes: list[str] = field(default_factory=list)
    remedy: list[str] = field(default_factory=list)

    @property
    def observed(self) -> str:
        if self.case == "none":
            return f"none of the {self.protected} protected VMs on {self.host} is offline"
        scope = (f"every protected VM on {self.host} ({len(self.offline)} of {self.protected})" if self.case == "B"
                 else f"{len(self.offline)} of {self.protected} protected VMs on {self.host}")
        return (f"case {self.case}: Anti-Malware Engine Offline on {scope}: {', '.join(self.offline)}; "
                f"causes: {'; '.join(self.causes)}")


def driver_states(fleet: Fleet, target: Target) -> tuple[list[str], str | None]:
    """(drivers not running, why they could not be read) for one Windows VM, from its probe."""
    assert target.vm is not None
    probe = fleet.probe("windows", target.vm.key)
    if probe is None:
        return [], "the guest was not checked (no remote.windows access)"
    if probe.status != "ok":
        return [], f"the guest could not be checked: {probe.status}: {probe.reason}"
    bad = []
    for driver in DRIVERS:
        out = probe.output(f"sc query {driver}")
        if out is None:
            return [], f"sc query {driver} was not run"
        state = parse_sc_query(driver, out.stdout, out.rc)
        if not state.running:
            bad.append(state.describe())
    return bad, None


def vm_cause(fleet: Fleet, target: Target) -> str:
    """The case-A cause for one VM, in seed 000's order: sleep, VMware Tools, drivers, then NSX policy."""
    vm = target.vm
    if vm is None:
        return f"{target.object_id}: no vCenter VM matches it"
    if vm.power_state != "poweredOn":
        return f"{vm.name}: the VM is {vm.power_state}"
    if vm.tools_running != "guestToolsRunning":
        return f"{vm.name}: VMware Tools is not running"
    bad, unknown = driver_states(fleet, target)
    if bad:
        return f"{vm.name}: {', '.join(bad)}"
    if unknown:
        return f"{vm.name}: {unknown}"
    return f"{vm.name}: drivers running; {nsx_cause(fleet, vm)}"


def nsx_cause(fleet: Fleet, vm: VcVm) -> str:
    """The last case-A cause, from the NSX Manager: the endpoint protection groups the VM is (not) in."""
    try:
        return fleet.nsx_membership(vm).observed
    except Unavailable as err:
        return f"{err}; check its NSX security tag / policy"


def host_faults(fleet: Fleet, host_target: Target, nsx: str) -> list[str]:
    """What is wrong at host level: no DSVA, its ds_agent, or the endpoint MUX (unknown states say so)."""
    host = host_target.host
    assert host is not None
    faults = []
    if not any(vm.power_state == "poweredOn" for vm in host_target.dsva_vms):
        faults.append(f"no DSVA VM runs on {host.name}")
    for vm in host_target.dsva_vms:
        faults += _dsva_fault(fleet, vm.key, vm.name)
    mux = MUX[nsx]
    probe = fleet.probe("esxi", host.key)
    if probe is not None and probe.status == "ok" and (out := probe.output(f"/etc/init.d/{mux} status")):
        try:
            if not parse_init_status(mux, out.stdout, out.rc):
                faults.append(f"{mux} is not running on {host.name}")
        except UnexpectedOutput as err:
            faults.append(f"{mux} state unknown: {err}")
    return faults


def _dsva_fault(fleet: Fleet, key: str, name: str) -> list[str]:
    probe = fleet.probe("dsva", key)
    if probe is None or probe.status != "ok":
        return []
    out, query = probe.output("service ds_agent status"), probe.output("/opt/ds_agent/dsa_query -c GetAgentStatus")
    try:
        if out is not None:
            running, state = parse_service_status("ds_agent", out.stdout, out.rc)
            if not running:
                return [f"ds_agent on {name} is {state}"]
        if query is not None and (agent := parse_agent_state(query.stdout)) != "green":
            return [f"ds_agent on {name} reports agentState {agent}"]
    except UnexpectedOutput as err:
        return [f"ds_agent on {name} state unknown: {err}"]
    return []


def isolate(fleet: Fleet, host_target: Target, nsx: str) -> Isolation:
    host = host_target.host
    assert host is not None
    protected = fleet.protected_on_host(host)
    offline = [t for t in protected if t.computer is not None and engine_offline(t.computer)]
    result = Isolation(host=host.name, case="none", protected=len(protected),
                       offline=[t.vm.name if t.vm else t.object_id for t in offline],
                       offline_objects=[t.object_id for t in offline])
    if not offline:
        return result
    dsvas = [vm.name for vm in host_target.dsva_vms if vm.power_state == "poweredOn"]
    faults = host_faults(fleet, host_target, nsx)
    whole_host = len(offline) == len(protected) and len(offline) >= 2
    if faults or whole_host:
        result.case = "B"
        result.causes = faults or ["no host-level fault was read; the DSVA or MUX may be stuck without showing it"]
        dsva = dsvas[0] if dsvas else "the host's DSVA (deploy one: PRT-005)"
        mux_down = any(MUX[nsx] in f for f in faults)
        agent_down = any("ds_agent" in f for f in faults)
        # Seed 000's order: the DSVA's agent first, then the MUX; a step whose component reads healthy says so.
        first = (f"1) on {dsva}: sudo service ds_agent restart" if agent_down or not mux_down
                 else f"1) ds_agent on {dsva} reads healthy: no restart needed")
        result.remedy = [first, f"2) {'then, ' if not mux_down else ''}on {host.name}: /etc/init.d/{MUX[nsx]} restart"
                                f"{' if the VMs stay offline' if not mux_down else ''} (running VMs keep running; "
                                f"prefer a maintenance window)"]
        return result
    result.case = "A"
    result.causes = [vm_cause(fleet, t) for t in offline]
    result.remedy = [f"per VM: resume a suspended VM; start VMware Tools; where `sc query vsepflt` / "
                     f"`sc query vmci` is not RUNNING, repair or reinstall VMware Tools with the Guest "
                     f"Introspection (NSX File Introspection) driver and reboot; otherwise put the VM in a group the "
                     f"NSX endpoint protection policy applies to (its security tag; NSX-001)"]
    return result
