"""Snapshot round trip and strict loading; the DSM ↔ vCenter join; vCenter continuation paging."""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest
from pyVmomi import vim

from dsfleet import snapshot, vcenter
from dsfleet.errors import GatherError, InputError
from dsfleet.join import join
from dsfleet.snapshot import (DsmComputer, DsmFacts, InventoryRef, JoinResult, Snapshot, VcenterFacts, VcHost,
                              VcVm)


def computer(cid: int, name: str, uuid: str | None = None) -> DsmComputer:
    return DsmComputer(id=cid, host_name=f"{name.lower()}.corp.local", display_name=name, platform="", agent_version=None,
                       relay_list_id=0, is_relay=False, appliance_protected=True, bios_uuid=uuid, agent_status=None,
                       agent_messages=[], appliance_status=None, appliance_messages=[], am_state="on", am_messages=[],
                       vm_state=None)


def vm(key: str, name: str, uuid: str | None = None, template: bool = False) -> VcVm:
    return VcVm(key=key, name=name, host_key="vc/host-1", power_state="poweredOn", uuid=uuid, instance_uuid=None,
                guest_id="windows2019srv_64Guest", guest_family="windowsGuest", tools_running="guestToolsRunning",
                tools_version_status="guestToolsCurrent", guest_hostname=None, template=template)


def sample() -> Snapshot:
    return Snapshot(
        schema=snapshot.SCHEMA, version=snapshot.VERSION, created_utc="2026-11-21T00:00:00+00:00", gather_seconds=1.5,
        inventory=InventoryRef(name="t", path="t.yml", sha256="0" * 64, nsx="nsx-t", scope_clusters=[], scope_hosts=[],
                               dsva_vm_pattern="^Trend Micro", include_unmatched_agents=True, tls_exceptions=[]),
        dsm=DsmFacts(url="https://dsm", auth="api-secret-key", tls_verify=True, computers=[computer(1, "WIN-1", "U1")]),
        vcenters=[VcenterFacts(name="vc", url="https://vc/sdk", tls_verify=True,
                               hosts=[VcHost("vc/host-1", "esx-01", "cl", "connected", False, "ESXi")],
                               vms=[vm("vc/vm-1", "WIN-1", "U1")])],
        join=JoinResult(), relay_groups=[])


def test_round_trip(tmp_path: Path) -> None:
    snap = sample()
    sha = snap.write(tmp_path / "s.json")
    loaded, sha2 = snapshot.load(tmp_path / "s.json")
    assert loaded == snap and sha == sha2


def test_round_trip_of_what_a_source_may_send_in_json(tmp_path: Path) -> None:
    # A lone surrogate is valid in a JSON answer (json.loads keeps it): the snapshot keeps it, as sent.
    snap = replace(sample(), dsm=replace(sample().dsm, computers=[replace(computer(1, "WIN-1", "U1"),
                                                                          host_name="a\ud800b 日本")]))
    snap.write(tmp_path / "s.json")
    assert snapshot.load(tmp_path / "s.json")[0] == snap


@pytest.mark.parametrize("edit,field,expected", [
    (lambda d: d.update(schema="other"), "schema", "'dsfleet-snapshot'"),
    (lambda d: d.update(version=99), "version", "1 (this dsfleet reads snapshot version 1)"),
    (lambda d: d["dsm"]["computers"][0].update(id="1"), "dsm.computers[0].id", "int"),
    (lambda d: d["vcenters"][0]["vms"][0].pop("uuid"), "vcenters[0].vms[0].uuid", "present (required)"),
    (lambda d: d["dsm"].update(password="x"), "dsm.password", "no such field"),
])
def test_bad_snapshots_name_the_field(tmp_path: Path, edit: Any, field: str, expected: str) -> None:
    data = json.loads(sample().to_json())
    edit(data)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        snapshot.load(path)
    assert str(err.value).startswith(f"{path}: {field}: expected {expected}")


def test_join_prefers_uuid_then_name_and_reports_leftovers() -> None:
    computers = [computer(1, "renamed-in-dsm", "AAA"), computer(2, "WIN-2"), computer(3, "ghost"),
                 computer(4, "twin")]
    vms = [vm("vc/1", "WIN-1", "aaa"), vm("vc/2", "win-2"), vm("vc/3", "orphan"), vm("vc/4", "twin"),
           replace(vm("vc/5", "other"), guest_hostname="twin.corp.local"), vm("vc/6", "tpl", template=True)]
    result = join(computers, vms)
    assert {(m.computer_id, m.vm_key, m.method) for m in result.matches} == {(1, "vc/1", "uuid"), (2, "vc/2", "name")}
    assert result.unmatched_computers == [3, 4]
    assert result.unmatched_vms == ["vc/3", "vc/4", "vc/5"]
    assert any("twin" in note and "2 VMs" in note for note in result.ambiguous)


