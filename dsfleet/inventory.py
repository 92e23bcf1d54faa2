"""The inventory: which DSM and vCenters to read, how to trust them, and what is in scope.

Validated on load. Every problem raises :class:`InputError` naming the file, the key path and what is
expected. Secrets are never read from the file: it names environment variables, resolved by
:meth:`Inventory.secret` at gather time.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from . import yamlio
from .errors import InputError

T = TypeVar("T")

DSM_AUTH_STYLES = ("api-secret-key", "apikey")  # on-premises DSM / Cloud One or Vision One
NSX_FLAVOURS = ("nsx-v", "nsx-t")
DEFAULT_DSVA_PATTERN = r"^Trend Micro Deep Security"
DEFAULT_DEADLINE_S = 900.0  # a scheduled run must end: every source gets at most this long, together
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Tls:
    verify: bool
    ca_bundle: Path | None  # None: the system trust store

    @property
    def requests_verify(self) -> bool | str:
        if not self.verify:
            return False
        return str(self.ca_bundle) if self.ca_bundle else True


@dataclass(frozen=True)
class DsmEndpoint:
    url: str  # base, without /api
    auth: str
    api_key_env: str
    tls: Tls
    timeout_s: float
    retries: int
    page_size: int
    include_unmatched_agents: bool

    @property
    def on_premises(self) -> bool:
        return self.auth == "api-secret-key"


@dataclass(frozen=True)
class VcenterEndpoint:
    name: str
    url: str
    user: str
    password_env: str
    tls: Tls
    timeout_s: float
    page_size: int

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443


@dataclass(frozen=True)
class NsxManager:
    """The NSX Manager whose endpoint protection (Guest Introspection) policy is read as evidence."""

    type: str  # nsx-t (Policy API) | nsx-v (NSX for vSphere API)
    url: str
    user: str
    password_env: str
    tls: Tls
    timeout_s: float
    page_size: int


@dataclass(frozen=True)
class Scope:
    clusters: tuple[str, ...]
    hosts: tuple[str, ...]

    @property
    def everything(self) -> bool:
        return not self.clusters and not self.hosts

    def includes(self, host: str, cluster: str | None) -> bool:
        if self.everything:
            return True
        return host.lower() in {h.lower() for h in self.hosts} or (
            cluster is not None and cluster.lower() in {c.lower() for c in self.clusters})


@dataclass(frozen=True)
class RelayGroup:
    id: int
    name: str
    relays: tuple[str, ...]  # DSM hostName or displayName of each member relay


@dataclass(frozen=True)
class Proxy:
    url: str
    user_env: str | None
    password_env: str | None


REMOTE_ROLES = ("esxi", "dsva", "windows", "relay", "windows_agent")
TRANSPORTS = {"esxi": ("ssh",), "dsva": ("ssh",), "windows": ("ssh", "winrm"), "relay": ("ssh",),
              "windows_agent": ("ssh", "winrm")}
NAME_ADDRESSED = ("esxi", "windows_agent")  # reached by name by default: the vCenter's, or the DSM's hostName
ADDRESS_SOURCES = ("name", "ip")


@dataclass(frozen=True)
class RoleAccess:
    role: str
    transport: str  # ssh (testinfra paramiko backend) | winrm (testinfra winrm backend)
    user: str
    port: int | None
    password_env: str | None
    key_file: Path | None
    address: str  # "name": the vCenter name; "ip": the guest IP VMware Tools reports
    winrm_https: bool = True
    winrm_auth: str = "ntlm"
    tls: Tls = Tls(verify=True, ca_bundle=None)  # WinRM over HTTPS: how to trust the guest's certificate


@dataclass(frozen=True)
class RemoteAccess:
    concurrency: int  # hosts in flight at once, in all worker processes together
    processes: int  # worker processes; 0 = one per 250 hosts, up to the CPU count
    connect_timeout_s: float
    command_timeout_s: float
    verify_host_keys: bool
    known_hosts: Path | None
    ssh_config: Path | None
    roles: dict[str, RoleAccess]
    # asyncssh (one event loop per worker process) | paramiko (testinfra's backend, a thread per host)
    ssh_client: str = "asyncssh"


@dataclass(frozen=True)
class UpdateSource:
    trust_ca: Path | None  # PEM of the CAs Trend Micro's update certificate must chain to; None: system store
    timeout_s: float
    relays: tuple[str, ...]  # relay hosts (DSM names) to probe the source from, over SSH (remote.relay)


EVENT_SOURCES = ("soap", "cef")
DEFAULT_UPDATE_MAX_AGE_H = 48.0  # UPD-005: a security update older than this did not follow the last upgrade


@dataclass(frozen=True)
class OfflineSegment:
    """An environment without internet access, fed by an update bundle (dsupdate_*.zip) built on one relay."""

    name: str
    bundle_relay: str  # DSM hostName or displayName of the relay that builds the bundle
    relays: tuple[str, ...]  # the relays inside the offline environment; their agents follow from relay groups


@dataclass(frozen=True)
class EventSource:
    source: str  # soap (DSM legacy SOAP API) | cef (syslog files in CEF)
    soap_user: str | None
    soap_password_env: str | None
    soap_tenant: str | None  # authenticateTenant (multi-tenant DSM, Cloud One) when set
    cef_paths: tuple[Path, ...]  # files or folders of syslog/CEF lines


@dataclass(frozen=True)
class Inventory:
    path: Path
    sha256: str
    name: str
    dsm: DsmEndpoint
    vcenters: tuple[VcenterEndpoint, ...]
    scope: Scope
    nsx: str
    dsva_vm_pattern: str
    relay_groups: tuple[RelayGroup, ...]
    update_proxy: Proxy | None
    remote: RemoteAccess | None = None
    update_source: UpdateSource | None = None
    events: EventSource | None = None
    deadline_s: float = DEFAULT_DEADLINE_S  # the whole gathering; what is not read by then is recorded as such
    nsx_manager: NsxManager | None = None  # nsx given as a mapping; ``nsx`` keeps the flavour either way
    security_update_max_age_h: float = DEFAULT_UPDATE_MAX_AGE_H
    offline_segments: tuple[OfflineSegment, ...] = ()

    def secret(self, env_name: str, field: str) -> str:
        """The value of the environment variable an inventory field names; never logged."""
        value = os.environ.get(env_name)
        if not value:
            raise InputError(str(self.path), field, f"environment variable {env_name} to be set (it holds a secret)")
        return value

    @property
    def tls_exceptions(self) -> list[str]:
        """Every endpoint whose TLS verification the inventory turned off: shown in the report."""
        out = [] if self.dsm.tls.verify else [f"DSM {self.dsm.url}"]
        out += [f"vCenter {vc.url}" for vc in self.vcenters if not vc.tls.verify]
        if self.nsx_manager is not None and not self.nsx_manager.tls.verify:
            out.append(f"NSX Manager {self.nsx_manager.url}")
        if self.remote is not None and not self.remote.verify_host_keys:
            out.append("SSH host keys (remote.verify_host_keys: false)")
        if self.remote is not None:
            out += [f"WinRM on {role} hosts (remote.{role}.tls.verify: false)" for role, a in self.remote.roles.items()
                    if a.transport == "winrm" and a.winrm_https and not a.tls.verify]
        return out


class _Node:
    """A mapping being validated; knows its file and key path for error messages."""

    def __init__(self, file: str, path: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise InputError(file, path or "(top level)", "a mapping", type(data).__name__)
        self.file, self.path, self.data = file, path, data
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type[T] | tuple[type, ...], expected: str, default: Any = ...,
            check: Callable[[Any], bool] | None = None) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise InputError(self.file, self._key(key), f"{expected} (required)")
            return default
        value = self.data[key]
        # bool is an int in Python: do not let `true` pass as a number, nor 1 as a bool.
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
        if not ok or (check is not None and not check(value)):
            raise InputError(self.file, self._key(key), expected, value)
        return value

    def child(self, key: str, required: bool = True) -> "_Node | None":
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise InputError(self.file, self._key(key), "a mapping (required)")
            return None
        return _Node(self.file, self._key(key), self.data[key])

    def items(self, key: str, required: bool = True) -> list["_Node"]:
        self.used.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                raise InputError(self.file, self._key(key), "a non-empty list (required)")
            return []
        if not isinstance(value, list) or (required and not value):
            raise InputError(self.file, self._key(key), "a non-empty list" if required else "a list", value)
        return [_Node(self.file, f"{self._key(key)}[{i}]", item) for i, item in enumerate(value)]

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, "a list of strings", default=[])
        if not all(isinstance(v, str) and v for v in value):
            raise InputError(self.file, self._key(key), "a list of non-empty strings", value)
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise InputError(self.file, self._key(unknown[0]), "no such key (known: " + ", ".join(sorted(self.used)) + ")")


def _https_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme == "https" and bool(parts.hostname)


def _env_name(value: str) -> bool:
    return bool(_ENV_NAME.match(value))


def _tls(node: _Node, base: Path) -> Tls:
    tls = node.child("tls", required=False)
    if tls is None:
        return Tls(verify=True, ca_bundle=None)
    verify = tls.get("verify", bool, "true or false", default=True)
    ca = tls.get("ca_bundle", str, "a path to a PEM CA bundle", default=None)
    ca_path = None
    if ca is not None:
        ca_path = (base / ca).resolve() if not os.path.isabs(ca) else Path(ca)
        if not ca_path.is_file():
            raise InputError(tls.file, f"{tls.path}.ca_bundle", "an existing PEM file", ca)
    tls.done()
    return Tls(verify=verify, ca_bundle=ca_path)


def load(path: str | Path) -> Inventory:
    """Load and validate an inventory file."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise InputError(file, "(file)", "a readable inventory file", err.strerror) from None
    data = yamlio.load(raw, file)
    base = Path(path).resolve().parent
    top = _Node(file, "", data)
    name = top.get("name", str, "a non-empty name for reports", check=bool)

    d = top.child("dsm")
    assert d is not None
    dsm = DsmEndpoint(
        url=d.get("url", str, "an https:// URL of the DSM (without /api)", check=_https_url).rstrip("/"),
        auth=d.get("auth", str, "one of " + ", ".join(DSM_AUTH_STYLES), default="api-secret-key",
                   check=lambda v: v in DSM_AUTH_STYLES),
        api_key_env=d.get("api_key_env", str, "the name of an environment variable", check=_env_name),
        tls=_tls(d, base),
        timeout_s=float(d.get("timeout_s", (int, float), "a positive number of seconds", default=30,
                              check=lambda v: v > 0)),
        retries=d.get("retries", int, "an integer from 0 to 10", default=4, check=lambda v: 0 <= v <= 10),
        page_size=d.get("page_size", int, "an integer from 1 to 5000", default=5000,
                        check=lambda v: 1 <= v <= 5000),
        include_unmatched_agents=d.get("include_unmatched_agents", bool, "true or false", default=True),
    )
    d.done()

    vcenters = []
    seen: set[str] = set()
    for v in top.items("vcenters"):
        vc = VcenterEndpoint(
            name=v.get("name", str, "a unique name", check=bool),
            url=v.get("url", str, "an https:// URL of the vCenter", check=_https_url),
            user=v.get("user", str, "a user name", check=bool),
            password_env=v.get("password_env", str, "the name of an environment variable", check=_env_name),
            tls=_tls(v, base),
            timeout_s=float(v.get("timeout_s", (int, float), "a positive number of seconds", default=60,
                                  check=lambda x: x > 0)),
            page_size=v.get("page_size", int, "a positive integer", default=1000, check=lambda x: x > 0),
        )
        if vc.name in seen:
            raise InputError(file, f"{v.path}.name", "a name not used by another vCenter", vc.name)
        seen.add(vc.name)
        v.done()
        vcenters.append(vc)

    s = top.child("scope", required=False)
    scope = Scope((), ())
    if s is not None:
        scope = Scope(clusters=s.strings("clusters"), hosts=s.strings("hosts"))
        s.done()

    nsx, nsx_manager = _nsx(top, base)

    pattern = DEFAULT_DSVA_PATTERN
    dv = top.child("dsva", required=False)
    if dv is not None:
        pattern = dv.get("vm_name_pattern", str, "a regular expression", default=DEFAULT_DSVA_PATTERN,
                         check=_compiles)
        dv.done()

    groups = []
    for g in top.items("relay_groups", required=False):
        gid = g.get("id", int, "the relay group's relayListID (an integer >= 0)", check=lambda v: v >= 0)
        groups.append(RelayGroup(id=gid, name=g.get("name", str, "a name", default=f"relay group {gid}"),
                                 relays=g.strings("relays")))
        g.done()

    proxy = None
    p = top.child("update_proxy", required=False)
    if p is not None:
        proxy = Proxy(
            url=p.get("url", str, "an http:// or https:// proxy URL",
                      check=lambda v: urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname)),
            user_env=p.get("user_env", str, "the name of an environment variable", default=None, check=_env_name),
            password_env=p.get("password_env", str, "the name of an environment variable", default=None,
                               check=_env_name),
        )
        p.done()
    remote = _remote(top.child("remote", required=False), base)
    update_source = _update_source(top.child("update_source", required=False), base)
    events = _events(top.child("events", required=False), base)
    max_age_h = _security_updates(top.child("security_updates", required=False))
    segments = _offline_segments(top)
    deadline = float(top.get("deadline_s", (int, float), "a number of seconds from 10 to 86400 (the gathering's "
                             "deadline)", default=DEFAULT_DEADLINE_S, check=lambda v: 10 <= v <= 86400))
    top.done()
    return Inventory(path=Path(path), sha256=hashlib.sha256(raw).hexdigest(), name=name, dsm=dsm,
                     vcenters=tuple(vcenters), scope=scope, nsx=nsx, dsva_vm_pattern=pattern,
                     relay_groups=tuple(groups), update_proxy=proxy, remote=remote, update_source=update_source,
                     events=events, deadline_s=deadline, security_update_max_age_h=max_age_h,
                     offline_segments=segments, nsx_manager=nsx_manager)


