"""The fleet snapshot: every gathered fact, typed, versioned, written as JSON — the run's evidence.

A source that could not be read keeps ``error`` set to the reason; the checks that need it then error
with that reason (fail closed). Secrets are never stored: only URLs, names and environment variable names.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

SCHEMA = "dsfleet-snapshot"
# The error of a source the run's selected checks do not read (pytest -k / -m): not a gap in the evidence.
NOT_SELECTED = "not read: no selected check reads it"
VERSION = 1


@dataclass
class UpdateComponent:
    """One security-update component the DSM lists for a computer (SDK model ``Component``)."""

    name: str | None
    version: str | None
    latest: bool | None  # "True if the component is the latest version"
    platform: str | None = None


@dataclass
class DsmComputer:
    """One DSM computer record, reduced to the fields the checks read (names as in the REST API)."""

    id: int
    host_name: str
    display_name: str
    platform: str
    agent_version: str | None
    relay_list_id: int | None
    is_relay: bool | None  # computerSettings.platformSettingRelayState; None when not reported
    appliance_protected: bool  # applianceFingerPrint present: activated through a DSVA
    bios_uuid: str | None
    agent_status: str | None
    agent_messages: list[str]
    appliance_status: str | None
    appliance_messages: list[str]
    am_state: str | None
    am_messages: list[str]  # antiMalware.moduleStatus agent/appliance status messages
    vm_state: str | None  # vmwareVMVirtualMachineSummary.state, e.g. "Powered On"
    # "DSM computer <ID>: <field>: expected <type>, got <value>" for each field the record carried with the wrong
    # type; the good fields are kept, and the checks that need this computer error with these reasons.
    problems: list[str] = field(default_factory=list)
    # securityUpdates (SDK model SecurityUpdates): the outcome of the last security update on this computer.
    update_status: str | None = None  # updateStatus.status: inactive | active | warning | error | not-supported
    update_message: str | None = None  # updateStatus.statusMessage
    update_last_changed_ms: int | None = None  # lastChanged, milliseconds since the epoch
    am_components: list[UpdateComponent] = field(default_factory=list)  # securityUpdates.antiMalware

    @property
    def name(self) -> str:
        return self.display_name or self.host_name


@dataclass
class DsmFacts:
    url: str
    auth: str
    tls_verify: bool
    error: str | None = None
    manager_version: str | None = None
    manager_version_error: str | None = None
    computers: list[DsmComputer] = field(default_factory=list)
    api_calls: int = 0
    # Computer records without a usable ID (one reason each): whose evidence is missing cannot be known, so their
    # presence also sets ``error`` (the DSM source is partial).
    unreadable: list[str] = field(default_factory=list)


@dataclass
class VcHost:
    key: str  # <vcenter>/<moid>
    name: str
    cluster: str | None
    connection_state: str | None
    in_maintenance: bool | None
    product: str | None
    unread: list[str] = field(default_factory=list)  # properties the vCenter reported it could not read, and why


@dataclass
class VcVm:
    key: str  # <vcenter>/<moid>
    name: str
    host_key: str | None
    power_state: str | None  # poweredOn | poweredOff | suspended
    uuid: str | None  # config.uuid, the BIOS UUID the DSM also reports
    instance_uuid: str | None
    guest_id: str | None  # config.guestId
    guest_family: str | None  # guest.guestFamily, from VMware Tools
    tools_running: str | None  # guest.toolsRunningStatus
    tools_version_status: str | None  # guest.toolsVersionStatus2
    guest_hostname: str | None
    template: bool
    ip_address: str | None = None  # guest.ipAddress, from VMware Tools
    unread: list[str] = field(default_factory=list)  # properties the vCenter reported it could not read, and why


@dataclass
class VcenterFacts:
    name: str
    url: str
    tls_verify: bool
    error: str | None = None
    product: str | None = None
    version: str | None = None
    build: str | None = None
    instance_uuid: str | None = None
    hosts: list[VcHost] = field(default_factory=list)
    vms: list[VcVm] = field(default_factory=list)
    api_calls: int = 0


@dataclass
class Match:
    computer_id: int
    vm_key: str
    method: str  # "uuid" or "name"


@dataclass
class JoinResult:
    matches: list[Match] = field(default_factory=list)
    unmatched_computers: list[int] = field(default_factory=list)
    unmatched_vms: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)  # human-readable notes


@dataclass
class RelayGroupFacts:
    id: int
    name: str
    relay_ids: list[int]
    source: str  # "inventory" or "inferred from each relay's relayListID"
    unresolved: list[str] = field(default_factory=list)  # inventory names with no DSM relay


@dataclass
class CommandOutput:
    command: str
    rc: int | None
    stdout: str
    stderr: str
    seconds: float


# Why a host has no results: every probe ends in exactly one of these.
PROBE_STATUSES = ("ok", "not probed", "not configured", "unreachable", "auth failed", "host key rejected",
                  "tls rejected", "timeout", "unexpected output", "error")


@dataclass
class HostProbe:
    role: str  # windows | dsva | esxi
    key: str  # the VM's or ESXi host's snapshot key
    name: str
    address: str | None
    transport: str | None
    status: str  # one of PROBE_STATUSES
    reason: str | None = None
    outputs: list[CommandOutput] = field(default_factory=list)
    seconds: float = 0.0

    def output(self, command: str) -> CommandOutput | None:
        return next((o for o in self.outputs if o.command == command), None)


@dataclass
class RemoteFacts:
    configured_roles: list[str] = field(default_factory=list)
    concurrency: int = 0
    verify_host_keys: bool = True
    seconds: float = 0.0
    probes: list[HostProbe] = field(default_factory=list)


@dataclass
class CertInfo:
    subject: str
    issuer: str
    sha256: str
    not_after: str


@dataclass
class SourceProbe:
    """One attempt to reach the update source through the proxy, from dsfleet's host or from a relay."""

    origin: str  # "dsfleet" or the relay's name
    url: str
    proxy: str | None
    status: str  # ok | proxy error | connect error | tls error | http error | timeout | not probed | error
    reason: str | None = None
    http_status: int | None = None
    seconds: float | None = None
    chain: list[CertInfo] = field(default_factory=list)  # as the tunnel presented it, leaf first
    trusted: bool | None = None  # the chain verifies against the expected trust anchors
    trust_error: str | None = None


