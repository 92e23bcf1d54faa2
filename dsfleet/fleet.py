"""Joined, scoped views of a snapshot: the subjects each check is parametrized over.

This is the one place that decides what is in scope and what counts as a DSVA, a relay, an agent, a
protected VM or a Windows VM; checks never re-implement selection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from .remote import ProbeTarget
from .join import names_of
from .snapshot import DsmComputer, Event, HostProbe, RelayGroupFacts, Snapshot, SourceProbe, VcHost, VcVm
from .versions import Build


class Unavailable(Exception):
    """The facts needed to enumerate or judge a subject were not gathered; the message says why."""


@dataclass(frozen=True)
class Target:
    """One object a check judges: a DSM computer, a VM, an ESXi host, or a joined pair of them."""

    object_id: str
    computer: DsmComputer | None = None
    vm: VcVm | None = None
    host: VcHost | None = None
    dsva_vms: tuple[VcVm, ...] = ()
    source_probe: SourceProbe | None = None
    events: tuple[Event, ...] = ()

    @property
    def identity(self) -> str:
        """Asset identity for the report: DSM ID, VM UUID, ESXi host, platform."""
        parts = []
        if self.computer is not None:
            parts.append(f"DSM ID {self.computer.id}")
            if self.computer.platform:
                parts.append(self.computer.platform.split("(")[0].strip())
        if self.vm is not None and self.vm.uuid:
            parts.append(f"UUID {self.vm.uuid}")
        if self.host is not None:
            parts.append(f"host {self.host.name}" + (f" / cluster {self.host.cluster}" if self.host.cluster else ""))
        return "; ".join(parts)


def _is_windows(vm: VcVm) -> bool:
    return (vm.guest_family or "").lower() == "windowsguest" or (vm.guest_id or "").lower().startswith("win")


def agent_build(computer: DsmComputer) -> Build | None:
    """The activated agent's build, or None when the DSM reports no agent (absent or 0.0.0.0)."""
    if not computer.agent_version:
        return None
    try:
        build = Build.parse(computer.agent_version)
    except ValueError:
        return None
    return None if build.is_null else build


