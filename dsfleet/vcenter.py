"""Read-only vCenter gatherer over pyvmomi: every host and VM in one property-collector query.

One ContainerView over the root folder and one ``RetrievePropertiesEx`` (continued with
``ContinueRetrievePropertiesEx`` while the server returns a token) read every property the checks
need; nothing is read per object. An explicit SSL context is always passed, because pyvmomi silently
disables verification for loopback hosts when none is given.

pyvmomi builds each request and owns the session (cookie, TLS context, timeouts, connection pool), but the
property collector's answer is read here by a streaming XML parse (:func:`parse_result`) into plain records
(:class:`ObjectContent`): pyvmomi's deserializer builds a typed object per element and was most of the CPU of a
large read. Only single values are accepted (text, true/false, integers, object references, vim25
enumerations); anything else is an error naming the object and property. When the session's stub is not the
pyvmomi SOAP stub this reader knows, :class:`PyvmomiCollector` reads the same two calls through pyvmomi's own
deserializer into the same records (and is the reference the fast reader is checked against in the lab).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import multiprocessing
import os
import ssl
import zlib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, Callable, Iterable, Iterator, Protocol, cast
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.parsers.expat import ExpatError

import requests
from pyVim.connect import Connect, Disconnect
from pyVmomi import vim, vmodl
from pyVmomi.SoapAdapter import SoapResponseDeserializer, SoapStubAdapter
from pyVmomi.VmomiSupport import Enum, GetServiceVersions, GetWsdlType, ManagedObject, versionIdMap

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
ENTITY_TYPES: tuple[type[vim.ManagedEntity], ...] = (vim.HostSystem, vim.VirtualMachine, vim.ClusterComputeResource)


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



# A server that keeps handing out continuation tokens is stopped here rather than read without end: far above
# any real inventory (a vCenter manages at most tens of thousands of VMs), far below what would exhaust memory.
MAX_OBJECTS = 1_000_000

_VIM = "{urn:vim25}"
_SOAP_FAULT = "{http://schemas.xmlsoap.org/soap/envelope/}Fault"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_RETURNVAL, _OBJECTS, _TOKEN = _VIM + "returnval", _VIM + "objects", _VIM + "token"
_OBJ, _PROPSET, _NAME, _VAL = _VIM + "obj", _VIM + "propSet", _VIM + "name", _VIM + "val"
_MISSINGSET, _PATH, _FAULT, _LOCALIZED = (_VIM + "missingSet", _VIM + "path", _VIM + "fault",
                                          _VIM + "localizedMessage")
_INTEGERS = frozenset({"byte", "short", "int", "long"})
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Ref:
    """A managed object reference in an answer: its type (``VirtualMachine``) and id (``vm-42``)."""

    type: str
    moid: str


@dataclass
class ObjectContent:
    """One object of an answer and the properties it carried (a property the server left out is absent)."""

    ref: Ref
    props: dict[str, Any] = field(default_factory=dict)
    # The server's missingSet: a property it could not read (a permission the account lacks, say) → why.
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class RetrieveResult:
    objects: list[ObjectContent]
    token: str | None = None


class Collector(Protocol):
    """The two property collector calls paging needs (:class:`RawCollector`, :class:`PyvmomiCollector`, or a
    scripted one in tests)."""

    def RetrievePropertiesEx(self, specs: list[Any], options: Any) -> RetrieveResult | None:  # noqa: N802
        ...

    def ContinueRetrievePropertiesEx(self, token: str) -> RetrieveResult | None:  # noqa: N802
        ...


@functools.lru_cache(maxsize=None)
def _is_enum(wsdl_name: str) -> bool:
    """Whether a vim25 type name is an enumeration (its values are plain strings), per pyvmomi's type map."""
    try:
        kind = GetWsdlType("urn:vim25", wsdl_name)
    except KeyError:
        return False
    return isinstance(kind, type) and issubclass(kind, Enum)


def _not_scalar(where: str, kind: str) -> GatherError:
    return GatherError(f"{where}: a value of type {kind}, where dsfleet asks only for scalar properties")