@dataclass
class UpdatePathFacts:
    configured: bool = False
    error: str | None = None
    source_mode: str | None = None
    source_url: str | None = None  # as configured in the DSM (may end with //)
    probe_url: str | None = None
    proxy_setting: str | None = None  # platformSettingProxyAgentUpdateProxyId
    proxy_url: str | None = None  # from the inventory (credentials never stored)
    probes: list[SourceProbe] = field(default_factory=list)


@dataclass
class Event:
    time: str  # ISO 8601, UTC
    event_id: int  # 2205 (system) or 9017 (agent/appliance), ...
    name: str
    target: str  # the computer the event is about
    description: str
    origin: str  # "soap:<systemEventID>" or "<file>:<line>"


@dataclass
class EventFacts:
    configured: bool = False
    source: str | None = None
    error: str | None = None
    since_utc: str | None = None
    until_utc: str | None = None
    events: list[Event] = field(default_factory=list)
    scanned: int = 0  # events read (soap) or CEF/LEEF lines read (cef), before filtering
    # cef only. Any of unparsed, unreadable, or a configured path without a readable file or a CEF/LEEF line sets
    # error (the evidence is partial); other, replaced and skipped do not.
    unparsed: int = 0  # lines carrying CEF:/LEEF: that could not be parsed
    unparsed_lines: list[str] = field(default_factory=list)  # the first few, "<file>:<line>: <reason>"
    other: int = 0  # lines without a CEF/LEEF payload (other programs' syslog lines)
    replaced: int = 0  # lines that were not UTF-8, read with U+FFFD in place of the bad bytes
    files: list[str] = field(default_factory=list)  # regular files read (gzip/bzip2/xz ones decompressed)
    skipped: list[str] = field(default_factory=list)  # "<path>: a named pipe, not read" (never opened)
    unreadable: list[str] = field(default_factory=list)  # "<path>: <reason>" (permissions, cut-short gzip, ...)


