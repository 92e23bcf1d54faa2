"""Run the gatherers once and assemble the snapshot. Read-only; failures become recorded reasons."""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, Callable, TypeVar

from . import events as events_mod
from . import remote as remote_mod
from . import updatepath
from . import vcenter
from .dsm import DsmClient
from .errors import DsfleetError, GatherError
from .inventory import Inventory
from .join import join
from .fleet import Fleet
from .snapshot import (SCHEMA, VERSION, DsmComputer, DsmFacts, EventFacts, InventoryRef, RelayGroupFacts,
                       RemoteFacts, Snapshot, SourceProbe, UpdatePathFacts, VcenterFacts)

T = TypeVar("T")

# Only what the checks read: status messages, anti-malware state, the relay setting, the VM summary.
DSM_EXPAND = ["computerStatus", "antiMalware", "computerSettings", "vmwareVMVirtualMachineSummary"]


def dsm_client(inv: Inventory) -> DsmClient:
    return DsmClient(base_url=inv.dsm.url, api_key=inv.secret(inv.dsm.api_key_env, "dsm.api_key_env"),
                     auth_style=inv.dsm.auth, verify=inv.dsm.tls.requests_verify, timeout_s=inv.dsm.timeout_s,
                     retries=inv.dsm.retries)


def _shown(value: Any) -> str:
    """A value as a reason shows it: its repr, long ones (a whole sub-object) cut at 80 characters."""
    text = repr(value)
    return text[:80] + "…" if len(text) > 80 else text


class _Record:
    """One REST computer object, read field by field against the type the official SDK declares.

    A field of the wrong type reads as absent and is noted once in ``problems``, so one bad field costs only the
    checks that need that computer (they error with the note), never the whole DSM read.
    """

    def __init__(self, raw: dict[str, Any], computer_id: int) -> None:
        self.raw, self.id = raw, computer_id
        self.problems: list[str] = []

    def _get(self, path: str, fits: Callable[[Any], bool], expected: str) -> Any:
        node: Any = self.raw
        keys = path.split(".")
        for depth, key in enumerate(keys):
            if node is None:
                return None
            if not isinstance(node, dict):
                self._note(".".join(keys[:depth]), "an object", node)
                return None
            node = node.get(key)
        if node is None or fits(node):
            return node
        self._note(path, expected, node)
        return None

    def _note(self, path: str, expected: str, got: Any) -> None:
        line = f"DSM computer {self.id}: {path}: expected {expected}, got {_shown(got)}"
        if line not in self.problems:
            self.problems.append(line)

    def text(self, path: str) -> str | None:
        value: str | None = self._get(path, lambda v: isinstance(v, str), "a string")
        return value

    def integer(self, path: str) -> int | None:
        value: int | None = self._get(path, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
        return value

    def texts(self, path: str) -> list[str]:
        value: list[str] | None = self._get(
            path, lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v), "a list of strings")
        return list(value or [])


def computer_from_api(raw: Any, position: int) -> DsmComputer:
    """Reduce one REST computer object to the snapshot record (field names per the official SDK).

    ``position`` (1-based, in the order the DSM listed them) names a record whose ``ID`` is unusable: such a
    record raises ValueError with the reason, since its evidence cannot be tied to any computer.
    """
    computer_id = raw.get("ID") if isinstance(raw, dict) else None
    if not isinstance(computer_id, int) or isinstance(computer_id, bool):
        what, got = ("an integer ID", computer_id) if isinstance(raw, dict) else ("an object", raw)
        name = (raw.get("hostName") or raw.get("displayName")) if isinstance(raw, dict) else None
        raise ValueError(f"computer record {position}{f' ({name!r})' if isinstance(name, str) else ''}: "
                         f"expected {what}, got {_shown(got)}")
    r = _Record(raw, computer_id)
    relay_value = r.text("computerSettings.platformSettingRelayState.value")
    computer = DsmComputer(
        id=computer_id, host_name=r.text("hostName") or "", display_name=r.text("displayName") or "",
        platform=r.text("platform") or "", agent_version=r.text("agentVersion"),
        relay_list_id=r.integer("relayListID"),
        is_relay=None if relay_value is None else relay_value.lower() == "true",
        appliance_protected=bool(r.text("applianceFingerPrint")),
        bios_uuid=r.text("biosUUID") or r.text("vmwareVMVirtualMachineSummary.biosUUID"),
        agent_status=r.text("computerStatus.agentStatus"), agent_messages=r.texts("computerStatus.agentStatusMessages"),
        appliance_status=r.text("computerStatus.applianceStatus"),
        appliance_messages=r.texts("computerStatus.applianceStatusMessages"),
        am_state=r.text("antiMalware.state"),
        am_messages=[m for m in (r.text("antiMalware.moduleStatus.agentStatusMessage"),
                                 r.text("antiMalware.moduleStatus.applianceStatusMessage")) if m],
        vm_state=r.text("vmwareVMVirtualMachineSummary.state"),
    )
    computer.problems = r.problems
    return computer


