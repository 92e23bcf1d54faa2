"""Run the gatherers once and assemble the snapshot. Read-only; failures become recorded reasons."""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, Callable, Collection, TypeVar

from . import events as events_mod
from . import nsx as nsx_mod
from . import remote as remote_mod
from . import shard as shard_mod
from . import updatepath
from . import vcenter
from .dsm import DsmClient
from .errors import DsfleetError, GatherError
from .inventory import Inventory
from .join import join
from .fleet import Fleet, Target, Unavailable, update_source_target
from .snapshot import (NOT_SELECTED, SCHEMA, VERSION, DsmComputer, DsmFacts, EventFacts, HostProbe, InventoryRef,
                       NsxFacts, OfflineSegmentRef, RelayGroupFacts, RemoteFacts, Snapshot, SourceProbe,
                       UpdateComponent, UpdatePathFacts, VcenterFacts)

T = TypeVar("T")

# What a run can read; a selection of checks reads only what they need (fixtures/session.py READS).
REMOTE_ROLES = ("esxi", "dsva", "windows")
SOURCES = ("dsm", "vcenter", "update_path", "events", "nsx", *(f"remote:{r}" for r in REMOTE_ROLES),
           "remote:relay", "remote:windows_agent")

# Only what the checks read: status messages, anti-malware state, the relay setting, the VM summary, and the
# outcome of the last security update (UPD-005), all in the one paged search.
DSM_EXPAND = ["computerStatus", "antiMalware", "computerSettings", "vmwareVMVirtualMachineSummary", "securityUpdates"]


def dsm_client(inv: Inventory) -> DsmClient:
    return DsmClient(base_url=inv.dsm.url, api_key=inv.secret(inv.dsm.api_key_env, "dsm.api_key_env"),
                     auth_style=inv.dsm.auth, verify=inv.dsm.tls.requests_verify, timeout_s=inv.dsm.timeout_s,
                     retries=inv.dsm.retries)


def _shown(value: Any) -> str:
    """A value as a reason shows it: its repr, long ones (a whole sub-object) cut at 80 characters."""
    text = repr(value)
    return text[:80] + "…" if len(text) > 80 else text


_PATHS: dict[str, tuple[str, ...]] = {}  # a field path → its keys (the same ~20 paths for every computer)


class _Record:
    """One REST computer object, read field by field against the type the official SDK declares.

    A field of the wrong type reads as absent and is noted once in ``problems``, so one bad field costs only the
    checks that need that computer (they error with the note), never the whole DSM read.
    """

    def __init__(self, raw: dict[str, Any], computer_id: int, prefix: str = "",
                 problems: list[str] | None = None) -> None:
        # ``prefix`` and a shared ``problems``: an object inside a list field, whose notes name it by index.
        self.raw, self.id, self.prefix = raw, computer_id, prefix
        self.problems: list[str] = [] if problems is None else problems

    def _get(self, path: str) -> Any:
        """The value at ``path``, or None where it (or an object on the way) is absent or null; an object on the
        way that is no object is noted. Called about 20 times per computer, so each path is split only once."""
        keys = _PATHS.get(path)
        if keys is None:
            keys = _PATHS[path] = tuple(path.split("."))
        node: Any = self.raw
        depth = 0
        for key in keys:
            if isinstance(node, dict):
                node = node.get(key)
            elif node is None:
                return None
            else:
                self._note(".".join(keys[:depth]), "an object", node)
                return None
            depth += 1
        return node

    def _note(self, path: str, expected: str, got: Any) -> None:
        line = f"DSM computer {self.id}: {self.prefix}{path}: expected {expected}, got {_shown(got)}"
        if line not in self.problems:
            self.problems.append(line)

    def _scalar(self, path: str, kind: type, expected: str) -> Any:
        """The value if JSON gave exactly this type (``type() is``: a JSON true is no integer), else noted."""
        value = self._get(path)
        if value is None or type(value) is kind:
            return value
        self._note(path, expected, value)
        return None

    def text(self, path: str) -> str | None:
        value: str | None = self._scalar(path, str, "a string")
        if value is not None and not _is_text(value):
            self._note(path, "text (it holds a lone UTF-16 surrogate, which no report can write)", value)
            return None
        return value

    def integer(self, path: str) -> int | None:
        value: int | None = self._scalar(path, int, "an integer")
        return value

    def texts(self, path: str) -> list[str]:
        value = self._get(path)
        if value is None:
            return []
        if isinstance(value, list) and all(isinstance(i, str) and _is_text(i) for i in value):
            return list(value)
        self._note(path, "a list of strings", value)
        return []

    def flag(self, path: str) -> bool | None:
        value: bool | None = self._scalar(path, bool, "true or false")
        return value

    def objects(self, path: str) -> list["_Record"]:
        """Each object of a list field, read field by field like the record itself."""
        value = self._get(path)
        if value is None:
            return []
        if not (isinstance(value, list) and all(isinstance(i, dict) for i in value)):
            self._note(path, "a list of objects", value)
            return []
        return [_Record(item, self.id, f"{self.prefix}{path}[{i}].", self.problems) for i, item in enumerate(value)]