@dataclass
class OfflineSegmentRef:
    """An offline environment the inventory declares: the relay that builds the update bundle and its relays."""

    name: str
    bundle_relay: str  # DSM hostName or displayName
    relays: list[str]


@dataclass
class NsxGroup:
    """A group an endpoint protection (Guest Introspection) rule applies to, as the NSX Manager names it."""

    path: str  # NSX-T: /infra/domains/<domain>/groups/<id>; NSX-V: the security group's objectId
    name: str
    rules: list[str]  # the rules (NSX-T: endpoint rule paths; NSX-V: service profile ids) that apply to it
    service_profiles: list[str]
    members: int = 0  # VM members read


@dataclass
class NsxVm:
    """One VM member of an endpoint protection group, with the identities NSX reports for it."""

    id: str  # NSX-T: RealizedVirtualMachine.id; NSX-V: the vCenter moref (vm-123)
    name: str
    instance_uuid: str | None  # NSX-T compute_ids instanceUuid: / externalId: (vSphere config.instanceUuid)
    bios_uuid: str | None  # NSX-T compute_ids biosUuid: / uuid: (vSphere config.uuid)
    groups: list[str]  # paths of the endpoint protection groups it is a member of


@dataclass
class NsxFacts:
    configured: bool = False  # the inventory's nsx names a manager (a mapping with url)
    type: str | None = None  # nsx-t | nsx-v
    url: str | None = None
    error: str | None = None  # the policy itself could not be read: nothing can be judged
    policies: list[str] = field(default_factory=list)  # endpoint policies (NSX-V: service profiles) read
    groups: list[NsxGroup] = field(default_factory=list)
    vms: list[NsxVm] = field(default_factory=list)
    # "<what>: <reason>" for each rule list or group whose members could not be read: a VM found in no read
    # group may be in one of these, so it has no evidence (error), never a pass nor a finding.
    unreadable: list[str] = field(default_factory=list)
    api_calls: int = 0


@dataclass
class InventoryRef:
    name: str
    path: str
    sha256: str
    nsx: str
    scope_clusters: list[str]
    scope_hosts: list[str]
    dsva_vm_pattern: str
    include_unmatched_agents: bool
    tls_exceptions: list[str]
    security_update_max_age_h: float = 48.0  # UPD-005: the last security update is at most this old
    offline_segments: list[OfflineSegmentRef] = field(default_factory=list)  # BLD-004


@dataclass
class Snapshot:
    schema: str
    version: int
    created_utc: str
    gather_seconds: float
    inventory: InventoryRef
    dsm: DsmFacts
    vcenters: list[VcenterFacts]
    join: JoinResult
    relay_groups: list[RelayGroupFacts]
    remote: RemoteFacts = field(default_factory=RemoteFacts)
    update_path: UpdatePathFacts = field(default_factory=UpdatePathFacts)
    events: EventFacts = field(default_factory=EventFacts)
    nsx: NsxFacts = field(default_factory=NsxFacts)

    def gaps(self) -> list[str]:
        """What could not be read, one line per source (empty: every configured source the run's checks need
        was read whole; a source no selected check reads is not a gap)."""
        sources = [(f"DSM {self.dsm.url}", self.dsm.error),
                   *((f"vCenter {vc.name} ({vc.url})", vc.error) for vc in self.vcenters),
                   (f"events ({self.events.source})", self.events.error), ("update path", self.update_path.error),
                   (f"NSX Manager {self.nsx.url}", self.nsx.error or "; ".join(self.nsx.unreadable))]
        out = [f"{name}: {error}" for name, error in sources if error and error != NOT_SELECTED]
        unread: dict[str, int] = {}
        for probe in self.remote.probes:
            if probe.status not in ("ok", "not probed"):
                unread[probe.status] = unread.get(probe.status, 0) + 1
        if unread:
            out.append("hosts: " + ", ".join(f"{n} {status}" for status, n in sorted(unread.items())))
        return out

    def to_json(self) -> str:
        # json's C encoder, each dataclass handed over as a shallow dict: dataclasses.asdict deep-copies every
        # object first, and an indent makes json fall back to its pure-Python encoder (4.9 s at 10,000 VMs, now
        # 0.9 s). One line, keys sorted: `jq . snapshot.json` shows it indented. ASCII with \u escapes: a lone
        # surrogate a source sent (valid in JSON) is kept as it came instead of failing the UTF-8 encoding.
        return json.dumps(self, default=_fields_of, sort_keys=True, separators=(",", ":"))

    def write(self, path: Path) -> str:
        """Write the snapshot; return its SHA-256 (shown in the report so it can be re-verified)."""
        data = self.to_json().encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields_of(value: object) -> dict[str, object]:
    """A snapshot dataclass as the dict its JSON holds (its fields in order; nested values are json's to walk)."""
    kind = type(value)
    names = _FIELDS.get(kind)
    if names is None:
        if not dataclasses.is_dataclass(value):
            raise TypeError(f"{kind.__name__} is not part of a snapshot")
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
    return {name: getattr(value, name) for name in names}