class Fleet:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._pattern = re.compile(snap.inventory.dsva_vm_pattern)
        self.computers = {c.id: c for c in snap.dsm.computers}
        self.hosts = {h.key: h for vc in snap.vcenters for h in vc.hosts}
        self.vms = {vm.key: vm for vc in snap.vcenters for vm in vc.vms}
        self.vm_of = {m.computer_id: m.vm_key for m in snap.join.matches}
        self.computer_of = {m.vm_key: m.computer_id for m in snap.join.matches}
        self.match_method = {m.computer_id: m.method for m in snap.join.matches}

    # -- sources -------------------------------------------------------------------------------------

    def require_dsm(self) -> None:
        if self.snap.dsm.error:
            raise Unavailable(f"DSM {self.snap.dsm.url} was not read: {self.snap.dsm.error}")

    def require_vcenters(self) -> None:
        failed = [f"vCenter {vc.name} ({vc.url}) was not read: {vc.error}" for vc in self.snap.vcenters if vc.error]
        if failed:
            raise Unavailable("; ".join(failed))

    # -- scope ---------------------------------------------------------------------------------------

    @cached_property
    def hosts_in_scope(self) -> list[VcHost]:
        inv = self.snap.inventory
        clusters = {c.lower() for c in inv.scope_clusters}
        names = {h.lower() for h in inv.scope_hosts}
        every = not clusters and not names
        return sorted((h for h in self.hosts.values()
                       if every or h.name.lower() in names or (h.cluster or "").lower() in clusters),
                      key=lambda h: h.name)

    @cached_property
    def _scoped_host_keys(self) -> set[str]:
        return {h.key for h in self.hosts_in_scope}

    def vm_in_scope(self, vm: VcVm) -> bool:
        return vm.host_key in self._scoped_host_keys and not vm.template

    def is_dsva_vm(self, vm: VcVm) -> bool:
        return bool(self._pattern.search(vm.name))

    def vm_for(self, computer: DsmComputer) -> VcVm | None:
        key = self.vm_of.get(computer.id)
        return self.vms.get(key) if key else None

    def computer_for(self, vm: VcVm) -> DsmComputer | None:
        cid = self.computer_of.get(vm.key)
        return self.computers.get(cid) if cid is not None else None

    def host_of(self, vm: VcVm | None) -> VcHost | None:
        return self.hosts.get(vm.host_key) if vm is not None and vm.host_key else None

    def _vm_target(self, vm: VcVm, computer: DsmComputer | None) -> Target:
        host = self.host_of(vm)
        return Target(f"{vm.name}@{host.name if host else '?'}", computer=computer, vm=vm, host=host)

    def _computer_target(self, computer: DsmComputer) -> Target:
        vm = self.vm_for(computer)
        if vm is not None:
            return self._vm_target(vm, computer)
        return Target(computer.name, computer=computer)

    # -- subjects ------------------------------------------------------------------------------------

    def esx_hosts(self) -> list[Target]:
        self.require_vcenters()
        by_host: dict[str, list[VcVm]] = {}
        for vm in self.vms.values():
            if vm.host_key and self.is_dsva_vm(vm):
                by_host.setdefault(vm.host_key, []).append(vm)
        return [Target(h.name, host=h, dsva_vms=tuple(sorted(by_host.get(h.key, []), key=lambda v: v.name)))
                for h in self.hosts_in_scope]

    def isolation_hosts(self) -> list[Target]:
        """ESXi hosts in scope, for checks that also read the DSM's view of their VMs."""
        self.require_dsm()
        return self.esx_hosts()

    def dsvas(self) -> list[Target]:
        """Every DSVA VM on a host in scope, with its DSM record when the join found one."""
        self.require_dsm()
        return sorted((self._vm_target(vm, self.computer_for(vm)) for vm in self.dsva_vms_in_scope()),
                      key=lambda t: t.object_id)

    def dsva_vms_in_scope(self) -> list[VcVm]:
        self.require_vcenters()
        return sorted((vm for vm in self.vms.values() if self.vm_in_scope(vm) and self.is_dsva_vm(vm)),
                      key=lambda vm: vm.name)

    @cached_property
    def _dsva_computer_ids(self) -> set[int]:
        return {self.computer_of[vm.key] for vm in self.vms.values()
                if self.is_dsva_vm(vm) and vm.key in self.computer_of}

    def relays(self) -> list[Target]:
        """Every computer with the relay feature on; relays serve the whole scope, so none is scoped out."""
        self.require_dsm()
        known = [c for c in self.computers.values() if c.is_relay is not None]
        if self.computers and not known:
            raise Unavailable("the DSM reported no computerSettings.platformSettingRelayState for any computer")
        return sorted((self._computer_target(c) for c in known if c.is_relay), key=lambda t: t.object_id)

    def _scoped_computers(self, wanted: Callable[[DsmComputer], bool], include_unmatched: bool) -> list[Target]:
        """Computers (DSVAs excluded) that ``wanted`` selects, on a VM in scope or matching no VM at all."""
        out = []
        for c in self.computers.values():
            if c.id in self._dsva_computer_ids or not wanted(c):
                continue
            vm = self.vm_for(c)
            if (vm is None and not include_unmatched) or (vm is not None and not self.vm_in_scope(vm)):
                continue
            out.append(self._computer_target(c))
        return sorted(out, key=lambda t: t.object_id)

    def agents(self) -> list[Target]:
        """Computers with an agent that are neither relays nor DSVAs, within scope."""
        self.require_dsm()
        self.require_vcenters()
        return self._scoped_computers(lambda c: not c.is_relay and _reports_agent(c),
                                      self.snap.inventory.include_unmatched_agents)

    def protected_vms(self) -> list[Target]:
        """Computers the DSM protects through a DSVA (applianceFingerPrint present), within scope.

        One that matches no VM is kept: it claims protection, and the checks say no VM backs it.
        """
        self.require_dsm()
        self.require_vcenters()
        return list(self._protected)

    @cached_property
    def _protected(self) -> list[Target]:
        # Computed once per snapshot: ISO-001 and the remote targets ask for it host by host.
        return self._scoped_computers(lambda c: c.appliance_protected, include_unmatched=True)

    @cached_property
    def _protected_by_host(self) -> dict[str, list[Target]]:
        by_host: dict[str, list[Target]] = {}
        for t in self._protected:
            if t.host is not None:
                by_host.setdefault(t.host.key, []).append(t)
        return by_host

    def windows_vms(self) -> list[Target]:
        """Every Windows VM in scope (by guest family or configured guest OS), DSVAs excluded."""
        self.require_vcenters()
        self.require_dsm()
        vms = [vm for vm in self.vms.values() if self.vm_in_scope(vm) and _is_windows(vm) and not self.is_dsva_vm(vm)]
        return sorted((self._vm_target(vm, self.computer_for(vm)) for vm in vms), key=lambda t: t.object_id)

    def protected_windows_vms(self) -> list[Target]:
        """Agentlessly protected VMs that are Windows: where the guest drivers vsepflt and vmci must run."""
        return [t for t in self.protected_vms() if t.vm is not None and _is_windows(t.vm)]

    def protected_on_host(self, host: VcHost) -> list[Target]:
        self.require_dsm()
        self.require_vcenters()
        return list(self._protected_by_host.get(host.key, []))

    def ordering_subjects(self) -> list[Target]:
        """Agents and DSVAs: everything that downloads updates from a relay group."""
        return sorted(self.agents() + [t for t in self.dsvas() if t.computer is not None],
                      key=lambda t: t.object_id)

    # -- remote probes -------------------------------------------------------------------------------

    def remote_targets(self, address_modes: dict[str, str]) -> list[ProbeTarget]:
        """Every host the remote gatherer contacts, with why not when a VM's state rules it out.

        Each role needs only its own sources: ESXi hosts and DSVAs come from vCenter, protected Windows
        VMs from the DSM too; a role whose sources are missing is left out (its checks error on them).
        """
        roles: list[tuple[str, Callable[[], list[VcVm]]]] = [
            ("dsva", self.dsva_vms_in_scope),
            ("windows", lambda: [t.vm for t in self.protected_windows_vms() if t.vm is not None])]
        try:
            self.require_vcenters()
        except Unavailable:
            return []
        targets = [ProbeTarget("esxi", h.key, h.name, h.name) for h in self.hosts_in_scope]
        for role, vms in roles:
            try:
                targets += [self._vm_probe(role, vm, address_modes.get(role, "ip")) for vm in vms()]
            except Unavailable:
                continue
        return targets

    @staticmethod
    def _vm_probe(role: str, vm: VcVm, mode: str) -> ProbeTarget:
        if vm.power_state != "poweredOn":
            return ProbeTarget(role, vm.key, vm.name, None, f"the VM is {vm.power_state}")
        if vm.tools_running != "guestToolsRunning" and mode == "ip":
            return ProbeTarget(role, vm.key, vm.name, None, "VMware Tools is not running, so no guest IP is known")
        address = vm.ip_address if mode == "ip" else (vm.guest_hostname or vm.name)
        return ProbeTarget(role, vm.key, vm.name, address, None if address else "VMware Tools reports no guest IP")

    @cached_property
    def _probes(self) -> dict[tuple[str, str], HostProbe]:
        return {(p.role, p.key): p for p in self.snap.remote.probes}

    def probe(self, role: str, key: str) -> HostProbe | None:
        return self._probes.get((role, key))

    # -- update path and events ------------------------------------------------------------------------

    def _update_probes(self, from_relays: bool) -> list[Target]:
        facts = self.snap.update_path
        if not facts.configured:
            raise Unavailable("the update path is not configured: add update_source (and update_proxy) to the "
                              "inventory")
        if facts.error:
            raise Unavailable(facts.error)
        return [Target(f"update source from {p.origin}", source_probe=p) for p in facts.probes
                if (p.origin != "dsfleet") == from_relays]

    def source_probes(self) -> list[Target]:
        """The probe of the update source from dsfleet's host, through the inventory's proxy."""
        return self._update_probes(from_relays=False)

    def relay_source_probes(self) -> list[Target]:
        """The same source probed from each relay that update_source.relays lists."""
        return self._update_probes(from_relays=True)

    def event_subjects(self) -> list[Target]:
        """Every computer that takes security updates (agents, relays, DSVAs) with its events in the window,
        plus any event target the DSM does not list (so no event is dropped)."""
        facts = self.snap.events
        if not facts.configured:
            raise Unavailable("no event source is configured: add events (soap or cef) to the inventory")
        if facts.error:
            raise Unavailable(f"events were not read ({facts.source}): {facts.error}")
        subjects = {t.computer.id: t for t in self.relays() + self.ordering_subjects() if t.computer is not None}
        by_name: dict[str, int] = {}
        for cid in subjects:
            c = self.computers[cid]
            for name in names_of(c.host_name, c.display_name):
                by_name.setdefault(name, cid)
        mine: dict[int, list[Event]] = {cid: [] for cid in subjects}
        strangers: dict[str, list[Event]] = {}
        for event in facts.events:
            owner = next((by_name[n] for n in names_of(event.target) if n in by_name), None)
            if owner is not None:
                mine[owner].append(event)
            else:
                strangers.setdefault(event.target or "(no target)", []).append(event)
        out = [Target(subjects[cid].object_id, computer=subjects[cid].computer, vm=subjects[cid].vm,
                      host=subjects[cid].host, events=tuple(mine[cid])) for cid in subjects]
        out += [Target(f"{name} (not in the DSM)", events=tuple(evs)) for name, evs in strangers.items()]
        return sorted(out, key=lambda t: t.object_id)

    # -- relay groups ----------------------------------------------------------------------------------

    def relay_group(self, group_id: int) -> RelayGroupFacts | None:
        for g in self.snap.relay_groups:
            if g.id == group_id:
                return g
        return None


def _reports_agent(c: DsmComputer) -> bool:
    """An activated agent, or an agentVersion that cannot be read: that one must be judged (and fail), not skipped."""
    if agent_build(c) is not None:
        return True
    if not c.agent_version:
        return False
    try:
        Build.parse(c.agent_version)
    except ValueError:
        return True
    return False