def _value(val: ElementTree.Element, where: str) -> Any:
    """A scalar property value by its xsi:type: text, bool, int or a :class:`Ref`; anything else is refused."""
    kind = val.get(_XSI_TYPE)
    if kind is None:
        raise GatherError(f"{where}: the value has no xsi:type")
    # The XSD built-ins (string, boolean, int…) and the vim25 type names do not overlap, so the local name is
    # enough (a vCenter declares the xsd prefix once, but others may re-declare it on every value).
    local = kind.rpartition(":")[2]
    text = val.text or ""
    if local == "string":
        return text
    if local == "boolean":
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    elif local in _INTEGERS:
        try:
            return int(text)
        except ValueError:
            pass
    elif local == "ManagedObjectReference":
        if text and val.get("type"):  # pyvmomi refuses a reference without its type too
            return Ref(val.get("type") or "", text)
    elif _is_enum(local):
        return text
    else:
        raise _not_scalar(where, kind)
    raise GatherError(f"{where}: {text!r} is not a valid {kind}")


def _object_content(elem: ElementTree.Element) -> ObjectContent:
    ref: Ref | None = None
    props: list[ElementTree.Element] = []
    missing: list[ElementTree.Element] = []
    for child in elem:
        if child.tag == _OBJ:
            if not child.text or not child.get("type"):
                raise GatherError(f"an object in the answer has an incomplete reference (type {child.get('type')!r}, "
                                  f"id {child.text!r})")
            ref = Ref(child.get("type") or "", child.text)
        elif child.tag == _PROPSET:
            props.append(child)
        elif child.tag == _MISSINGSET:
            missing.append(child)
    if ref is None:
        raise GatherError("an object in the answer has no reference (obj)")
    content = ObjectContent(ref)
    for entry in missing:
        # <missingSet><path>…</path><fault><fault xsi:type="NoPermission">…</fault><localizedMessage>…
        path = entry.findtext(_PATH) or "(no path)"
        fault = entry.find(_FAULT)
        inner = fault.find(_FAULT) if fault is not None else None
        kind = (inner.get(_XSI_TYPE) or "").rpartition(":")[2] if inner is not None else ""
        message = (fault.findtext(_LOCALIZED) or "").strip() if fault is not None else ""
        content.missing[path] = ": ".join(x for x in (kind or "fault", message) if x)
    for prop in props:
        name, value = None, None
        for part in prop:
            if part.tag == _NAME:
                name = part.text
            elif part.tag == _VAL:
                value = part
        if not name:
            raise GatherError(f"{ref.type} {ref.moid}: a property without a name")
        if name in content.props:  # which of two values is the host's? neither is evidence
            raise GatherError(f"{ref.type} {ref.moid}: property {name} answered twice")
        content.props[name] = None if value is None else _value(value, f"{ref.type} {ref.moid} {name}")
    return content


def parse_result(chunks: Iterable[bytes], method: str) -> RetrieveResult:
    """Read one ``RetrievePropertiesEx`` / ``ContinueRetrievePropertiesEx`` answer (HTTP 200) as it arrives.

    Each ``objects`` element is turned into an :class:`ObjectContent` when it closes and then emptied, so a large
    page never exists twice in memory (as a tree and as records).
    """
    reader = _ResultReader(method)
    parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(events=("end",))
    try:
        for chunk in chunks:
            parser.feed(chunk)
            reader.take(parser)
        # expat may hold back the end of the document until it knows no more comes (reparse deferral).
        parser.close()
        reader.take(parser)
    except (ElementTree.ParseError, LookupError, ValueError) as err:  # bad XML, or an encoding it names wrongly
        raise GatherError(f"{method}: the answer is not well-formed XML ({err})") from None
    return reader.result()


class _ResultReader:
    """The state of :func:`parse_result` between two chunks of the answer."""

    def __init__(self, method: str) -> None:
        self.method, self.response_tag = method, f"{_VIM}{method}Response"
        self.objects: list[ObjectContent] = []
        self.token: str | None = None
        self.answered = self.returned = False
        self.in_result = 0  # objects found inside the result when it closed

    def take(self, parser: ElementTree.XMLPullParser[ElementTree.Element]) -> None:
        # Only end events were asked for (each carries its element): a start event per element would double
        # the Python work of this loop. Where an element sits is checked when its container closes instead.
        events = cast(Iterator[tuple[str, ElementTree.Element]], parser.read_events())
        for _event, elem in events:
            tag = elem.tag
            if tag == _OBJECTS:
                self.objects.append(_object_content(elem))
                elem.clear()
            elif tag == _RETURNVAL:
                if self.returned:
                    raise GatherError(f"{self.method}: the answer holds more than one result")
                self.returned = True
                self.token = _returnval_token(elem, len(self.objects), self.method)
                self.in_result = len(self.objects)
            elif tag == self.response_tag:
                self.answered = True
            elif tag == _SOAP_FAULT:
                reason = (elem.findtext("faultstring") or "").strip() or "no reason given"
                raise GatherError(f"{self.method}: the vCenter answered a fault: {reason}")

    def result(self) -> RetrieveResult:
        if not self.answered:
            raise GatherError(f"{self.method}: the answer holds no {self.method}Response")
        if len(self.objects) != self.in_result:
            raise GatherError(f"{self.method}: the answer holds objects outside a result")
        return RetrieveResult(self.objects, self.token)