def _nsx(top: _Node, base: Path) -> tuple[str, NsxManager | None]:
    """``nsx: nsx-t`` (the flavour only: MUX names, no NSX reads) or ``nsx: {type, url, user, password_env, ...}``."""
    flavours = "one of " + ", ".join(NSX_FLAVOURS)
    if not isinstance(top.data.get("nsx"), dict):
        return top.get("nsx", str, f"{flavours}, or a mapping with type and url", check=NSX_FLAVOURS.__contains__), None
    node = top.child("nsx")
    assert node is not None
    manager = NsxManager(
        type=node.get("type", str, flavours, check=NSX_FLAVOURS.__contains__),
        url=node.get("url", str, "an https:// URL of the NSX Manager", check=_https_url).rstrip("/"),
        user=node.get("user", str, "a user name (a read-only NSX role is enough)", check=bool),
        password_env=node.get("password_env", str, "the name of an environment variable", check=_env_name),
        tls=_tls(node, base),
        timeout_s=float(node.get("timeout_s", (int, float), "a positive number of seconds", default=30,
                                 check=lambda v: v > 0)),
        page_size=node.get("page_size", int, "an integer from 1 to 1000", default=1000,
                           check=lambda v: 1 <= v <= 1000),
    )
    node.done()
    return manager.type, manager


