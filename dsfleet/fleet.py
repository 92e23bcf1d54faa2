"""Joined, scoped views of a snapshot: the subjects each check is parametrized over.

This is the one place that decides what is in scope and what counts as a DSVA, a relay, an agent, a
protected VM or a Windows VM; checks never re-implement selection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from .errors import InputError
from .buildpolicy import platform_column
from .allowlist import ProbeTarget
from .join import names_of
from .snapshot import DsmComputer, Event, HostProbe, RelayGroupFacts, Snapshot, SourceProbe, VcHost, VcVm
from .snapshot import NsxFacts, NsxGroup, NsxVm
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


def update_source_target(origin: str, probe: SourceProbe | None = None) -> Target:
    """The UPD-003/004 row of the source probed from ``origin`` (dsfleet, or a relay's name); the gatherer asks
    a shard about the same object before it contacts that relay."""
    return Target(f"update source from {origin}", source_probe=probe)


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


@dataclass(frozen=True)
class NsxMembership:
    """Whether a VM is in a group the NSX endpoint protection policy applies to, with the evidence."""

    groups: tuple[NsxGroup, ...]  # the endpoint protection groups the VM is a member of
    applied: tuple[NsxGroup, ...]  # every group the endpoint protection rules apply to
    matched_by: str | None  # "instance UUID …", "BIOS UUID …" or "moref vm-…"
    unknown: str | None  # what could not be read: the VM may be in a group that was not read
    source: str  # "NSX Manager <url>"

    @property
    def covered(self) -> bool | None:
        """True (in a group), False (in none, all read) or None (in none of those read, some not read)."""
        return True if self.groups else None if self.unknown else False

    @property
    def observed(self) -> str:
        if self.groups:
            return (f"in NSX group {_group_names(self.groups)} (matched by {self.matched_by}), which the endpoint "
                    f"protection policy applies to")
        if not self.applied and not self.unknown:
            return f"no endpoint-protection group applies: {self.source} lists no endpoint protection rule with a group"
        which = "NSX group" if len(self.applied) == 1 else "any of the NSX groups"
        text = f"not in {which} {_group_names(self.applied)} (the endpoint protection rules' groups, {self.source})"
        return text + (f"; not read: {self.unknown}" if self.unknown else "")


def _group_names(groups: tuple[NsxGroup, ...]) -> str:
    return ", ".join(g.name if g.name == g.path else f"{g.name} ({g.path})" for g in groups) or "(none read)"


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

    @staticmethod
    def probe_key(role: str, target: Target) -> str:
        """Which snapshot key a role's probe of this target is recorded under (see remote_targets)."""
        if role == "esxi" and target.host is not None:
            return target.host.key
        if role == "windows_agent" and target.computer is not None:
            return f"dsm/{target.computer.id}"
        if target.vm is not None:
            return target.vm.key
        raise Unavailable(f"{target.object_id} has no {role} host to probe")

    def host_probe(self, role: str, target: Target) -> HostProbe:
        """The target's remote probe; Unavailable with the reason unless it answered (or was rightly not
        contacted: "not probed" carries the VM's state for the check to report)."""
        found = self.probe(role, self.probe_key(role, target))
        if found is None:
            if role not in self.snap.remote.configured_roles:
                raise Unavailable(f"no remote access for {role} hosts: configure remote.{role} in the inventory")
            raise Unavailable(f"no remote probe was recorded for this {role}")
        if found.status not in ("ok", "not probed"):
            raise Unavailable(f"{found.status}: {found.reason} (address {found.address}, {found.transport})")
        return found

    # -- Windows computers with an agent or relay (WIN-001) --------------------------------------------

    def windows_agent_hosts(self) -> list[Target]:
        """Relays and agents (not agentlessly protected VMs, not DSVAs) whose DSM platform is Windows."""
        return sorted((t for t in self.relays() + self.agents()
                       if t.computer is not None and platform_column(t.computer.platform) == "windows"),
                      key=lambda t: t.object_id)

    def windows_agent_targets(self, mode: str,
                              elsewhere: Callable[[Target], str | None] | None = None) -> list[ProbeTarget]:
        """Where to read each of them: by the DSM's hostName (the name the DSM reaches the agent by), or by
        the guest IP of the VM it runs in. A computer that cannot be addressed is not contacted, with why; nor
        is one ``elsewhere`` gives a reason for (another shard judges it)."""
        out = []
        for t in self.windows_agent_hosts():
            c = t.computer
            assert c is not None
            key = f"dsm/{c.id}"
            reason = elsewhere(t) if elsewhere is not None else None
            if reason is not None:
                out.append(ProbeTarget("windows_agent", key, c.name, None, reason))
            elif mode == "name":
                out.append(ProbeTarget("windows_agent", key, c.name, c.host_name or None,
                                       None if c.host_name else "the DSM reports no hostName"))
            elif t.vm is None:
                out.append(ProbeTarget("windows_agent", key, c.name, None,
                                       "no VM matches this computer, so no guest IP is known (use address: name)"))
            else:
                by_ip = self._vm_probe("windows_agent", t.vm, mode)  # the VM's power and Tools state decide
                out.append(ProbeTarget("windows_agent", key, c.name, by_ip.address, by_ip.skip_reason))
        return out

    # -- update path and events ------------------------------------------------------------------------

    def _update_probes(self, from_relays: bool) -> list[Target]:
        facts = self.snap.update_path
        if not facts.configured:
            raise Unavailable("the update path is not configured: add update_source (and update_proxy) to the "
                              "inventory")
        if facts.error:
            raise Unavailable(facts.error)
        return [update_source_target(p.origin, p) for p in facts.probes
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
        subjects = {t.computer.id: t for t in self.update_takers() if t.computer is not None}
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

    def update_takers(self) -> list[Target]:
        """Relays, agents and DSVAs with a DSM record: every computer the KB asks a security update of."""
        subjects = {t.computer.id: t for t in self.relays() + self.ordering_subjects() if t.computer is not None}
        return sorted(subjects.values(), key=lambda t: t.object_id)

    # -- offline segments (KB: the bundle relay, the offline relays and every agent under them) ------------

    @cached_property
    def _relays_by_name(self) -> dict[str, DsmComputer]:
        return {n.lower(): c for c in self.computers.values() if c.is_relay for n in (c.host_name, c.display_name) if n}

    def unknown_offline_names(self) -> list[tuple[str, str]]:
        """(inventory key, name) of each name in offline_segments that is no relay the DSM reports."""
        out = []
        for i, seg in enumerate(self.snap.inventory.offline_segments):
            named = [(f"offline_segments[{i}].bundle_relay", seg.bundle_relay)]
            named += [(f"offline_segments[{i}].relays[{j}]", name) for j, name in enumerate(seg.relays)]
            out += [(key, name) for key, name in named if name.lower() not in self._relays_by_name]
        return out

    def check_offline_segments(self) -> None:
        """A name in offline_segments that is no relay the DSM knows is bad input (one line, exit 4).

        Judged only when the DSM was read whole: otherwise the relay may be in the part that was not.
        """
        unknown = self.unknown_offline_names()
        if unknown and not self.snap.dsm.error:
            key, name = unknown[0]
            raise InputError(self.snap.inventory.path, key, "a relay the DSM knows", name)

    @cached_property
    def offline_roles(self) -> dict[int, list[str]]:
        """Each computer of an offline bundle chain (by DSM ID) → its place in it, one text per segment.

        The agents and DSVAs are those in scope whose relayListID is a relay group one of the offline relays
        belongs to (groups from the inventory's relay_groups, else inferred).
        """
        roles: dict[int, list[str]] = {}
        clients = [t.computer for t in self.ordering_subjects() if t.computer is not None]
        for seg in self.snap.inventory.offline_segments:
            bundle = self._relays_by_name.get(seg.bundle_relay.lower())
            if bundle is not None:
                roles.setdefault(bundle.id, []).append(f"builds the update bundle of offline segment {seg.name}")
            relays = [self._relays_by_name[n.lower()] for n in seg.relays if n.lower() in self._relays_by_name]
            for relay in relays:
                roles.setdefault(relay.id, []).append(f"relay of offline segment {seg.name}")
            groups = {g.id: g for g in self.snap.relay_groups if any(r.id in g.relay_ids for r in relays)}
            for c in clients:
                if c.relay_list_id in groups:
                    roles.setdefault(c.id, []).append(
                        f"downloads from {groups[c.relay_list_id].name} in offline segment {seg.name}")
        return roles

    def offline_chain(self) -> list[Target]:
        """Every computer the inventory's offline segments put in an offline bundle chain, plus one target per
        name that is no relay the DSM knows (a saved snapshot is not re-validated: those error, never pass).
        Without offline segments, one target the check judges not applicable."""
        if not self.snap.inventory.offline_segments:
            return [Target("offline bundle chain (no offline_segments in the inventory)")]
        self.require_dsm()
        chain = {t.computer.id: t for t in self.relays() + self.ordering_subjects()
                 if t.computer is not None and t.computer.id in self.offline_roles}
        unknown = {name: Target(f"{name} (not a relay the DSM knows)") for _, name in self.unknown_offline_names()}
        return sorted([*chain.values(), *unknown.values()], key=lambda t: t.object_id)

    # -- NSX endpoint protection policy ---------------------------------------------------------------

    def require_nsx(self) -> NsxFacts:
        facts = self.snap.nsx
        if not facts.configured:
            raise Unavailable("configure nsx.url (nsx: {type, url, user, password_env}) in the inventory: the NSX "
                              "Manager was not read, so its endpoint protection policy is unknown")
        if facts.error:
            raise Unavailable(f"NSX Manager {facts.url} was not read: {facts.error}")
        return facts

    @cached_property
    def _nsx_vms(self) -> dict[str, NsxVm]:
        """NSX members by "instance:<uuid>", "bios:<uuid>" and "moref:<id>" (NSX-V reports only the moref)."""
        out: dict[str, NsxVm] = {}
        for v in self.snap.nsx.vms:
            keys = [f"instance:{v.instance_uuid}" if v.instance_uuid else "", f"bios:{v.bios_uuid}" if v.bios_uuid else ""]
            keys += [f"moref:{v.id}"] if not v.instance_uuid and not v.bios_uuid else []
            out.update({k: v for k in keys if k})
        return out

    def nsx_membership(self, vm: VcVm) -> NsxMembership:
        """Join one vCenter VM to the NSX members: instance UUID (NSX-T's external id), then BIOS UUID, then
        (NSX-V) the moref. Raises Unavailable when the NSX Manager was not read."""
        facts = self.require_nsx()
        member, matched_by = None, None
        for kind, value, label in (("instance", (vm.instance_uuid or "").lower(), "instance UUID"),
                                   ("bios", (vm.uuid or "").lower(), "BIOS UUID"),
                                   ("moref", vm.key.rpartition("/")[2], "moref")):
            member = self._nsx_vms.get(f"{kind}:{value}") if value else None
            if member is not None:
                matched_by = f"{label} {value}"
                break
        by_path = {g.path: g for g in facts.groups}
        groups = tuple(by_path[p] for p in member.groups if p in by_path) if member else ()
        return NsxMembership(groups=groups, applied=tuple(facts.groups), matched_by=matched_by,
                             unknown="; ".join(facts.unreadable) or None, source=f"NSX Manager {facts.url}")

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
