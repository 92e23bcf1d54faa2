"""DSM SOAP client: event paging that does not trust the server, redirects refused before the password leaves,
gateway error pages named, timeouts — against scripted pages and a local HTTP server serving the lab's WSDL."""

from __future__ import annotations

import datetime as dt
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest

from dsfleet.errors import GatherError
from dsfleet.events import _retrieve, read_soap

from .conftest import Serve

WSDL = (Path(__file__).resolve().parents[2] / "lab" / "manager.wsdl").read_bytes()
NOW = dt.datetime(2025, 9, 24, tzinfo=dt.timezone.utc)


def event(eid: int | None) -> SimpleNamespace:
    return SimpleNamespace(systemEventID=eid, eventID=2205, time=NOW, event="x", target="t", description="d")


class Service:
    """systemEventRetrieve answering from a script: cursor (the id asked after) → (truncated, event ids)."""

    def __init__(self, script: Callable[[int], tuple[bool, list[int | None]]]) -> None:
        self.script, self.cursors = script, []  # type: ignore[var-annotated]

    def systemEventRetrieve(self, eventIdFilter: dict[str, Any], **kw: Any) -> Any:  # noqa: N802, N803
        self.cursors.append(eventIdFilter["id"])
        truncated, ids = self.script(eventIdFilter["id"])
        items = SimpleNamespace(item=[event(i) for i in ids]) if ids else None
        return SimpleNamespace(truncated=truncated, systemEvents=items)


def read(service: Service, **kw: Any) -> list[int]:
    return [i.systemEventID for i in _retrieve(service, "sid", NOW - dt.timedelta(days=1), NOW, **kw)]


def test_pages_follow_the_event_id_cursor() -> None:
    events = [4, 9, 12, 30, 31]
    service = Service(lambda after: (len([e for e in events if e > after]) > 2, [e for e in events if e > after][:2]))
    assert read(service) == events
    assert service.cursors == [0, 9, 30]


def test_truncated_without_events_is_an_error_not_the_end() -> None:
    service = Service(lambda after: (True, []) if after == 0 else (False, [5, 6]))
    with pytest.raises(GatherError, match="^the DSM said the event list is truncated but returned no events "
                                          "after id 0$"):
        read(service)


def test_a_repeated_page_is_an_error() -> None:
    service = Service(lambda after: (True, [1, 2]))
    got: list[int] = []
    with pytest.raises(GatherError, match="asked for events after id 2, the DSM returned event 1 again"):
        for item in _retrieve(service, "sid", NOW, NOW):
            got.append(item.systemEventID)
    assert got == [1, 2] and service.cursors == [0, 2]


def test_pages_are_bounded() -> None:
    service = Service(lambda after: (True, [after + 1]))
    with pytest.raises(GatherError, match=r"still said the event list is truncated after 5 pages "
                                          r"\(events after id 5 not read\)"):
        read(service, max_pages=5)


def test_an_event_without_an_integer_id_is_an_error() -> None:
    with pytest.raises(GatherError, match="an event after id 0 has no integer systemEventID .got None"):
        read(Service(lambda after: (False, [3, None])))


# -- over HTTP ---------------------------------------------------------------------------------------------

Answer = Callable[[BaseHTTPRequestHandler], tuple[int, bytes, dict[str, str]]]


@pytest.fixture
def server(serve_http: Serve) -> Iterator[Callable[[Answer], tuple[str, list[tuple[str, str, bytes]]]]]:
    def start(post: Answer) -> tuple[str, list[tuple[str, str, bytes]]]:
        seen: list[tuple[str, str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                seen.append(("GET", self.path, b""))
                self._reply(200, WSDL, {"Content-Type": "text/xml"})

            def do_POST(self) -> None:  # noqa: N802
                seen.append(("POST", self.path, self.rfile.read(int(self.headers["Content-Length"]))))
                self._reply(*post(self))

        return serve_http(Handler), seen

    yield start


def soap(url: str, timeout: float = 5) -> Any:
    return read_soap(url, True, "auditor", "s3cret-pw", None, NOW - dt.timedelta(days=1), NOW, timeout)


def test_a_redirect_is_refused_before_the_password_is_sent_on(server: Any) -> None:
    target, target_seen = server(lambda h: (200, b"", {}))
    url, seen = server(lambda h: (307, b"", {"Location": f"{target}/webservice/Manager"}))
    host = target.removeprefix("http://")
    with pytest.raises(GatherError, match=f"^DSM SOAP authenticate failed: the DSM answered 307 redirecting to "
                                          f"{host}: not followed"):
        soap(url)
    assert [s[0] for s in seen] == ["GET", "POST"] and target_seen == []


def test_a_redirected_wsdl_is_refused(server: Any, serve_http: Serve) -> None:
    target, target_seen = server(lambda h: (200, b"", {}))

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", f"{target}/webservice/Manager?WSDL")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with pytest.raises(GatherError, match=r"^cannot load the DSM SOAP WSDL from .*\?WSDL: the DSM answered 302 "
                                          f"redirecting to {target.removeprefix('http://')}: not followed"):
        soap(serve_http(Redirect))
    assert target_seen == []


def test_a_gateway_error_page_is_named_not_an_unknown_fault(server: Any) -> None:
    page = b"<html><head><title>502 Proxy Error</title></head><body><h1>Proxy Error</h1></body></html>"
    url, _ = server(lambda h: (502, page, {"Content-Type": "text/html; charset=iso-8859-1"}))
    with pytest.raises(GatherError) as err:
        soap(url)
    assert str(err.value) == (f"DSM SOAP authenticate failed: HTTP 502 Bad Gateway from {url.removeprefix('http://')} "
                              f"(a gateway error page: 502 Proxy Error)")


def test_a_soap_fault_still_reaches_the_caller_as_refused_credentials(server: Any) -> None:
    fault = (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
             b"<soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>Authentication failed"
             b"</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>")
    url, _ = server(lambda h: (500, fault, {"Content-Type": "text/xml; charset=utf-8"}))
    with pytest.raises(GatherError, match="refused user auditor: Authentication failed$"):
        soap(url)


def test_a_silent_server_times_out_during_read(server: Any) -> None:
    def slow(h: BaseHTTPRequestHandler) -> tuple[int, bytes, dict[str, str]]:
        time.sleep(3)
        return 200, b"", {}

    url, _ = server(slow)
    started = time.monotonic()
    with pytest.raises(GatherError, match="^DSM SOAP authenticate failed: timed out during read"):
        soap(url, timeout=0.5)
    assert time.monotonic() - started < 2.5
