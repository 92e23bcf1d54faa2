"""Read-only vCenter gatherer over pyvmomi: every host and VM in one property-collector query.

One ContainerView over the root folder and one ``RetrievePropertiesEx`` (continued with
``ContinueRetrievePropertiesEx`` while the server returns a token) read every property the checks
need; nothing is read per object. An explicit SSL context is always passed, because pyvmomi silently
disables verification for loopback hosts when none is given.
"""

from __future__ import annotations

import multiprocessing
import os
import http.client
import ssl
from urllib.parse import urlsplit
from xml.etree import ElementTree
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
from pyVim.connect import Connect, Disconnect
from pyVmomi import vim, vmodl
from pyVmomi.VmomiSupport import GetServiceVersions, versionIdMap

from .errors import AuthError, GatherError
from .inventory import VcenterEndpoint
from .neterrors import plain_reason
from .snapshot import VcenterFacts, VcHost, VcVm

VM_PROPERTIES = (
    "name", "runtime.powerState", "runtime.host", "config.uuid", "config.instanceUuid", "config.guestId",
    "config.template", "guest.guestFamily", "guest.toolsRunningStatus", "guest.toolsVersionStatus2",
    "guest.hostName", "guest.ipAddress",
)
HOST_PROPERTIES = ("name", "parent", "runtime.connectionState", "runtime.inMaintenanceMode",
                   "summary.config.product.fullName")
CLUSTER_PROPERTIES = ("name",)