def _security_updates(node: _Node | None) -> float:
    if node is None:
        return DEFAULT_UPDATE_MAX_AGE_H
    age = float(node.get("max_age_h", (int, float), "a number of hours from 1 to 8760 (the oldest a successful "
                         "security update may be)", default=DEFAULT_UPDATE_MAX_AGE_H, check=lambda v: 1 <= v <= 8760))
    node.done()
    return age


def _offline_segments(top: _Node) -> tuple[OfflineSegment, ...]:
    segments: list[OfflineSegment] = []
    for s in top.items("offline_segments", required=False):
        segment = OfflineSegment(
            name=s.get("name", str, "a unique name for the offline segment", check=bool),
            bundle_relay=s.get("bundle_relay", str, "the DSM hostName or displayName of the relay that builds the "
                               "update bundle (dsupdate_*.zip)", check=bool),
            relays=s.strings("relays"))
        if not segment.relays:
            raise InputError(s.file, f"{s.path}.relays", "a non-empty list of the offline relays' DSM names")
        if segment.name in {other.name for other in segments}:
            raise InputError(s.file, f"{s.path}.name", "a name not used by another offline segment", segment.name)
        s.done()
        segments.append(segment)
    return tuple(segments)


def _update_source(node: _Node | None, base: Path) -> UpdateSource | None:
    if node is None:
        return None
    source = UpdateSource(
        trust_ca=_path(node, "trust_ca", "a PEM file of the CAs Trend Micro's update certificate chains to", base),
        timeout_s=float(node.get("timeout_s", (int, float), "a positive number of seconds", default=20,
                                 check=lambda v: v > 0)),
        relays=node.strings("relays"))
    node.done()
    return source