def _returnval_token(elem: ElementTree.Element, read: int, method: str) -> str | None:
    """The continuation token of a closed ``returnval``; also checks that every object read was one of its
    children (an ``objects`` element nested anywhere else would have been taken for one)."""
    token: str | None = None
    objects = 0
    for child in elem:
        if child.tag == _OBJECTS:
            objects += 1
        elif child.tag == _TOKEN:
            if token is not None or not child.text:
                raise GatherError(f"{method}: the answer holds a second or an empty token")
            token = child.text
        else:
            raise GatherError(f"{method}: unexpected element {child.tag} in the result")
    if objects != read:
        raise GatherError(f"{method}: the answer holds objects outside its result")
    return token


def _body(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """The answer's body in chunks as it arrives, inflated if the server compressed it."""
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise GatherError(f"the vCenter answered in an unknown Content-Encoding: {encoding}")
    try:
        inflate: Any = None
        while chunk := response.read(_CHUNK):
            if encoding == "identity":
                yield chunk
                continue
            if inflate is None:
                inflate = zlib.decompressobj(_wbits(encoding, chunk))
            yield inflate.decompress(chunk)
        if inflate is not None:
            yield inflate.flush()
        if encoding != "identity" and (inflate is None or not inflate.eof):
            raise GatherError(f"the vCenter's {encoding} answer ends early")
        if inflate is not None and inflate.unused_data:  # bytes past the compressed stream: not one answer
            raise GatherError(f"the vCenter's {encoding} answer cannot be inflated: data after its end")
    except zlib.error as err:
        raise GatherError(f"the vCenter's {encoding} answer cannot be inflated: {err}") from None


def _wbits(encoding: str, first: bytes) -> int:
    """zlib's window setting for this body. HTTP's "deflate" is meant to be zlib-wrapped, but servers also send
    raw deflate or even gzip under that name; pyvmomi accepts all three, so this reader does too."""
    if encoding == "gzip" or first[:2] == b"\x1f\x8b":
        return 16 + zlib.MAX_WBITS
    if len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] * 256 + first[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS


class RawCollector:
    """The session's property collector: pyvmomi serializes each call and owns the session and its connections;
    the answer is read by :func:`parse_result`. A fault (HTTP 500) is deserialized by pyvmomi and raised as the
    vmodl fault it carries, as a pyvmomi call would raise it."""

    def __init__(self, stub: Any, collector: Any, counter: CallCounter | None = None) -> None:
        if not isinstance(stub, SoapStubAdapter):
            raise GatherError(f"unexpected pyvmomi stub {type(stub).__name__}: cannot read the property collector")
        self.stub, self.collector, self.counter = stub, collector, counter

    def RetrievePropertiesEx(self, specs: list[Any], options: Any) -> RetrieveResult:  # noqa: N802
        return self._invoke("RetrievePropertiesEx", [specs, options])

    def ContinueRetrievePropertiesEx(self, token: str) -> RetrieveResult:  # noqa: N802
        return self._invoke("ContinueRetrievePropertiesEx", [token])

    def _invoke(self, method: str, args: list[Any]) -> RetrieveResult:
        stub = self.stub
        info = vmodl.query.PropertyCollector._GetMethodInfo(method)
        request = stub.SerializeRequest(self.collector, info, args)
        for modify in stub.requestModifierList:
            request = modify(request)
        # The headers pyvmomi's own InvokeMethod sends that the vCenter reads (session cookie, API version as the
        # SOAP action, content type, the site's custom headers); its User-Agent is left out.
        headers = {"Cookie": stub.cookie, "SOAPAction": stub.versionId, "Content-Type": "text/xml; charset=UTF-8",
                   **(stub._customHeaders or {})}
        if stub._acceptCompressedResponses:
            headers["Accept-Encoding"] = "gzip, deflate"
        if self.counter is not None:
            self.counter.calls += 1
        conn = stub.GetConnection()  # carries the session's TLS context and httpConnectionTimeout
        try:
            conn.request("POST", stub.path, request, headers)
            response = conn.getresponse()
            cookie = response.getheader("Set-Cookie")
            if cookie:  # a renewed session cookie is the one to send from now on (as pyvmomi keeps it)
                stub.cookie = cookie
                session = SimpleCookie(cookie).get("vmware_soap_session")
                if session is not None:
                    stub.SetSessionId(session.value)
            if response.status == 200:
                result = parse_result(_body(response), method)
            elif response.status == 500:
                try:
                    fault = SoapResponseDeserializer(stub).Deserialize(b"".join(_body(response)), info.result)
                except (ExpatError, LookupError, ValueError) as err:
                    raise GatherError(f"{method}: HTTP 500 from the vCenter, and no SOAP fault ({err})") from None
                if isinstance(fault, BaseException):
                    raise fault
                raise GatherError(f"{method}: HTTP 500 from the vCenter without a fault")
            else:
                raise http.client.HTTPException(f"{method}: HTTP {response.status} {response.reason}")
        except BaseException:
            # As pyvmomi does: a connection in an unknown state is never reused.
            conn.close()
            stub.DropConnections()
            raise
        stub.ReturnConnection(conn)
        return result


# What RawCollector uses of pyvmomi's SOAP stub beyond its public calls. These are internals: a pyvmomi release
# may rename or drop any of them, and then the property collector is read through pyvmomi's own deserializer.
_STUB_INTERNALS = ("SerializeRequest", "requestModifierList", "cookie", "versionId", "_customHeaders",
                   "_acceptCompressedResponses", "GetConnection", "ReturnConnection", "DropConnections", "path",
                   "SetSessionId")


def _pyvmomi_value(val: Any, where: str) -> Any:
    """A property value as pyvmomi deserialized it, as :func:`_value` reads it from the XML (same kinds
    accepted, same refusal)."""
    if val is None or isinstance(val, bool):
        return val
    if isinstance(val, int):  # xsd int, long, short, byte (pyvmomi's long/short/byte are int subclasses)
        return int(val)
    if type(val) is str or isinstance(val, Enum):  # an enumeration value is a str subclass
        return str(val)
    if isinstance(val, ManagedObject):
        return Ref(type(val)._wsdlName, val._moId)
    raise _not_scalar(where, getattr(type(val), "_wsdlName", type(val).__name__))


class PyvmomiCollector:
    """The property collector's two paging calls answered through pyvmomi's own deserializer, converted to the
    records :func:`parse_result` gives. Slower; used when RawCollector cannot be (see :func:`collector_for`).
    Its calls go through the stub, so a stub wrapped by :meth:`CallCounter.wrap` counts them.
    """

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def RetrievePropertiesEx(self, specs: list[Any], options: Any) -> RetrieveResult | None:  # noqa: N802
        return self._convert(self.collector.RetrievePropertiesEx(specs, options))

    def ContinueRetrievePropertiesEx(self, token: str) -> RetrieveResult | None:  # noqa: N802
        return self._convert(self.collector.ContinueRetrievePropertiesEx(token))

    @staticmethod
    def _convert(answer: Any) -> RetrieveResult | None:
        if answer is None:
            return None
        objects = []
        for obj in answer.objects:
            ref = Ref(type(obj.obj)._wsdlName, obj.obj._moId)
            content = ObjectContent(ref)
            for prop in obj.propSet or ():
                content.props[prop.name] = _pyvmomi_value(prop.val, f"{ref.type} {ref.moid} {prop.name}")
            for gone in obj.missingSet or ():
                fault = getattr(gone.fault, "fault", None)
                message = (getattr(gone.fault, "localizedMessage", None) or "").strip()
                content.missing[gone.path] = ": ".join(
                    x for x in (getattr(type(fault), "_wsdlName", "fault") if fault is not None else "fault", message)
                    if x)
            objects.append(content)
        return RetrieveResult(objects, answer.token or None)


def collector_for(stub: Any, collector: Any, counter: CallCounter | None) -> Collector:
    """The fast reader when the session's stub is the pyvmomi SOAP stub with every internal it uses; otherwise
    pyvmomi's own deserializer (``counter`` is then left to the stub's wrapper, which sees those calls)."""
    if isinstance(stub, SoapStubAdapter) and all(hasattr(stub, name) for name in _STUB_INTERNALS):
        return RawCollector(stub, collector, counter)
    return PyvmomiCollector(collector)


def _collect(collector: Collector, spec: Any, page_size: int) -> Iterator[ObjectContent]:
    pc = vmodl.query.PropertyCollector
    method = "RetrievePropertiesEx"
    result = collector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=page_size))
    seen: set[Ref] = set()
    tokens: set[str] = set()
    while result is not None:
        for obj in result.objects:
            if obj.ref in seen:  # a repeated page (or object) would count a VM twice
                raise GatherError(f"{method}: {obj.ref.type} {obj.ref.moid} came twice: the vCenter repeats "
                                  f"itself, so its answer is not one consistent inventory")
            seen.add(obj.ref)
        yield from result.objects
        read = len(seen)
        if not result.token:
            break
        # A server that makes no progress, or never stops, would otherwise keep this loop going forever.
        if not result.objects:
            raise GatherError(f"{method}: a page with no objects still carries a token ({result.token}): "
                              f"the vCenter makes no progress")
        if result.token in tokens:
            raise GatherError(f"{method}: the continuation token {result.token} came twice: the vCenter makes no "
                              f"progress")
        tokens.add(result.token)
        if read > MAX_OBJECTS:
            raise GatherError(f"{method}: more than {MAX_OBJECTS} objects and still a token: stopped, the vCenter "
                              f"seems to page without end")
        method = "ContinueRetrievePropertiesEx"
        result = collector.ContinueRetrievePropertiesEx(result.token)