class ScriptedCollector:
    """Answers RetrievePropertiesEx in pages, as a vCenter does when maxObjects is smaller than the result."""

    def __init__(self, pages: list[list[Any]], last_token: str | None = None) -> None:
        self.pages, self.calls, self.last_token = pages, [], last_token

    def RetrievePropertiesEx(self, specs: Any, options: Any) -> Any:  # noqa: N802 - vSphere method name
        self.calls.append(("RetrievePropertiesEx", options.maxObjects))
        return self._page(0)

    def ContinueRetrievePropertiesEx(self, token: str) -> Any:  # noqa: N802
        self.calls.append(("ContinueRetrievePropertiesEx", token))
        return self._page(int(token))

    def _page(self, i: int) -> Any:
        token = str(i + 1) if i + 1 < len(self.pages) else self.last_token
        return vcenter.RetrieveResult(objects=self.pages[i], token=token)


class View(vim.view.ContainerView):  # type: ignore[misc]
    destroyed: list[bool] = []

    def Destroy(self) -> None:  # noqa: N802 - vSphere method name
        self.destroyed.append(True)


def scripted_content() -> Any:
    view = View("session[lab]view-1")
    return SimpleNamespace(rootFolder=None, viewManager=SimpleNamespace(CreateContainerView=lambda *a: view))


def vms(*moids: str) -> list[vcenter.ObjectContent]:
    return [vcenter.ObjectContent(vcenter.Ref("VirtualMachine", m)) for m in moids]


def test_retrieve_follows_continuation_tokens() -> None:
    View.destroyed = []
    collector = ScriptedCollector([vms("a", "b"), vms("c", "d"), vms("e")])
    with vcenter.container_view(scripted_content()) as view:
        assert list(vcenter.retrieve(collector, view, page_size=2)) == vms("a", "b", "c", "d", "e")
    assert collector.calls == [("RetrievePropertiesEx", 2), ("ContinueRetrievePropertiesEx", "1"),
                               ("ContinueRetrievePropertiesEx", "2")]
    assert View.destroyed == [True]


def test_retrieve_stops_on_a_page_that_brings_nothing() -> None:
    """A token on an empty page is a server that makes no progress: an error, never an endless loop."""
    View.destroyed = []
    collector = ScriptedCollector([vms("a"), []], last_token="1")
    with pytest.raises(GatherError, match="no objects still carries a token"):
        with vcenter.container_view(scripted_content()) as view:
            list(vcenter.retrieve(collector, view, page_size=2))
    assert View.destroyed == [True]


def test_retrieve_stops_when_pages_never_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vcenter, "MAX_OBJECTS", 3)
    collector = ScriptedCollector([vms("a", "b"), vms("c", "d"), vms("e")])
    with pytest.raises(GatherError, match="more than 3 objects and still a token"):
        list(vcenter.retrieve(collector, View("session[lab]view-1"), page_size=2))


def test_retrieve_refuses_a_repeated_page_or_token() -> None:
    """A vCenter that sends the same page again would count its VMs twice: an error, not a bigger fleet."""
    repeated = ScriptedCollector([vms("a", "b"), vms("a", "b")])
    with pytest.raises(GatherError, match="VirtualMachine a came twice"):
        list(vcenter.retrieve(repeated, View("session[lab]view-1"), page_size=2))
    same_token = ScriptedCollector([vms("a"), vms("b")], last_token="1")  # page 2 points back at itself
    with pytest.raises(GatherError, match="token 1 came twice"):
        list(vcenter.retrieve(same_token, View("session[lab]view-1"), page_size=1))


def ref(kind: str, moid: str) -> vcenter.Ref:
    return vcenter.Ref(kind, moid)


def test_facts_from_objects_tolerates_missing_properties() -> None:
    objects = [vcenter.ObjectContent(ref("HostSystem", "host-1"), {"name": "esx-01"}),
               vcenter.ObjectContent(ref("VirtualMachine", "vm-1"), {"name": "W", "runtime.host": ref("HostSystem",
                                                                                                       "host-1")})]
    hosts, vms = vcenter.facts_from_objects("vc", iter(objects))
    assert hosts[0].name == "esx-01" and hosts[0].cluster is None
    assert vms[0].host_key == "vc/host-1" and vms[0].power_state is None and vms[0].tools_running is None