def _events(node: _Node | None, base: Path) -> EventSource | None:
    if node is None:
        return None
    kind = node.get("source", str, "one of " + ", ".join(EVENT_SOURCES), check=EVENT_SOURCES.__contains__)
    paths = []
    for raw in node.strings("cef_paths"):
        path = Path(os.path.expanduser(raw))
        path = path if path.is_absolute() else (base / path).resolve()
        if not path.exists():
            raise InputError(node.file, f"{node.path}.cef_paths", "existing files or folders", raw)
        paths.append(path)
    events = EventSource(
        source=kind,
        soap_user=node.get("soap_user", str, "a DSM user name", default=None),
        soap_password_env=node.get("soap_password_env", str, "the name of an environment variable", default=None,
                                   check=_env_name),
        soap_tenant=node.get("soap_tenant", str, "a tenant name", default=None),
        cef_paths=tuple(paths))
    if kind == "soap" and (events.soap_user is None or events.soap_password_env is None):
        raise InputError(node.file, node.path, "soap_user and soap_password_env with source: soap")
    if kind == "cef" and not events.cef_paths:
        raise InputError(node.file, f"{node.path}.cef_paths", "at least one file or folder with source: cef")
    node.done()
    return events


def _path(node: _Node, key: str, expected: str, base: Path, must_exist: bool = True) -> Path | None:
    value = node.get(key, str, expected, default=None)
    if value is None:
        return None
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else (base / path).resolve()
    if must_exist and not path.is_file():
        raise InputError(node.file, f"{node.path}.{key}", f"an existing file ({expected})", value)
    return path