@contextlib.contextmanager
def container_view(content: Any) -> Iterator[Any]:
    """A ContainerView of every host, VM and cluster under the root folder, destroyed after use."""
    view = content.viewManager.CreateContainerView(content.rootFolder, list(ENTITY_TYPES), True)
    try:
        yield view
    finally:
        view.Destroy()


def retrieve(collector: Collector, view: Any, page_size: int, vm_properties: tuple[str, ...] = VM_PROPERTIES,
             types: tuple[type[vim.ManagedEntity], ...] = ENTITY_TYPES) -> Iterator[ObjectContent]:
    """Yield every object of ``types`` in the view (hosts, VMs and clusters), following continuation tokens.

    With ``vm_properties=()`` VMs come back as bare references (to count them, or split the read).
    """
    pc = vmodl.query.PropertyCollector
    traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
    wanted: dict[type[vim.ManagedEntity], tuple[str, ...]] = {
        vim.VirtualMachine: vm_properties, vim.HostSystem: HOST_PROPERTIES,
        vim.ClusterComputeResource: CLUSTER_PROPERTIES}
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
        propSet=[pc.PropertySpec(type=t, pathSet=list(wanted[t]), all=False) for t in types])
    yield from _collect(collector, spec, page_size)


# Below this many VMs per worker, a worker's start-up (interpreter, imports, login, its share's request) costs
# more CPU than its parse saves: 10,050 lab VMs read in-process with 1-2 s of CPU, and a worker's start-up alone
# takes 0.5-1 s.
VMS_PER_PROCESS = 20_000