@pytest.mark.parametrize("obj,reason", [
    (vcenter.ObjectContent(ref("VirtualMachine", "vm-1"), {"name": "W", "runtime.host": "host-1"}),
     "vm-1 runtime.host: expected a managed object reference"),
    (vcenter.ObjectContent(ref("VirtualMachine", "vm-1"), {"runtime.host": ref("Datastore", "ds-1")}),
     "vm-1 runtime.host: expected a HostSystem, got Datastore ds-1"),
    (vcenter.ObjectContent(ref("Datastore", "ds-1"), {"name": "d"}), "Datastore ds-1: not a host, VM or cluster"),
])
def test_facts_from_objects_refuses_a_property_of_the_wrong_kind(obj: Any, reason: str) -> None:
    with pytest.raises(GatherError, match=reason):
        vcenter.facts_from_objects("vc", [obj])


ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>')


def answer(body: str, method: str = "RetrievePropertiesEx") -> bytes:
    return ENVELOPE.format(f'<{method}Response xmlns="urn:vim25">{body}</{method}Response>').encode()


def prop(name: str, kind: str, text: str, extra: str = "") -> str:
    return f'<propSet><name>{name}</name><val xsi:type="{kind}"{extra}>{text}</val></propSet>'


def chunks(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]  # an answer arrives in pieces


def test_parse_result_reads_the_scalar_properties_and_the_token() -> None:
    body = ('<returnval><objects><obj type="VirtualMachine">vm-7</obj>'
            + prop("name", "xsd:string", "WIN &amp; co")
            + prop("runtime.powerState", "VirtualMachinePowerState", "poweredOn")
            + prop("runtime.host", "ManagedObjectReference", "host-3", ' type="HostSystem"')
            + prop("config.template", "xsd:boolean", "false")
            + prop("guest.hostName", "xsd:string", "")
            + '<missingSet><path>guest.ipAddress</path><fault><fault xsi:type="NoPermission"/></fault></missingSet>'
            + '<missingSet><path>guest.toolsRunningStatus</path><fault><fault xsi:type="SystemError"/>'
              '<localizedMessage>A general system error occurred</localizedMessage></fault></missingSet>'
            + '</objects><token>tok-1</token></returnval>')
    result = vcenter.parse_result(chunks(answer(body)), "RetrievePropertiesEx")
    assert result.token == "tok-1"
    assert result.objects == [vcenter.ObjectContent(ref("VirtualMachine", "vm-7"), {
        "name": "WIN & co", "runtime.powerState": "poweredOn", "runtime.host": ref("HostSystem", "host-3"),
        "config.template": False, "guest.hostName": ""}, missing={
        "guest.ipAddress": "NoPermission", "guest.toolsRunningStatus": "SystemError: A general system error occurred"})]
    # What the vCenter could not read is recorded on the VM (its checks then error with it), never a silent None.
    (vm,) = vcenter.facts_from_objects("vc", result.objects)[1]
    assert vm.ip_address is None and vm.unread == [
        "guest.ipAddress (NoPermission)", "guest.toolsRunningStatus (SystemError: A general system error occurred)"]


def test_parse_result_of_an_empty_answer_and_of_a_continuation() -> None:
    assert vcenter.parse_result([answer("")], "RetrievePropertiesEx") == vcenter.RetrieveResult([], None)
    body = '<returnval><objects><obj type="HostSystem">host-1</obj></objects></returnval>'
    result = vcenter.parse_result([answer(body, "ContinueRetrievePropertiesEx")], "ContinueRetrievePropertiesEx")
    assert result == vcenter.RetrieveResult([vcenter.ObjectContent(ref("HostSystem", "host-1"))], None)


