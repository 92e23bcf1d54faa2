"""DSM REST client over real HTTP (paging that does not trust the server, retries honouring Retry-After, auth
failures, redirects refused, error texts, bodies cut short) and the reading of computer records."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest

from dsfleet.dsm import DsmClient, parse_retry_after
from dsfleet.errors import AuthError, GatherError
from dsfleet.gather import computer_from_api, gather_dsm

from .conftest import Serve

Script = Callable[["Handler", dict[str, Any] | None], tuple[int, Any, dict[str, str]]]


class Handler(BaseHTTPRequestHandler):
    script: Script
    seen: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]]

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: dict[str, Any] | None) -> None:
        self.seen.append((self.command, self.path, body, dict(self.headers)))
        status, payload, headers = self.script(self, body)
        data = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers and "Transfer-Encoding" not in headers and "Connection" not in headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)  # a script may claim more than it sends: the connection then closes early

    def do_GET(self) -> None:  # noqa: N802
        self._answer(None)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))


@pytest.fixture
def server(serve_http: Serve) -> Iterator[Callable[[Script], tuple[str, list[Any]]]]:
    def start(script: Script) -> tuple[str, list[Any]]:
        seen: list[Any] = []
        return serve_http(type("H", (Handler,), {"script": staticmethod(script), "seen": seen})), seen

    yield start


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


def test_paging_follows_ids_until_an_empty_page(server: Any) -> None:
    url, seen = server(paging)
    c = client(url)
    assert [x["ID"] for x in c.search_computers(["computerStatus", "antiMalware"], page_size=2)] == [3, 5, 8, 13, 21]
    assert [s[2]["searchCriteria"][0]["idValue"] for s in seen] == [0, 5, 13, 21]  # the short page is not the end
    assert all(s[1].startswith("/api/computers/search?expand=computerStatus&expand=antiMalware") for s in seen)
    assert c.calls == 4
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
    with pytest.raises(GatherError, match=r"GET /api/systemsettings/s: connection refused.*; gave up after 3 attem"):
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


# -- paging that does not trust the server ---------------------------------------------------------------


def test_short_pages_while_more_exist_read_every_computer(server: Any) -> None:
    def short(handler: Handler, body: dict[str, Any] | None) -> tuple[int, Any, dict[str, str]]:
        assert body is not None
        after = body["searchCriteria"][0]["idValue"]
        return 200, {"computers": [c for c in COMPUTERS if c["ID"] > after][:1]}, {}  # 1 of maxItems=3

    url, seen = server(short)
    assert [x["ID"] for x in client(url).search_computers([], page_size=3)] == [3, 5, 8, 13, 21]
    assert len(seen) == 6


@pytest.mark.parametrize("fault", ["repeat", "ignore-cursor"])
def test_a_page_that_does_not_follow_the_cursor_is_an_error(server: Any, fault: str) -> None:
    def broken(handler: Handler, body: dict[str, Any] | None) -> tuple[int, Any, dict[str, str]]:
        return 200, {"computers": COMPUTERS[:2]}, {}  # the first page, whatever was asked

    url, seen = server(broken)
    got: list[Any] = []
    with pytest.raises(GatherError, match="asked for ids after 5, the DSM returned computer 3 again .*not complete"):
        got.extend(client(url).search_computers([], page_size=2))
    assert [x["ID"] for x in got] == [3, 5] and len(seen) == 2


def test_ids_that_never_end_are_bounded(server: Any) -> None:
    def endless(handler: Handler, body: dict[str, Any] | None) -> tuple[int, Any, dict[str, str]]:
        assert body is not None
        after = body["searchCriteria"][0]["idValue"]
        return 200, {"computers": [{"ID": after + 1}, {"ID": after + 2}]}, {}

    url, seen = server(endless)
    with pytest.raises(GatherError, match="more than 10 computers .*not complete"):
        list(client(url, max_computers=10).search_computers([], page_size=2))
    assert len(seen) == 6


def test_records_without_an_integer_id_pass_through_but_cannot_move_the_cursor(server: Any) -> None:
    pages = iter([[{"ID": "7"}, {"ID": 9}], [{"hostName": "x"}], []])
    url, _ = server(lambda h, b: (200, {"computers": next(pages)}, {}))
    with pytest.raises(GatherError, match=r"the page after id 9 has no computer with an integer ID "
                                          r"\(first record's ID: None\)"):
        list(client(url).search_computers([], page_size=2))
    pages = iter([[{"ID": "7"}, {"ID": 9}], []])
    assert [x["ID"] for x in client(url).search_computers([], page_size=2)] == ["7", 9]


# -- redirects, error texts, bodies cut short ------------------------------------------------------------


def test_a_redirect_is_not_followed_and_no_secret_reaches_its_target(server: Any) -> None:
    target, target_seen = server(lambda h, b: (200, {"value": "stolen"}, {}))
    url, seen = server(lambda h, b: (302, "", {"Location": f"{target}/api/systemsettings/s"}))
    host = target.removeprefix("http://")
    with pytest.raises(GatherError, match=f"the DSM answered 302 redirecting to {host}: not followed "
                                          r"\(credentials are never sent to another host\)"):
        client(url).system_setting("s")
    assert len(seen) == 1 and target_seen == []


def test_a_gateway_error_page_is_named_by_its_title(server: Any) -> None:
    page = ("<html>\n<head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway</h1></center>"
            "<hr><center>nginx</center></body></html>")
    url, _ = server(lambda h, b: (502, page, {"Content-Type": "text/html"}))
    with pytest.raises(GatherError) as err:
        client(url, retries=1).system_setting("s")
    host = url.removeprefix("http://")
    assert str(err.value) == (f"GET /api/systemsettings/s: HTTP 502 Bad Gateway from {host} (a gateway error page: "
                              f"502 Bad Gateway); gave up after 2 attempts")


def test_a_json_error_keeps_the_server_message_whole(server: Any) -> None:
    message = "Invalid setting name: " + "x" * 250 + " (the end)"
    url, _ = server(lambda h, b: (400, {"message": message}, {}))
    with pytest.raises(GatherError) as err:
        client(url).system_setting("s")
    assert str(err.value).endswith(f"HTTP 400 Bad Request from {url.removeprefix('http://')}: {message}")


def test_a_long_text_error_is_capped_at_a_word_with_an_ellipsis(server: Any) -> None:
    url, _ = server(lambda h, b: (500, "first line " + "word " * 100 + "\nsecond line", {"Content-Type": "text/plain"}))
    with pytest.raises(GatherError) as err:
        client(url).system_setting("s")
    said = str(err.value).split(": ", 2)[2]
    assert said.endswith("word…") and len(said) <= 301 and "second" not in said


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_carries_the_server_message(server: Any, status: int) -> None:
    url, _ = server(lambda h, b: (status, {"message": "The API key has expired."}, {}))
    with pytest.raises(AuthError, match=f"answered {status} to GET /api/systemsettings/s: The API key has expired. "
                                        r"\(check the API key and its role\)"):
        client(url).system_setting("s")


def test_a_body_shorter_than_its_content_length_is_cut_short(server: Any) -> None:
    url, seen = server(lambda h, b: (200, b'{"computers": [{"ID": 1}', {"Content-Length": "500"}))
    with pytest.raises(GatherError, match=r"POST /api/computers/search: response cut short.*gave up after 2 attempts"):
        list(client(url, retries=1).search_computers([]))
    assert len(seen) == 2  # retried once: a read-only call


def test_a_chunked_body_cut_short_is_a_gather_error(server: Any) -> None:
    chunk = b'{"computers": [{"ID": 1}'
    body = b"%x\r\n%s\r\n40\r\n{\"ID" % (len(chunk), chunk)  # a 64-byte chunk announced, 5 bytes sent
    url, _ = server(lambda h, b: (200, body, {"Transfer-Encoding": "chunked"}))
    with pytest.raises(GatherError, match="response cut short"):
        list(client(url, retries=0).search_computers([]))


def test_json_cut_short_without_a_length_is_named_so(server: Any) -> None:
    url, _ = server(lambda h, b: (200, '{"computers": [{"ID": 1, "hostName": "web-0', {"Connection": "close"}))
    with pytest.raises(GatherError, match="POST /api/computers/search: response cut short: the JSON ends after 43 "):
        list(client(url).search_computers([]))


def test_retry_after_is_capped_and_the_total_time_bounded(server: Any) -> None:
    url, seen = server(lambda h, b: (429, {"message": "slow down"}, {"Retry-After": "3600"}))
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    c = client(url, retries=10, retry_budget_s=100)
    c.sleep, c.clock = sleep, lambda: now[0]
    with pytest.raises(GatherError, match="HTTP 429 Too Many Requests .*: slow down; gave up after 4 attempts"):
        c.system_setting("s")
    assert sleeps == [30.0, 30.0, 30.0] and len(seen) == 4


def test_the_environment_cannot_add_credentials_or_trust(server: Any, tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "netrc").write_text("machine 127.0.0.1 login someone password hunter2\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "nowhere.pem"))
    url, seen = server(lambda h, b: (200, {"value": "x"}, {}))
    assert client(url).system_setting("s") == "x"
    assert "Authorization" not in seen[0][3]


def test_the_environment_proxy_still_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert client("https://dsm.example:4119").session.proxies["https"] == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "dsm.example")
    assert "https" not in client("https://dsm.example:4119").session.proxies


# -- malformed records: the good fields are kept, the bad ones named ------------------------------------

GOOD = {"ID": 7, "hostName": "web-07", "displayName": "", "platform": "Microsoft Windows Server 2019 (64 bit)",
        "agentVersion": "20.0.1-1234", "relayListID": 2, "applianceFingerPrint": "AB:CD",
        "computerStatus": {"agentStatus": "active", "agentStatusMessages": ["Managed (Online)"],
                           "applianceStatus": "active", "applianceStatusMessages": ["Anti-Malware Engine Offline"]},
        "antiMalware": {"state": "on", "moduleStatus": {"agentStatusMessage": "", "applianceStatusMessage": "Offline"}},
        "computerSettings": {"platformSettingRelayState": {"value": "true"}},
        "vmwareVMVirtualMachineSummary": {"biosUUID": "4210-aa", "state": "Powered On"}}


def test_a_well_formed_record_has_no_problems() -> None:
    c = computer_from_api(GOOD, 1)
    assert (c.id, c.host_name, c.agent_version, c.relay_list_id, c.is_relay, c.appliance_protected) == (
        7, "web-07", "20.0.1-1234", 2, True, True)
    assert c.appliance_messages == ["Anti-Malware Engine Offline"] and c.am_messages == ["Offline"]
    assert c.bios_uuid == "4210-aa" and c.vm_state == "Powered On" and c.problems == []


@pytest.mark.parametrize("field, value, problem", [
    ("computerStatus", "online", "computerStatus: expected an object, got 'online'"),
    ("agentVersion", 20.0, "agentVersion: expected a string, got 20.0"),
    ("relayListID", "2", "relayListID: expected an integer, got '2'"),
    ("computerStatus.applianceStatusMessages", "Offline",
     "computerStatus.applianceStatusMessages: expected a list of strings, got 'Offline'"),
    ("computerSettings.platformSettingRelayState", True,
     "computerSettings.platformSettingRelayState: expected an object, got True"),
])
def test_a_bad_field_keeps_the_good_ones_and_is_named(field: str, value: Any, problem: str) -> None:
    raw = json.loads(json.dumps(GOOD))
    *parents, last = field.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    c = computer_from_api(raw, 1)
    assert c.problems == [f"DSM computer 7: {problem}"]
    assert c.host_name == "web-07" and c.am_state == "on"  # the rest of the record survives


def test_a_lone_surrogate_the_json_carried_is_a_bad_field_not_a_crash_at_writing() -> None:
    raw = json.loads(json.dumps(GOOD).replace('"20.0.1-1234"', '"20.0.1-\\ud800"').replace(
        '"Anti-Malware Engine Offline"', '"Engine \\udfff"'))
    c = computer_from_api(raw, 1)
    assert c.agent_version is None and c.appliance_messages == []
    assert c.problems == [
        "DSM computer 7: agentVersion: expected text (it holds a lone UTF-16 surrogate, which no report can write), "
        "got '20.0.1-\\ud800'",
        "DSM computer 7: computerStatus.applianceStatusMessages: expected a list of strings, got ['Engine \\udfff']"]
    assert all(p.encode("utf-8") for p in c.problems)  # the notes themselves can be written


def test_a_bad_parent_object_is_named_once() -> None:
    c = computer_from_api(dict(GOOD, computerStatus=["online"]), 1)
    assert c.problems == ["DSM computer 7: computerStatus: expected an object, got ['online']"]
    assert c.agent_status is None and c.appliance_messages == []


class FakeClient:
    calls = 3

    def __init__(self, records: list[Any], error: str | None = None) -> None:
        self.records, self.error = records, error

    def search_computers(self, expand: list[str], page_size: int) -> Iterator[Any]:
        yield from self.records
        if self.error:
            raise GatherError(self.error)

    def manager_version(self) -> str:
        return "20.0.1022"


def inventory() -> Any:
    dsm = SimpleNamespace(url="https://dsm:4119", auth="api-secret-key", tls=SimpleNamespace(verify=True),
                          page_size=5000, on_premises=True)
    return SimpleNamespace(dsm=dsm)


def test_records_without_a_usable_id_make_the_source_partial() -> None:
    records = [GOOD, {"hostName": "db-01"}, "garbage", dict(GOOD, ID="9", hostName="app-09"),
               dict(GOOD, ID=True), dict(GOOD, ID=11, agentVersion=20)]
    facts = gather_dsm(inventory(), FakeClient(records))  # type: ignore[arg-type]
    assert [c.id for c in facts.computers] == [7, 11]
    assert facts.computers[1].problems == ["DSM computer 11: agentVersion: expected a string, got 20"]
    assert facts.unreadable == ["computer record 2 ('db-01'): expected an integer ID, got None",
                                "computer record 3: expected an object, got 'garbage'",
                                "computer record 4 ('app-09'): expected an integer ID, got '9'",
                                "computer record 5 ('web-07'): expected an integer ID, got True"]
    assert facts.error == ("4 computer records could not be read: computer record 2 ('db-01'): expected an integer "
                           "ID, got None; computer record 3: expected an object, got 'garbage'; computer record 4 "
                           "('app-09'): expected an integer ID, got '9'; and 1 more (listed in the snapshot's "
                           "dsm.unreadable)")
    assert facts.manager_version == "20.0.1022" and facts.api_calls == 3


def test_a_failed_search_keeps_nothing() -> None:
    failing = FakeClient([GOOD], error="POST /api/computers/search: connection reset")
    facts = gather_dsm(inventory(), failing)  # type: ignore[arg-type]
    assert facts.computers == [] and facts.error == "POST /api/computers/search: connection reset"
    assert facts.manager_version is None