def gather_dsm(inv: Inventory, client: DsmClient | None = None) -> DsmFacts:
    """The DSM's computers and version. A record without a usable ID is listed in ``unreadable`` and makes the
    source partial (``error`` set, the readable computers kept): whose evidence is missing is unknown."""
    facts = DsmFacts(url=inv.dsm.url, auth=inv.dsm.auth, tls_verify=inv.dsm.tls.verify)
    client = client or dsm_client(inv)
    try:
        for position, raw in enumerate(client.search_computers(DSM_EXPAND, page_size=inv.dsm.page_size), 1):
            try:
                facts.computers.append(computer_from_api(raw, position))
            except ValueError as err:
                facts.unreadable.append(str(err))
    except GatherError as err:
        facts.error = str(err)
        facts.computers, facts.unreadable = [], []
        facts.api_calls = client.calls
        return facts
    if facts.unreadable:
        first = "; ".join(facts.unreadable[:3])
        more = len(facts.unreadable) - 3
        facts.error = (f"{len(facts.unreadable)} computer records could not be read: {first}"
                       + (f"; and {more} more (listed in the snapshot's dsm.unreadable)" if more > 0 else ""))
    if inv.dsm.on_premises:
        try:
            facts.manager_version = client.manager_version()
        except GatherError as err:
            facts.manager_version_error = str(err)
    else:
        facts.manager_version_error = ("not applicable: Cloud One / Vision One managers are run and "
                                       "upgraded by Trend Micro")
    facts.api_calls = client.calls
    return facts


def gather_vcenter(inv: Inventory, index: int) -> VcenterFacts:
    endpoint = inv.vcenters[index]
    password = inv.secret(endpoint.password_env, f"vcenters[{index}].password_env")
    return vcenter.gather(endpoint, password)


def relay_groups(inv: Inventory, computers: list[DsmComputer]) -> list[RelayGroupFacts]:
    """Relay group membership: from the inventory where given, else inferred (the API does not expose it)."""
    relays = [c for c in computers if c.is_relay]
    by_name = {n.lower(): c for c in relays for n in (c.host_name, c.display_name) if n}
    groups: dict[int, RelayGroupFacts] = {}
    for g in inv.relay_groups:
        members = [by_name[n.lower()] for n in g.relays if n.lower() in by_name]
        groups[g.id] = RelayGroupFacts(id=g.id, name=g.name, relay_ids=sorted(c.id for c in members),
                                       source="inventory",
                                       unresolved=[n for n in g.relays if n.lower() not in by_name])
    referenced = {c.relay_list_id for c in computers if c.relay_list_id is not None}
    for gid in sorted(referenced - set(groups)):
        members = [c for c in relays if c.relay_list_id == gid]
        groups[gid] = RelayGroupFacts(id=gid, name=f"relay group {gid}", relay_ids=sorted(c.id for c in members),
                                      source="inferred from each relay's own relayListID")
    return [groups[k] for k in sorted(groups)]