def _vm_workers(count: int) -> int:
    return max(1, min(os.cpu_count() or 1, count // VMS_PER_PROCESS))


def _vm_properties(stub: Any, collector: Collector, name: str, moids: list[str], page_size: int) -> list[VcVm]:
    """One RetrievePropertiesEx over these VMs, named by reference (no traversal)."""
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=vim.VirtualMachine(m, stub), skip=False) for m in moids],
                         propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=list(VM_PROPERTIES))])
    return facts_from_objects(name, _collect(collector, spec, page_size))[1]


def read_vms(endpoint: VcenterEndpoint, password: str, moids: list[str]) -> tuple[list[VcVm], int]:
    """In a worker process: its own session, then the same bulk read over its share of the VMs."""
    counter = CallCounter()
    si = connect(endpoint, password)
    try:
        counter.wrap(si._stub)
        content = si.RetrieveContent()
        collector = collector_for(si._stub, content.propertyCollector, counter)
        return _vm_properties(si._stub, collector, endpoint.name, moids, endpoint.page_size), counter.calls
    finally:
        Disconnect(si)


def _text(props: dict[str, Any], key: str, ref: Ref) -> str | None:
    value = props.get(key)
    if value is None or isinstance(value, str):
        return value
    raise GatherError(f"{ref.type} {ref.moid} {key}: expected a string, got {value!r}")