@pytest.mark.parametrize("data,reason", [
    (answer('<returnval><objects><obj type="VirtualMachine">vm-1</obj>'
            + prop("config", "VirtualMachineConfigInfo", "<name>x</name>") + "</objects></returnval>"),
     "VirtualMachine vm-1 config: a value of type VirtualMachineConfigInfo, where dsfleet asks only for scalar"),
    (answer('<returnval><objects><obj type="VirtualMachine">vm-1</obj>'
            + prop("config.template", "xsd:boolean", "maybe") + "</objects></returnval>"),
     "'maybe' is not a valid xsd:boolean"),
    (answer('<returnval><objects><obj type="VirtualMachine">vm-1</obj>'
            "<propSet><name>name</name><val>W</val></propSet></objects></returnval>"), "the value has no xsi:type"),
    (answer('<returnval><objects><propSet><name>name</name></propSet></objects></returnval>'), "no reference"),
    (answer('<returnval><objects><obj type="VirtualMachine">vm-1</obj>')[:-40], "not well-formed XML"),
    (ENVELOPE.format('<soapenv:Fault><faultcode>x</faultcode><faultstring>boom</faultstring></soapenv:Fault>')
     .encode(), "answered a fault: boom"),
    (answer("", "RetrieveProperties"), "holds no RetrievePropertiesExResponse"),
    (answer('<objects><obj type="HostSystem">host-1</obj></objects><returnval></returnval>'), "objects outside"),
    (answer('<returnval><token>a</token><token>b</token></returnval>'), "a second or an empty token"),
    # A reference without its type (pyvmomi's own reader refuses it too) would drop the object or its link.
    (answer('<returnval><objects><obj>vm-1</obj></objects></returnval>'), "an incomplete reference"),
    (answer('<returnval><objects><obj type="VirtualMachine">vm-1</obj>'
            + prop("runtime.host", "ManagedObjectReference", "host-1") + "</objects></returnval>"),
     "'host-1' is not a valid ManagedObjectReference"),
    (answer('<returnval><objects><obj type="VirtualMachine">vm-1</obj>' + prop("name", "xsd:string", "a")
            + prop("name", "xsd:string", "b") + "</objects></returnval>"), "property name answered twice"),
    (answer("").replace(b'encoding="UTF-8"', b'encoding="no-such-codec"'), "not well-formed XML"),
])
def test_parse_result_refuses_what_it_cannot_read(data: bytes, reason: str) -> None:
    with pytest.raises(GatherError, match=re.escape(reason)):
        vcenter.parse_result(chunks(data), "RetrievePropertiesEx")


class Answer:
    """Just enough of an http.client response for vcenter._body."""

    def __init__(self, data: bytes, encoding: str | None) -> None:
        self.data, self.encoding = io.BytesIO(data), encoding

    def getheader(self, name: str) -> str | None:
        return self.encoding if name == "Content-Encoding" else None

    def read(self, size: int) -> bytes:
        return self.data.read(size)


@pytest.mark.parametrize("encoding,pack", [
    (None, lambda b: b), ("gzip", gzip.compress), ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS))])  # raw deflate, as some servers send it
def test_body_inflates_what_the_server_compressed(encoding: str | None, pack: Any) -> None:
    data = answer('<returnval><objects><obj type="HostSystem">host-1</obj></objects></returnval>') * 1
    assert b"".join(vcenter._body(Answer(pack(data), encoding))) == data  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding,data,reason", [
    ("gzip", gzip.compress(b"<x/>" * 100)[:-12], "ends early"),
    ("gzip", b"not gzip at all", "cannot be inflated"),
    ("br", b"", "unknown Content-Encoding: br"),
    ("gzip", gzip.compress(b"<x/>") + b"<y/>", "data after its end"),
])
def test_body_refuses_a_broken_encoding(encoding: str, data: bytes, reason: str) -> None:
    with pytest.raises(GatherError, match=reason):
        b"".join(vcenter._body(Answer(data, encoding)))  # type: ignore[arg-type]


def test_ssl_context_verifies_unless_turned_off() -> None:
    import ssl
    assert vcenter.ssl_context(True, None).verify_mode is ssl.CERT_REQUIRED
    off = vcenter.ssl_context(False, None)
    assert off.verify_mode is ssl.CERT_NONE and not off.check_hostname


class SoapServer:
    """A local HTTP endpoint that answers each POST with the next scripted (status, headers, body)."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        import http.server
        import threading

        self.answers, self.requests = answers, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append((dict(self.headers), body))
                status, headers, data = server.answers.pop(0)
                self.send_response(status)
                for key, value in {"Content-Type": "text/xml", **headers, "Content-Length": str(len(data))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sdk"

    def collector(self) -> vcenter.RawCollector:
        from pyVmomi import SoapStubAdapter, vmodl
        stub = SoapStubAdapter(url=self.url, version="vim.version.version13", httpConnectionTimeout=5)
        stub.cookie = 'vmware_soap_session="s1"'
        counter = vcenter.CallCounter()
        return vcenter.RawCollector(stub, vmodl.query.PropertyCollector("propertyCollector", stub), counter)


@pytest.fixture
def soap_server() -> Iterator[Callable[[list[tuple[int, dict[str, str], bytes]]], SoapServer]]:
    """SoapServer's factory; every server made is shut down after the test, whatever its outcome."""
    made: list[SoapServer] = []

    def make(answers: list[tuple[int, dict[str, str], bytes]]) -> SoapServer:
        made.append(SoapServer(answers))
        return made[-1]

    yield make
    for server in made:
        server.httpd.shutdown()
        server.httpd.server_close()