def _remote(node: _Node | None, base: Path) -> RemoteAccess | None:
    if node is None:
        return None
    verify = node.get("verify_host_keys", bool, "true or false", default=True)
    known_hosts = _path(node, "known_hosts", "an OpenSSH known_hosts file", base, must_exist=False)
    if known_hosts is None:
        known_hosts = Path(os.path.expanduser("~/.ssh/known_hosts"))
    roles = {}
    for role in REMOTE_ROLES:
        r = node.child(role, required=False)
        if r is None:
            continue
        transports = TRANSPORTS[role]
        access = RoleAccess(
            role=role,
            transport=r.get("transport", str, "one of " + ", ".join(transports), default="ssh",
                            check=transports.__contains__),
            user=r.get("user", str, "a user name", check=bool),
            port=r.get("port", int, "a TCP port", default=None, check=lambda v: 0 < v < 65536),
            password_env=r.get("password_env", str, "the name of an environment variable", default=None,
                               check=_env_name),
            key_file=_path(r, "key_file", "an SSH private key file", base),
            address=r.get("address", str, "one of " + ", ".join(ADDRESS_SOURCES),
                          default="name" if role in NAME_ADDRESSED else "ip", check=lambda v: v in ADDRESS_SOURCES),
            winrm_https=r.get("winrm_https", bool, "true or false", default=True),
            winrm_auth=r.get("winrm_auth", str, "one of ntlm, kerberos, basic, credssp", default="ntlm",
                             check=lambda v: v in ("ntlm", "kerberos", "basic", "credssp")),
            tls=_tls(r, base),
        )
        if access.password_env is None and access.key_file is None:
            raise InputError(r.file, r.path, "password_env or key_file (how to log in)")
        r.done()
        roles[role] = access
    remote = RemoteAccess(
        # 256 in flight. A Windows guest takes ≈ 190 ms at the lab's 100 ms per command, so 10,000 guests in
        # 40 s need ≥ 48 in flight; with asyncssh (the default client) a connection in flight costs no thread,
        # and more in flight keep both cores busy while others wait for their answers. Measured with
        # `lab.bench_remote --hosts 10 --concurrency N` (2,000 lab guests, 2 processes, 2 cores shared with the
        # lab's SSH server): 64 in flight 10.4 s, 128: 9.6 s, 256: 8.8 s; the whole 10,000-VM run's remote phase
        # (lab.bench_e2e) 44.0 s at 64, 36.8 s at 256. Threaded clients (paramiko, WinRM) use at most
        # remote.MAX_THREADS threads whatever this says (past 64 threads only add GIL contention).
        concurrency=node.get("concurrency", int, "an integer from 1 to 512", default=256, check=lambda v: 1 <= v <= 512),
        # Automatic (one process per 250 hosts, up to the cores): in the lab 2 processes took 16.8–21.7 s for
        # 1,000 guests against 17.9–21.1 s for 1, because the lab's SSH server (8 ms per guest) shares the same
        # 2 cores; against a real fleet the servers' CPU is elsewhere and each process bounds its share.
        processes=node.get("processes", int, "an integer from 0 (automatic) to 64", default=0,
                           check=lambda v: 0 <= v <= 64),
        connect_timeout_s=float(node.get("connect_timeout_s", (int, float), "a positive number of seconds",
                                         default=10, check=lambda v: v > 0)),
        command_timeout_s=float(node.get("command_timeout_s", (int, float), "a positive number of seconds",
                                         default=20, check=lambda v: v > 0)),
        verify_host_keys=verify, known_hosts=known_hosts,
        ssh_config=_path(node, "ssh_config", "an OpenSSH client config file", base),
        roles=roles,
        # asyncssh by default: 6 ms of client CPU per guest against paramiko's 13–16 ms (sshasync's docstring,
        # README "Remote phase"); paramiko for what only it reads from an ssh_config (GSSAPI).
        ssh_client=node.get("ssh_client", str, "asyncssh or paramiko", default="asyncssh",
                            check=lambda v: v in ("asyncssh", "paramiko")),
    )
    node.done()
    return remote


def _compiles(value: str) -> bool:
    try:
        re.compile(value)
    except re.error:
        return False
    return True