def ssl_context(verify: bool, ca_bundle: str | None) -> ssl.SSLContext:
    """The context pyvmomi must use: verifying (system store or the CA bundle) unless turned off."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_bundle)


@dataclass
class CallCounter:
    """Counts SOAP calls made through a pyvmomi stub after login (for the benchmark and the snapshot)."""

    calls: int = 0

    def wrap(self, stub: Any) -> None:
        for name in ("InvokeMethod", "InvokeAccessor"):
            original: Callable[..., Any] = getattr(stub, name)

            def counted(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
                self.calls += 1
                return _original(*args, **kwargs)

            setattr(stub, name, counted)


def api_version(endpoint: VcenterEndpoint) -> str:
    """The newest vim25 version both pyVmomi and the server speak, read with connect and read timeouts.

    pyVmomi's SmartConnect reads ``/sdk/vimServiceVersions.xml`` over an ``HTTPSConnection`` without a
    timeout (``httpConnectionTimeout`` does not cover it): a vCenter that accepts TCP and never answers would
    hang the run forever. The same document is read here, bounded, without following redirects.
    """
    url = f"https://{endpoint.host}:{endpoint.port}/sdk/vimServiceVersions.xml"
    try:
        response = requests.get(url, timeout=(endpoint.timeout_s, endpoint.timeout_s), allow_redirects=False,
                                verify=endpoint.tls.requests_verify)
    except requests.RequestException as err:
        raise GatherError(f"cannot connect: {plain_reason(err)}") from None
    if response.is_redirect:
        target = urlsplit(response.headers.get("Location", "")).hostname or "an unnamed location"
        raise GatherError(f"vCenter {endpoint.url} answered {response.status_code} redirecting to {target}: not "
                          f"followed (credentials are never sent to another host)")
    if response.status_code != 200:
        raise GatherError(f"vCenter {endpoint.url}: GET /sdk/vimServiceVersions.xml answered HTTP "
                          f"{response.status_code} {response.reason}: is this a vCenter?")
    try:
        root = ElementTree.fromstring(response.content)
    except ElementTree.ParseError as err:
        raise GatherError(f"vCenter {endpoint.url}: vimServiceVersions.xml is not XML ({err})") from None
    offered = {v.text for v in root.iter("version")}
    for version in GetServiceVersions("vim25"):  # newest first
        if versionIdMap[version] in offered:
            return str(version)
    raise GatherError(f"vCenter {endpoint.url} offers API versions {', '.join(sorted(filter(None, offered)))}: "
                      f"none is one pyVmomi speaks")


def connect(endpoint: VcenterEndpoint, password: str) -> Any:
    context = ssl_context(endpoint.tls.verify, str(endpoint.tls.ca_bundle) if endpoint.tls.ca_bundle else None)
    version = api_version(endpoint)
    try:
        # Connect with a known version makes no further unbounded call; httpConnectionTimeout bounds the rest.
        return Connect(host=endpoint.host, port=endpoint.port, user=endpoint.user, pwd=password,
                       service="hostd", version=version, sslContext=context,
                       httpConnectionTimeout=endpoint.timeout_s)
    except vim.fault.InvalidLogin:
        raise AuthError(f"authentication failed: vCenter {endpoint.url} rejected user {endpoint.user}") from None
    except (ssl.SSLError, OSError, http.client.HTTPException) as err:
        raise GatherError(f"cannot connect: {plain_reason(err)}") from None
    except vmodl.MethodFault as err:
        raise GatherError(f"vCenter {endpoint.url} refused the login: {getattr(err, 'msg', err)}") from None


def _collect(content: Any, spec: Any, page_size: int) -> Iterator[Any]:
    pc = vmodl.query.PropertyCollector
    collector = content.propertyCollector
    result = collector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=page_size))
    while result is not None:
        yield from result.objects
        if not result.token:
            break
        result = collector.ContinueRetrievePropertiesEx(result.token)


def retrieve(content: Any, page_size: int, vm_properties: tuple[str, ...] = VM_PROPERTIES) -> Iterator[Any]:
    """Yield every ObjectContent for hosts, VMs and clusters, following continuation tokens.

    With ``vm_properties=()`` VMs come back as bare references (for splitting the read across processes).
    """
    view = content.viewManager.CreateContainerView(
        content.rootFolder, [vim.HostSystem, vim.VirtualMachine, vim.ClusterComputeResource], True)
    try:
        pc = vmodl.query.PropertyCollector
        traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=list(vm_properties), all=False),
                     pc.PropertySpec(type=vim.HostSystem, pathSet=list(HOST_PROPERTIES)),
                     pc.PropertySpec(type=vim.ClusterComputeResource, pathSet=list(CLUSTER_PROPERTIES))])
        yield from _collect(content, spec, page_size)
    finally:
        view.Destroy()


VMS_PER_PROCESS = 2500  # below this, a worker's start-up (imports, login) costs more than its parse saves


def _vm_workers(count: int) -> int:
    return max(1, min(os.cpu_count() or 1, count // VMS_PER_PROCESS))


def _vm_properties(si: Any, content: Any, name: str, moids: list[str], page_size: int) -> list[VcVm]:
    """One RetrievePropertiesEx over these VMs, named by reference (no traversal)."""
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=vim.VirtualMachine(m, si._stub), skip=False) for m in moids],
                         propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=list(VM_PROPERTIES))])
    return facts_from_objects(name, _collect(content, spec, page_size))[1]


def read_vms(endpoint: VcenterEndpoint, password: str, moids: list[str]) -> tuple[list[VcVm], int]:
    """In a worker process: its own session, then the same bulk read over its share of the VMs."""
    counter = CallCounter()
    si = connect(endpoint, password)
    try:
        counter.wrap(si._stub)
        return _vm_properties(si, si.RetrieveContent(), endpoint.name, moids, endpoint.page_size), counter.calls
    finally:
        Disconnect(si)


def facts_from_objects(name: str, objects: Iterator[Any]) -> tuple[list[VcHost], list[VcVm]]:
    """Turn property-collector results into snapshot records (no further calls are made)."""
    clusters: dict[str, str] = {}
    raw_hosts: list[tuple[str, dict[str, Any]]] = []
    raw_vms: list[tuple[str, dict[str, Any]]] = []
    for obj in objects:
        props = {p.name: p.val for p in obj.propSet}
        moid = obj.obj._moId
        if isinstance(obj.obj, vim.ClusterComputeResource):
            clusters[moid] = props.get("name", moid)
        elif isinstance(obj.obj, vim.HostSystem):
            raw_hosts.append((moid, props))
        elif isinstance(obj.obj, vim.VirtualMachine):
            raw_vms.append((moid, props))
    hosts = []
    for moid, p in raw_hosts:
        parent = p.get("parent")
        cluster = clusters.get(parent._moId) if isinstance(parent, vim.ClusterComputeResource) else None
        hosts.append(VcHost(key=f"{name}/{moid}", name=p.get("name", moid), cluster=cluster,
                            connection_state=_str(p.get("runtime.connectionState")),
                            in_maintenance=p.get("runtime.inMaintenanceMode"),
                            product=p.get("summary.config.product.fullName")))
    vms = []
    for moid, p in raw_vms:
        host = p.get("runtime.host")
        vms.append(VcVm(
            key=f"{name}/{moid}", name=p.get("name", moid),
            host_key=f"{name}/{host._moId}" if host is not None else None,
            power_state=_str(p.get("runtime.powerState")), uuid=p.get("config.uuid"),
            instance_uuid=p.get("config.instanceUuid"), guest_id=p.get("config.guestId"),
            guest_family=p.get("guest.guestFamily"), tools_running=p.get("guest.toolsRunningStatus"),
            tools_version_status=p.get("guest.toolsVersionStatus2"), guest_hostname=p.get("guest.hostName"),
            template=bool(p.get("config.template", False)), ip_address=p.get("guest.ipAddress")))
    return hosts, vms


def gather(endpoint: VcenterEndpoint, password: str) -> VcenterFacts:
    """Read one vCenter; on failure the returned facts carry the reason in ``error``."""
    facts = VcenterFacts(name=endpoint.name, url=endpoint.url, tls_verify=endpoint.tls.verify)
    counter = CallCounter()
    try:
        si = connect(endpoint, password)
    except GatherError as err:
        facts.error = str(err)
        return facts
    try:
        counter.wrap(si._stub)
        content = si.RetrieveContent()
        about = content.about
        facts.product, facts.version, facts.build = about.fullName, about.version, about.build
        facts.instance_uuid = about.instanceUuid
        # Hosts and clusters in full, VMs as bare references; then the VMs' properties in one more bulk query.
        objects = list(retrieve(content, endpoint.page_size, vm_properties=()))
        facts.hosts, _ = facts_from_objects(endpoint.name, iter(objects))
        moids = [o.obj._moId for o in objects if isinstance(o.obj, vim.VirtualMachine)]
        workers = _vm_workers(len(moids))
        if workers == 1:
            facts.vms = _vm_properties(si, content, endpoint.name, moids, endpoint.page_size)
        else:
            # pyvmomi's XML parse is CPU-bound on one core: a large inventory is read by several processes,
            # each one bulk query over its share of the VMs (still a handful of calls, never one per VM).
            chunks = [moids[i::workers] for i in range(workers)]
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for vms, calls in pool.map(read_vms, [endpoint] * workers, [password] * workers, chunks):
                    facts.vms += vms
                    counter.calls += calls
    except (vmodl.MethodFault, GatherError, BrokenProcessPool) as err:
        facts.error = f"reading vCenter {endpoint.url} failed: {getattr(err, 'msg', None) or err}"
    except (OSError, http.client.HTTPException) as err:
        facts.error = f"reading vCenter {endpoint.url} failed: {plain_reason(err)}"
    finally:
        facts.api_calls = counter.calls
        try:
            Disconnect(si)
        except Exception:  # noqa: BLE001 - logging out is best effort; the facts are already read
            pass
    return facts


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