FAULT = ENVELOPE.format(
    '<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>The object has already been deleted'
    '</faultstring><detail><ManagedObjectNotFoundFault xmlns="urn:vim25" xsi:type="ManagedObjectNotFound">'
    '<obj type="VirtualMachine">vm-1</obj></ManagedObjectNotFoundFault></detail></soapenv:Fault>').encode()


def test_raw_collector_sends_pyvmomis_request_and_reads_the_answer(soap_server: Any) -> None:
    from pyVmomi import vmodl
    page = answer('<returnval><token>t1</token><objects><obj type="HostSystem">host-1</obj>'
                  + prop("name", "xsd:string", "esx-01") + "</objects></returnval>")
    server = soap_server([(200, {"Content-Encoding": "gzip", "Set-Cookie": 'vmware_soap_session="s2"; Path=/; HttpOnly'},
                          gzip.compress(page)),
                         (200, {}, answer("", "ContinueRetrievePropertiesEx"))])
    collector = server.collector()
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=vim.HostSystem("host-1"))],
                         propSet=[pc.PropertySpec(type=vim.HostSystem, pathSet=["name"])])
    first = collector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=10))
    assert first == vcenter.RetrieveResult([vcenter.ObjectContent(ref("HostSystem", "host-1"), {"name": "esx-01"})],
                                           "t1")
    assert collector.ContinueRetrievePropertiesEx("t1") == vcenter.RetrieveResult([], None)
    (headers, body), (headers2, body2) = server.requests
    assert headers2["Cookie"] == 'vmware_soap_session="s2"'  # a renewed session cookie is sent from then on
    assert headers["Cookie"] == 'vmware_soap_session="s1"' and headers["SOAPAction"] == '"urn:vim25/6.7.1"'
    assert b"<RetrievePropertiesEx " in body and b"<maxObjects>10</maxObjects>" in body
    assert b"<ContinueRetrievePropertiesEx " in body2 and b">t1</token>" in body2
    assert collector.counter is not None and collector.counter.calls == 2


@pytest.mark.parametrize("status,data,raised,reason", [
    (500, FAULT, "ManagedObjectNotFound", "The object has already been deleted"),
    (500, b"<html><title>Internal error</title></html>", "GatherError", "HTTP 500 from the vCenter without a fault"),
    (500, b"<html><p>Internal error</html>", "GatherError", "HTTP 500 from the vCenter, and no SOAP fault"),
    (503, b"busy", "HTTPException", "HTTP 503"),
])
def test_raw_collector_raises_what_the_vcenter_answered(soap_server: Any, status: int, data: bytes, raised: str,
                                                        reason: str) -> None:
    server = soap_server([(status, {}, data)])
    with pytest.raises(Exception) as err:
        server.collector().ContinueRetrievePropertiesEx("t1")
    assert type(err.value).__name__.endswith(raised) and reason in (getattr(err.value, "msg", None) or str(err.value))


def soap_stub() -> Any:
    from pyVmomi import SoapStubAdapter
    return SoapStubAdapter(url="http://127.0.0.1:9/sdk", version="vim.version.version13", httpConnectionTimeout=5)


def test_collector_for_reads_raw_through_pyvmomis_soap_stub() -> None:
    from pyVmomi import vmodl
    stub = soap_stub()
    chosen = vcenter.collector_for(stub, vmodl.query.PropertyCollector("propertyCollector", stub), None)
    assert isinstance(chosen, vcenter.RawCollector)


@pytest.mark.parametrize("missing", ["requestModifierList", "cookie", "_customHeaders", "_acceptCompressedResponses",
                                     "path", "GetConnection", "SetSessionId", None])
