"""DSM REST client: paging, retries honouring Retry-After, auth failures, timeouts — over real HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from dsfleet.dsm import DsmClient, parse_retry_after
from dsfleet.errors import AuthError, GatherError

Script = Callable[["Handler", dict[str, Any] | None], tuple[int, Any, dict[str, str]]]


class Handler(BaseHTTPRequestHandler):
    script: Script
    seen: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]]

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: dict[str, Any] | None) -> None:
        self.seen.append((self.command, self.path, body, dict(self.headers)))
        status, payload, headers = self.script(self, body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(None)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))


@pytest.fixture
def server() -> Iterator[Callable[[Script], tuple[str, list[Any]]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> tuple[str, list[Any]]:
        seen: list[Any] = []
        handler = type("H", (Handler,), {"script": staticmethod(script), "seen": seen})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", seen

    yield start
    for srv in servers:
        srv.shutdown()


def client(url: str, sleeps: list[float] | None = None, **kw: Any) -> DsmClient:
    return DsmClient(base_url=url, api_key="k3y", auth_style=kw.pop("auth_style", "api-secret-key"),
                     sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw)


COMPUTERS = [{"ID": i} for i in (3, 5, 8, 13, 21)]


def paging(handler: Handler, body: dict[str, Any] | None) -> tuple[int, Any, dict[str, str]]:
    assert body is not None and body["sortByObjectID"] is True
    (criterion,) = body["searchCriteria"]
    assert criterion["idTest"] == "greater-than"
    rows = [c for c in COMPUTERS if c["ID"] > criterion["idValue"]][: body["maxItems"]]
    return 200, {"computers": rows}, {}


def test_paging_follows_ids_until_a_short_page(server: Any) -> None:
    url, seen = server(paging)
    c = client(url)
    assert [x["ID"] for x in c.search_computers(["computerStatus", "antiMalware"], page_size=2)] == [3, 5, 8, 13, 21]
    assert [s[2]["searchCriteria"][0]["idValue"] for s in seen] == [0, 5, 13]
    assert all(s[1].startswith("/api/computers/search?expand=computerStatus&expand=antiMalware") for s in seen)
    assert c.calls == 3
    headers = seen[0][3]
    assert headers["api-secret-key"] == "k3y" and headers["api-version"] == "v1"


def test_exact_multiple_of_page_size_ends_with_an_empty_page(server: Any) -> None:
    url, seen = server(paging)
    assert len(list(client(url).search_computers([], page_size=5))) == 5
    assert len(seen) == 2 and seen[0][1].endswith("expand=none")


def test_cloud_one_auth_header(server: Any) -> None:
    url, seen = server(lambda h, b: (200, {"value": "x"}, {}))
    assert client(url, auth_style="apikey").system_setting("platformSettingX") == "x"
    assert seen[0][3]["Authorization"] == "ApiKey k3y" and "api-secret-key" not in seen[0][3]


def test_retry_after_is_honoured_on_429_and_5xx(server: Any) -> None:
    answers = iter([(429, {}, {"Retry-After": "3"}), (503, {}, {}), (200, {"value": "ok"}, {})])
    url, seen = server(lambda h, b: next(answers))
    sleeps: list[float] = []
    assert client(url, sleeps, backoff_s=0.5).system_setting("s") == "ok"
    assert len(seen) == 3 and sleeps[0] == 3.0 and 0.5 <= sleeps[1] <= 1.0  # backoff 0.5 * 2**1 with jitter


def test_retries_are_bounded(server: Any) -> None:
    url, seen = server(lambda h, b: (502, {"message": "bad gateway"}, {}))
    with pytest.raises(GatherError, match="HTTP 502"):
        client(url, retries=2).system_setting("s")
    assert len(seen) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_one_clear_error_without_retries(server: Any, status: int) -> None:
    url, seen = server(lambda h, b: (status, {"message": "no"}, {}))
    with pytest.raises(AuthError, match=f"authentication failed: the DSM answered {status}"):
        client(url).system_setting("s")
    assert len(seen) == 1


def test_connection_refused_is_retried_then_reported() -> None:
    sleeps: list[float] = []
    with pytest.raises(GatherError, match="no answer after 3 attempts"):
        client("http://127.0.0.1:9", sleeps, retries=2, timeout_s=2).system_setting("s")
    assert len(sleeps) == 2


def test_manager_version_is_plain_text(server: Any) -> None:
    url, seen = server(lambda h, b: (200, "20.0.1022\n", {"Content-Type": "text/plain"}))
    assert client(url).manager_version() == "20.0.1022"
    assert seen[0][1] == "/rest/managerInfo/version"


def test_non_json_answer_is_a_gather_error(server: Any) -> None:
    url, _ = server(lambda h, b: (200, "<html>login</html>", {}))
    with pytest.raises(GatherError, match="not JSON"):
        client(url).system_setting("s")


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