def _is_text(value: str) -> bool:
    """Text UTF-8 can hold: JSON may carry a lone surrogate ("\\ud800"), which json.loads keeps as it came."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        update_status=r.text("securityUpdates.updateStatus.status"),
        update_message=r.text("securityUpdates.updateStatus.statusMessage"),
        update_last_changed_ms=r.integer("securityUpdates.lastChanged"),
        am_components=[UpdateComponent(name=c.text("name"), version=c.text("version"), latest=c.flag("latest"),
                                       platform=c.text("platform"))
                       for c in r.objects("securityUpdates.antiMalware")],
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


def gather(inv: Inventory, since: dt.datetime | None = None, sources: Collection[str] | None = None,
           progress: Callable[[str], None] | None = None, shard: shard_mod.Shard | None = None) -> Snapshot:
    """Gather every source concurrently (each is one bulk conversation) and join the results.

    ``since`` opens the events window (default: the last 24 hours). ``sources`` (names from :data:`SOURCES`)
    limits the reading to what the selected checks need; the others are recorded as not selected, so a check
    that needs one after all errors with that reason. ``progress`` is told when each source starts and ends.
    ``shard``: contact only the remote hosts of that shard (the API sources are read whole, see dsfleet.shard).
    """
    started = time.monotonic()
    until = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    since = since or until - dt.timedelta(hours=24)
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()

    def want(name: str) -> bool:
        return sources is None or name in sources

    def say(line: str) -> None:
        if progress is not None:
            progress(line)

    # Resolve every secret first: a missing one is an input error before anything is contacted.
    client = dsm_client(inv)
    for i, vc in enumerate(inv.vcenters):
        if want("vcenter"):
            inv.secret(vc.password_env, f"vcenters[{i}].password_env")
    passwords = remote_passwords(inv)
    proxy_auth = _proxy_auth(inv) if want("update_path") else None
    soap_password = (inv.secret(inv.events.soap_password_env, "events.soap_password_env")
                     if want("events") and inv.events is not None and inv.events.soap_password_env else None)
    nsx_password = (inv.secret(inv.nsx_manager.password_env, "nsx.password_env")
                    if want("nsx") and inv.nsx_manager else None)
    deadline = started + inv.deadline_s
    late = f"not read: the gathering deadline of {inv.deadline_s:g} s (inventory deadline_s) passed"

    def start(name: str, label: str, fn: Callable[[], T], missing: Callable[[str], T]) -> Callable[[], T]:
        """Start one source in the background; returns how to collect its facts (or why there are none)."""
        if not want(name):
            return lambda: missing(NOT_SELECTED)
        t0 = time.monotonic()
        say(f"{label}: reading")
        future = _background(label, fn)
        future.add_done_callback(lambda f: say(f"{label}: {_summary(f)} in {time.monotonic() - t0:.1f} s"))
        return lambda: _by(deadline, future, lambda: missing(late))

    dsm_facts = start("dsm", f"DSM {inv.dsm.url}", lambda: gather_dsm(inv, client), lambda why: DsmFacts(
        url=inv.dsm.url, auth=inv.dsm.auth, tls_verify=inv.dsm.tls.verify, error=why))
    vc_facts = [start("vcenter", f"vCenter {vc.name}", partial(gather_vcenter, inv, i), partial(
        lambda vc, why: VcenterFacts(name=vc.name, url=vc.url, tls_verify=vc.tls.verify, error=why), vc))
        for i, vc in enumerate(inv.vcenters)]
    path_facts = start("update_path", "update path", lambda: gather_update_path(inv, client, proxy_auth),
                       lambda why: UpdatePathFacts(configured=inv.update_source is not None, error=why))
    events_facts = start("events", "events", lambda: gather_events(inv, soap_password, since, until),
                         lambda why: EventFacts(configured=inv.events is not None,
                                                source=inv.events.source if inv.events else None, error=why))
    nsx_facts = start("nsx", "NSX Manager", lambda: gather_nsx(inv, nsx_password),
                      lambda why: _nsx_facts(inv, error=why))
    dsm = dsm_facts()
    vcenters = [collect() for collect in vc_facts]
    all_vms = [vm for vc in vcenters for vm in vc.vms]
    snap = Snapshot(
        schema=SCHEMA, version=VERSION, created_utc=created, gather_seconds=round(time.monotonic() - started, 3),
        inventory=InventoryRef(name=inv.name, path=str(inv.path), sha256=inv.sha256, nsx=inv.nsx,
                               scope_clusters=list(inv.scope.clusters), scope_hosts=list(inv.scope.hosts),
                               dsva_vm_pattern=inv.dsva_vm_pattern,
                               include_unmatched_agents=inv.dsm.include_unmatched_agents, tls_exceptions=inv.tls_exceptions,
                               security_update_max_age_h=inv.security_update_max_age_h,
                               offline_segments=[OfflineSegmentRef(s.name, s.bundle_relay, list(s.relays))
                                                 for s in inv.offline_segments]),
        dsm=dsm, vcenters=vcenters, join=join(dsm.computers, all_vms),
        relay_groups=relay_groups(inv, dsm.computers),
    )
    snap.update_path, snap.events, snap.nsx = path_facts(), events_facts(), nsx_facts()
    # Remote commands need to know which hosts and VMs exist, so they run after the bulk gather.
    roles = {r for r in REMOTE_ROLES if want(f"remote:{r}")}
    fleet = Fleet(snap)
    keep = None
    if shard is not None:
        shard_mod.validate(shard, fleet)  # a misspelt vCenter or cluster stops the run before any host is contacted
        keep = partial(shard_mod.probe_member, shard, fleet)
    snap.remote = gather_remote(inv, fleet, passwords, deadline, roles, say, keep)
    # A shard contacts only the hosts whose rows it judges: relays by their UPD-004 row, Windows agents by
    # their WIN-001 row (dsfleet.shard.member decides both, as for every other row).
    def owns(target: Target) -> bool:
        return shard is None or shard_mod.member(shard, fleet, target)

    if want("remote:relay"):
        snap.update_path.probes += relay_probes(inv, snap, passwords, deadline,
                                                lambda relay: owns(update_source_target(relay)))
    if want("remote:windows_agent"):
        snap.remote.probes += windows_agent_probes(inv, Fleet(snap), passwords, deadline, owns)
    snap.gather_seconds = round(time.monotonic() - started, 3)
    return snap


def _summary(future: Future[Any]) -> str:
    """One line for the progress display: what a source read, or why it read nothing."""
    try:
        facts = future.result()
    except BaseException as err:  # noqa: BLE001 - reported by the collector too; here only shown
        return f"failed: {err}"
    error = getattr(facts, "error", None)
    if isinstance(facts, DsmFacts):
        read = f"{len(facts.computers)} computers in {facts.api_calls} calls"
    elif isinstance(facts, VcenterFacts):
        read = f"{len(facts.hosts)} hosts and {len(facts.vms)} VMs in {facts.api_calls} calls"
    elif isinstance(facts, EventFacts):
        read = f"{len(facts.events)} events 2205/9017 of {facts.scanned} read"
    elif isinstance(facts, UpdatePathFacts):
        read = f"{len(facts.probes)} probe(s)"
    else:
        read = "read"
    return f"NOT READ: {error}" if error else read


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


_OTHER_SHARD = "not contacted: its row is judged by another shard"


def relay_probes(inv: Inventory, snap: Snapshot, passwords: dict[str, str | None],
                 deadline: float | None = None, keep: Callable[[str], bool] | None = None) -> list[SourceProbe]:
    """The same source, probed from each relay the inventory lists (curl over SSH, read-only); ``keep``: the
    relays this shard judges (the others are not contacted)."""
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
    mine = [r for r in relays if keep is None or keep(r)]
    targets = [remote_mod.ProbeTarget("relay", f"relay/{r}", r, r, commands=(command,)) for r in mine]
    out = [SourceProbe(origin=r, url=url, proxy=proxy, status="not probed", reason=_OTHER_SHARD)
           for r in relays if r not in mine]
    for probe in remote_mod.probe_all(targets, inv.remote, inv.nsx, passwords, _remaining(deadline)):
        if probe.status != "ok":
            out.append(SourceProbe(origin=probe.name, url=url, proxy=proxy, status="not probed",
                                   reason=f"{probe.status}: {probe.reason}"))
            continue
        o = probe.outputs[0]
        out.append(updatepath.parse_curl(probe.name, url, proxy, o.stdout, o.stderr, o.rc))
    return out


def windows_agent_probes(inv: Inventory, fleet: Fleet, passwords: dict[str, str | None],
                         deadline: float | None = None,
                         keep: Callable[[Target], bool] | None = None) -> list[HostProbe]:
    """Trusted roots and installed updates of every Windows agent and relay (WIN-001), over remote.windows_agent.
    Without that access, or without the DSM, nothing is probed: WIN-001 then errors with the reason."""
    access = inv.remote.roles.get("windows_agent") if inv.remote is not None else None
    if inv.remote is None or access is None:
        return []
    try:
        targets = fleet.windows_agent_targets(
            access.address, None if keep is None else lambda host: None if keep(host) else _OTHER_SHARD)
    except Unavailable:
        return []
    return remote_mod.probe_all(targets, inv.remote, inv.nsx, passwords, _remaining(deadline))


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


def gather_remote(inv: Inventory, fleet: Fleet, passwords: dict[str, str | None], deadline: float | None = None,
                  roles: Collection[str] = REMOTE_ROLES, say: Callable[[str], None] | None = None,
                  keep: Callable[[remote_mod.ProbeTarget], bool] | None = None) -> RemoteFacts:
    """Probe the hosts of ``roles`` (those ``keep`` accepts: a shard's own) with their read-only commands."""
    if inv.remote is None:
        return RemoteFacts()
    started = time.monotonic()
    targets = [t for t in fleet.remote_targets({role: a.address for role, a in inv.remote.roles.items()})
               if t.role in roles and (keep is None or keep(t))]
    counter = _Counter(len(targets), say) if say is not None and targets else None
    probes = remote_mod.probe_all(targets, inv.remote, inv.nsx, passwords, _remaining(deadline),
                                  counter.done if counter else None)
    seconds = time.monotonic() - started
    if say is not None and targets:
        statuses: dict[str, int] = {}
        for p in probes:
            statuses[p.status] = statuses.get(p.status, 0) + 1
        say(f"remote: {len(probes)} hosts in {seconds:.1f} s: "
            + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
    return RemoteFacts(configured_roles=sorted(inv.remote.roles), concurrency=inv.remote.concurrency,
                       verify_host_keys=inv.remote.verify_host_keys, seconds=round(seconds, 3), probes=probes)


class _Counter:
    """Hosts probed so far, with an ETA, said every few seconds as "remote: N/M hosts, about S s left" (on a
    terminal the session rewrites one line with it; in a CI log each is a line)."""

    EVERY_S = 2.0

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.say, self.count = total, say, 0
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()
        say(f"remote: probing {total} hosts")

    def done(self, n: int) -> None:
        with self.lock:
            self.count += n
            now = time.monotonic()
            if now - self.last < self.EVERY_S or self.count >= self.total:
                return
            self.last = now
            rate = self.count / (now - self.started)
            eta = (self.total - self.count) / rate if rate else float("inf")
            self.say(f"remote: {self.count}/{self.total} hosts, about {eta:.0f} s left")


def _nsx_facts(inv: Inventory, error: str | None = None) -> NsxFacts:
    m = inv.nsx_manager
    return NsxFacts(configured=m is not None, type=m.type if m else inv.nsx, url=m.url if m else None, error=error)


def gather_nsx(inv: Inventory, password: str | None, client: nsx_mod.NsxClient | None = None) -> NsxFacts:
    """The endpoint protection policy's groups and their VM members, from the NSX Manager the inventory names."""
    facts = _nsx_facts(inv)
    m = inv.nsx_manager
    if m is None:
        return facts
    assert password is not None
    client = client or nsx_mod.NsxClient(m.url, m.user, password, verify=m.tls.requests_verify,
                                         timeout_s=m.timeout_s, page_size=m.page_size)
    try:
        (nsx_mod.read_nsxt if m.type == "nsx-t" else nsx_mod.read_nsxv)(client, facts)
    except GatherError as err:
        facts = _nsx_facts(inv, error=str(err))
    facts.api_calls = client.calls
    return facts