def gather(inv: Inventory, since: dt.datetime | None = None) -> Snapshot:
    """Gather every source concurrently (each is one bulk conversation) and join the results.

    ``since`` opens the events window (default: the last 24 hours).
    """
    started = time.monotonic()
    until = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    since = since or until - dt.timedelta(hours=24)
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    # Resolve every secret first: a missing one is an input error before anything is contacted.
    client = dsm_client(inv)
    for i, vc in enumerate(inv.vcenters):
        inv.secret(vc.password_env, f"vcenters[{i}].password_env")
    passwords = remote_passwords(inv)
    proxy_auth = _proxy_auth(inv)
    soap_password = (inv.secret(inv.events.soap_password_env, "events.soap_password_env")
                     if inv.events is not None and inv.events.soap_password_env else None)
    deadline = started + inv.deadline_s
    late = f"not read: the gathering deadline of {inv.deadline_s:g} s (inventory deadline_s) passed"
    dsm_future = _background("dsm", lambda: gather_dsm(inv, client))
    vc_futures = [_background(f"vcenter-{i}", partial(gather_vcenter, inv, i)) for i in range(len(inv.vcenters))]
    path_future = _background("update-path", lambda: gather_update_path(inv, client, proxy_auth))
    events_future = _background("events", lambda: gather_events(inv, soap_password, since, until))
    dsm = _by(deadline, dsm_future, lambda: DsmFacts(url=inv.dsm.url, auth=inv.dsm.auth,
                                                        tls_verify=inv.dsm.tls.verify, error=late))
    vcenters = [_by(deadline, f, partial(VcenterFacts, name=vc.name, url=vc.url, tls_verify=vc.tls.verify, error=late))
                for f, vc in zip(vc_futures, inv.vcenters)]
    update_path = _by(deadline, path_future, lambda: UpdatePathFacts(configured=True, error=late))
    event_facts = _by(deadline, events_future, lambda: EventFacts(
        configured=True, source=inv.events.source if inv.events else None, error=late))
    all_vms = [vm for vc in vcenters for vm in vc.vms]
    snap = Snapshot(
        schema=SCHEMA, version=VERSION, created_utc=created, gather_seconds=round(time.monotonic() - started, 3),
        inventory=InventoryRef(name=inv.name, path=str(inv.path), sha256=inv.sha256, nsx=inv.nsx,
                               scope_clusters=list(inv.scope.clusters), scope_hosts=list(inv.scope.hosts),
                               dsva_vm_pattern=inv.dsva_vm_pattern,
                               include_unmatched_agents=inv.dsm.include_unmatched_agents, tls_exceptions=inv.tls_exceptions),
        dsm=dsm, vcenters=vcenters, join=join(dsm.computers, all_vms),
        relay_groups=relay_groups(inv, dsm.computers),
    )
    snap.update_path, snap.events = update_path, event_facts
    # Remote commands need to know which hosts and VMs exist, so they run after the bulk gather.
    snap.remote = gather_remote(inv, Fleet(snap), passwords, deadline)
    snap.update_path.probes += relay_probes(inv, snap, passwords, deadline)
    snap.gather_seconds = round(time.monotonic() - started, 3)
    return snap