def test_collector_for_falls_back_to_pyvmomi_when_an_internal_is_missing(missing: str | None) -> None:
    """A pyvmomi release that renames an internal RawCollector relies on gets pyvmomi's own deserializer."""
    from pyVmomi import SoapStubAdapter, vmodl
    if missing is None:
        stub: Any = SimpleNamespace()  # not pyvmomi's SOAP stub at all (another stub adapter)
    elif missing[0].isupper():
        # A method gone from the class: hide it behind a property that raises AttributeError, as a missing one.
        def gone(self: Any) -> Any:
            raise AttributeError(missing)
        stub = soap_stub()
        stub.__class__ = type("Stub", (SoapStubAdapter,), {missing: property(gone)})  # after pyvmomi's __init__
    else:
        stub = soap_stub()
        delattr(stub, missing)
    collector = vmodl.query.PropertyCollector("propertyCollector", soap_stub())
    chosen = vcenter.collector_for(stub, collector, vcenter.CallCounter())
    assert isinstance(chosen, vcenter.PyvmomiCollector) and chosen.collector is collector


class PyvmomiAnswers:
    """pyvmomi's property collector, scripted: answers as its deserializer builds them."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def RetrievePropertiesEx(self, specs: Any, options: Any) -> Any:  # noqa: N802 - vSphere method name
        return self.answers.pop(0)

    def ContinueRetrievePropertiesEx(self, token: str) -> Any:  # noqa: N802
        return self.answers.pop(0)


def pyvmomi_page(objects: list[tuple[Any, dict[str, Any]]], token: str | None = None) -> Any:
    from pyVmomi import vmodl
    pc = vmodl.query.PropertyCollector
    return pc.RetrieveResult(token=token, objects=[
        pc.ObjectContent(obj=obj, propSet=[vmodl.DynamicProperty(name=k, val=v) for k, v in props.items()])
        for obj, props in objects])


def test_pyvmomi_collector_gives_the_records_the_raw_parse_gives() -> None:
    from pyVmomi import vmodl
    first = pyvmomi_page([(vim.VirtualMachine("vm-7"), {
        "name": "WIN & co", "runtime.powerState": vim.VirtualMachine.PowerState.poweredOn,
        "runtime.host": vim.HostSystem("host-3"), "config.template": False, "guest.hostName": "",
        "summary.config.numCpu": 4})], token="t1")
    collector = vcenter.PyvmomiCollector(PyvmomiAnswers(first, pyvmomi_page([(vim.HostSystem("host-3"), {})])))
    pc = vmodl.query.PropertyCollector
    result = collector.RetrievePropertiesEx([], pc.RetrieveOptions(maxObjects=1))
    assert result == vcenter.RetrieveResult([vcenter.ObjectContent(ref("VirtualMachine", "vm-7"), {
        "name": "WIN & co", "runtime.powerState": "poweredOn", "runtime.host": ref("HostSystem", "host-3"),
        "config.template": False, "guest.hostName": "", "summary.config.numCpu": 4})], "t1")
    assert result is not None and type(result.objects[0].props["runtime.powerState"]) is str
    assert collector.ContinueRetrievePropertiesEx("t1") == vcenter.RetrieveResult(
        [vcenter.ObjectContent(ref("HostSystem", "host-3"))], None)


def test_pyvmomi_collector_records_what_the_vcenter_could_not_read() -> None:
    from pyVmomi import vmodl
    pc = vmodl.query.PropertyCollector
    page = pc.RetrieveResult(objects=[pc.ObjectContent(
        obj=vim.VirtualMachine("vm-1"), propSet=[vmodl.DynamicProperty(name="name", val="WIN-01")],
        missingSet=[pc.MissingProperty(path="guest.ipAddress", fault=vmodl.LocalizedMethodFault(
            fault=vim.fault.NoPermission(), localizedMessage="Permission to perform this operation was denied."))])])
    result = vcenter.PyvmomiCollector(PyvmomiAnswers(page)).RetrievePropertiesEx([], pc.RetrieveOptions())
    assert result is not None and result.objects[0].missing == {
        "guest.ipAddress": "NoPermission: Permission to perform this operation was denied."}


def test_pyvmomi_collector_refuses_what_the_raw_parse_refuses() -> None:
    from pyVmomi import vmodl
    page = pyvmomi_page([(vim.VirtualMachine("vm-1"), {"config": vim.vm.ConfigInfo(name="x")})])
    collector = vcenter.PyvmomiCollector(PyvmomiAnswers(page))
    with pytest.raises(GatherError, match="VirtualMachine vm-1 config: a value of type VirtualMachineConfigInfo, "
                                          "where dsfleet asks only for scalar"):
        collector.RetrievePropertiesEx([], vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=1))