def _flag(props: dict[str, Any], key: str, ref: Ref) -> bool | None:
    value = props.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise GatherError(f"{ref.type} {ref.moid} {key}: expected true or false, got {value!r}")


def _ref(props: dict[str, Any], key: str, ref: Ref) -> Ref | None:
    value = props.get(key)
    if value is None or isinstance(value, Ref):
        return value
    raise GatherError(f"{ref.type} {ref.moid} {key}: expected a managed object reference, got {value!r}")


def facts_from_objects(name: str, objects: Iterable[ObjectContent]) -> tuple[list[VcHost], list[VcVm]]:
    """Turn property-collector records into snapshot records (no further calls are made).

    A property of the wrong kind (a reference where text is expected, say) is an error, never a silent None.
    """
    clusters: dict[str, str] = {}
    raw_hosts: list[ObjectContent] = []
    raw_vms: list[ObjectContent] = []
    for obj in objects:
        if obj.ref.type == "ClusterComputeResource":
            clusters[obj.ref.moid] = _text(obj.props, "name", obj.ref) or obj.ref.moid
        elif obj.ref.type == "HostSystem":
            raw_hosts.append(obj)
        elif obj.ref.type == "VirtualMachine":
            raw_vms.append(obj)
        else:  # the view holds only these three: anything else is an answer to another question
            raise GatherError(f"{obj.ref.type} {obj.ref.moid}: not a host, VM or cluster, which is all that was asked")
    hosts = []
    for obj in raw_hosts:
        p, ref = obj.props, obj.ref
        parent = _ref(p, "parent", ref)
        cluster = clusters.get(parent.moid) if parent is not None and parent.type == "ClusterComputeResource" else None
        host_name = _text(p, "name", ref)
        hosts.append(VcHost(key=f"{name}/{ref.moid}", name=ref.moid if host_name is None else host_name,
                            cluster=cluster, connection_state=_text(p, "runtime.connectionState", ref),
                            in_maintenance=_flag(p, "runtime.inMaintenanceMode", ref),
                            product=_text(p, "summary.config.product.fullName", ref), unread=_unread(obj)))
    vms = []
    for obj in raw_vms:
        p, ref = obj.props, obj.ref
        host = _ref(p, "runtime.host", ref)
        if host is not None and host.type != "HostSystem":
            raise GatherError(f"{ref.type} {ref.moid} runtime.host: expected a HostSystem, got {host.type} {host.moid}")
        vm_name = _text(p, "name", ref)
        vms.append(VcVm(
            key=f"{name}/{ref.moid}", name=ref.moid if vm_name is None else vm_name,
            host_key=f"{name}/{host.moid}" if host is not None else None,
            power_state=_text(p, "runtime.powerState", ref), uuid=_text(p, "config.uuid", ref),
            instance_uuid=_text(p, "config.instanceUuid", ref), guest_id=_text(p, "config.guestId", ref),
            guest_family=_text(p, "guest.guestFamily", ref), tools_running=_text(p, "guest.toolsRunningStatus", ref),
            tools_version_status=_text(p, "guest.toolsVersionStatus2", ref),
            guest_hostname=_text(p, "guest.hostName", ref), template=bool(_flag(p, "config.template", ref)),
            ip_address=_text(p, "guest.ipAddress", ref), unread=_unread(obj)))
    return hosts, vms


def _unread(obj: ObjectContent) -> list[str]:
    """What the vCenter said it could not read of this object: such a property is absent, not empty, so the
    checks that read the object error with this instead of judging a None."""
    return [f"{path} ({why})" for path, why in sorted(obj.missing.items())]


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
        collector = collector_for(si._stub, content.propertyCollector, counter)
        # Hosts and clusters in full, VMs as bare references (to count them); then the VMs' properties in
        # one more bulk query over the same view, or, for a very large inventory, over each worker's share.
        with container_view(content) as view:
            objects = list(retrieve(collector, view, endpoint.page_size, vm_properties=()))
            facts.hosts, _ = facts_from_objects(endpoint.name, objects)
            moids = [o.ref.moid for o in objects if o.ref.type == "VirtualMachine"]
            workers = _vm_workers(len(moids))
            if workers == 1:
                vm_objects = retrieve(collector, view, endpoint.page_size, types=(vim.VirtualMachine,))
                facts.vms = facts_from_objects(endpoint.name, vm_objects)[1]
        if workers > 1:
            # The parse is CPU-bound on one core: a very large inventory is read by several processes,
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