def load(path: Path) -> tuple[Snapshot, str]:
    """Read a snapshot written by :meth:`Snapshot.write`; return it with its SHA-256."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(file, "(file)", "a readable snapshot JSON file", err.strerror) from None
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise InputError(file, "(file)", "JSON written by dsfleet", str(err)) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(file, "schema", f"{SCHEMA!r}", data.get("schema") if isinstance(data, dict) else data)
    if data.get("version") != VERSION:
        raise InputError(file, "version", f"{VERSION} (this dsfleet reads snapshot version {VERSION})",
                         data.get("version"))
    snap = _build(Snapshot, data, file, "")
    _check_references(snap, file)
    return snap, hashlib.sha256(raw).hexdigest()


def _check_references(snap: Snapshot, file: str) -> None:
    """Every id one part of the snapshot names must exist in the part it points into (a hand-edited or cut
    snapshot would otherwise fail deep inside a check)."""
    computers = {c.id for c in snap.dsm.computers}
    vms = {vm.key for vc in snap.vcenters for vm in vc.vms}
    hosts = {h.key for vc in snap.vcenters for h in vc.hosts}
    for i, group in enumerate(snap.relay_groups):
        for j, rid in enumerate(group.relay_ids):
            if rid not in computers:
                raise InputError(file, f"relay_groups[{i}].relay_ids[{j}]", "the id of a computer in dsm.computers",
                                 rid)
    for i, match in enumerate(snap.join.matches):
        if match.computer_id not in computers:
            raise InputError(file, f"join.matches[{i}].computer_id", "the id of a computer in dsm.computers",
                             match.computer_id)
        if match.vm_key not in vms:
            raise InputError(file, f"join.matches[{i}].vm_key", "the key of a VM in vcenters[].vms", match.vm_key)
    for v, vc in enumerate(snap.vcenters):
        for i, vm in enumerate(vc.vms):
            if vm.host_key is not None and vm.host_key not in hosts:
                raise InputError(file, f"vcenters[{v}].vms[{i}].host_key", "the key of a host in vcenters[].hosts",
                                 vm.host_key)


# One resolution per dataclass, not per object: a 10,000-VM snapshot holds ~80,000 objects.
_hints = functools.cache(typing.get_type_hints)


def _build(cls: Any, data: Any, file: str, path: str) -> Any:
    """Rebuild a dataclass from JSON, checking every field's type; errors name the field path."""
    if not isinstance(data, dict):
        raise InputError(file, path or "(top level)", f"an object for {cls.__name__}", data)
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        where = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise InputError(file, where, "present (required)")
        kwargs[f.name] = _value(hints[f.name], data[f.name], file, where)
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise InputError(file, f"{path}.{unknown[0]}" if path else unknown[0], "no such field")
    return cls(**kwargs)


def _value(hint: Any, value: Any, file: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _value(inner[0], value, file, where)
    if origin is list:
        if not isinstance(value, list):
            raise InputError(file, where, "a list", value)
        (item,) = typing.get_args(hint)
        return [_value(item, v, file, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, file, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise InputError(file, where, hint.__name__, value)
    return value