def _background(name: str, fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` in a daemon thread: one still stuck at the deadline never holds up the interpreter's exit
    (a ThreadPoolExecutor's workers are joined at exit, so a hung call there would hang the run)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)

    threading.Thread(target=run, name=f"gather-{name}", daemon=True).start()
    return future


def _by(deadline: float, future: Future[T], late: Callable[[], T]) -> T:
    """The source's facts, or ``late()`` (facts carrying the deadline as their error) if it has not finished."""
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        return late()


def _proxy_auth(inv: Inventory) -> tuple[str, str] | None:
    p = inv.update_proxy
    if p is None or not p.user_env:
        return None
    return (inv.secret(p.user_env, "update_proxy.user_env"),
            inv.secret(p.password_env, "update_proxy.password_env") if p.password_env else "")


def gather_update_path(inv: Inventory, client: DsmClient, proxy_auth: tuple[str, str] | None) -> UpdatePathFacts:
    """The DSM's update-source settings, and one probe of that source through the inventory's proxy."""
    if inv.update_source is None:
        return UpdatePathFacts()
    facts = UpdatePathFacts(configured=True, proxy_url=inv.update_proxy.url if inv.update_proxy else None)
    try:
        facts.source_mode = client.system_setting(updatepath.SETTINGS["mode"])
        facts.source_url = client.system_setting(updatepath.SETTINGS["url"])
        facts.proxy_setting = client.system_setting(updatepath.SETTINGS["proxy"])
    except GatherError as err:
        facts.error = f"the DSM's update settings were not read: {err}"
        return facts
    facts.probe_url = updatepath.probe_url(updatepath.source_url(facts.source_mode, facts.source_url))
    facts.probes.append(updatepath.probe(facts.probe_url, facts.proxy_url, proxy_auth, inv.update_source.trust_ca,
                                         inv.update_source.timeout_s))
    return facts


def relay_probes(inv: Inventory, snap: Snapshot, passwords: dict[str, str | None],
                 deadline: float | None = None) -> list[SourceProbe]:
    """The same source, probed from each relay the inventory lists (curl over SSH, read-only)."""
    facts = snap.update_path
    if inv.update_source is None or not inv.update_source.relays or facts.probe_url is None:
        return []
    url, relays = facts.probe_url, inv.update_source.relays
    proxy = inv.update_proxy.url if inv.update_proxy else None

    def not_probed(reason: str) -> list[SourceProbe]:
        return [SourceProbe(origin=r, url=url, proxy=proxy, status="not probed", reason=reason) for r in relays]

    if inv.remote is None or "relay" not in inv.remote.roles:
        return not_probed("no remote.relay access in the inventory")
    if inv.update_proxy is not None and inv.update_proxy.user_env:
        return not_probed("the proxy needs credentials, and dsfleet sends no secret to a host")
    try:
        command = updatepath.relay_command(url, proxy, inv.update_source.timeout_s)
    except ValueError as err:
        return not_probed(str(err))
    targets = [remote_mod.ProbeTarget("relay", f"relay/{r}", r, r, commands=(command,)) for r in relays]
    out = []
    for probe in remote_mod.probe_all(targets, inv.remote, inv.nsx, passwords, _remaining(deadline)):
        if probe.status != "ok":
            out.append(SourceProbe(origin=probe.name, url=url, proxy=proxy, status="not probed",
                                   reason=f"{probe.status}: {probe.reason}"))
            continue
        o = probe.outputs[0]
        out.append(updatepath.parse_curl(probe.name, url, proxy, o.stdout, o.stderr, o.rc))
    return out


def gather_events(inv: Inventory, soap_password: str | None, since: dt.datetime, until: dt.datetime) -> EventFacts:
    if inv.events is None:
        return EventFacts()
    src = inv.events
    facts = EventFacts(configured=True, source=src.source, since_utc=since.isoformat(), until_utc=until.isoformat())
    try:
        if src.source == "cef":
            events_mod.read_cef(src.cef_paths, since, until, facts)
        else:
            assert src.soap_user is not None and soap_password is not None
            facts.events, facts.scanned = events_mod.read_soap(
                inv.dsm.url, inv.dsm.tls.requests_verify, src.soap_user, soap_password, src.soap_tenant,
                since, until, inv.dsm.timeout_s)
    except (DsfleetError, OSError) as err:
        facts.error = str(err)
    return facts


def remote_passwords(inv: Inventory) -> dict[str, str | None]:
    if inv.remote is None:
        return {}
    return {role: inv.secret(a.password_env, f"remote.{role}.password_env") if a.password_env else None
            for role, a in inv.remote.roles.items()}


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def gather_remote(inv: Inventory, fleet: Fleet, passwords: dict[str, str | None],
                  deadline: float | None = None) -> RemoteFacts:
    if inv.remote is None:
        return RemoteFacts()
    started = time.monotonic()
    targets = fleet.remote_targets({role: a.address for role, a in inv.remote.roles.items()})
    probes = remote_mod.probe_all(targets, inv.remote, inv.nsx, passwords, _remaining(deadline))
    return RemoteFacts(configured_roles=sorted(inv.remote.roles), concurrency=inv.remote.concurrency,
                       verify_host_keys=inv.remote.verify_host_keys, seconds=round(time.monotonic() - started, 3),
                       probes=probes)
