"""CEF/syslog parsing, event verdicts, --since, and the update-path helpers."""

from __future__ import annotations

import datetime as dt

import pytest

from dsfleet import cef
from dsfleet.errors import InputError
from dsfleet.events import parse_since, verdict
from dsfleet.snapshot import Event
from dsfleet.updatepath import ACTIVEUPDATE_URL, parse_curl, probe_url, source_url, tls_bypassed

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.timezone.utc)
REAL = ("<134>2022-02-14T03:17:30-08:00 TEST CEF:0|Trend Micro|Deep Security Manager|20.0.560|600|User Signed In|3|"
        "src=135.181.193.110 suser=MasterAdmin target=MasterAdmin msg=User signed in from 135.181.193.110 "
        "TrendMicroDsTenant=Primary TrendMicroDsTenantId=0")


def test_the_documented_dsm_line() -> None:
    r = cef.parse_line(REAL, NOW)
    assert (r.vendor, r.product, r.version, r.signature_id, r.name, r.severity) == (
        "Trend Micro", "Deep Security Manager", "20.0.560", "600", "User Signed In", "3")
    assert r.time == dt.datetime(2022, 2, 14, 11, 17, 30, tzinfo=dt.timezone.utc)
    assert r.extension["msg"] == "User signed in from 135.181.193.110" and r.extension["TrendMicroDsTenantId"] == "0"
    assert r.host == "TEST"


@pytest.mark.parametrize("header,when", [
    ("<134>1 2026-11-21T09:15:00.000Z dsm01 - - - - ", dt.datetime(2026, 11, 21, 9, 15, tzinfo=dt.timezone.utc)),
    ("<134>1 2026-11-21T09:15:00+09:00 dsm01 DSM - ID47 [exampleSDID@32473 iut=\"3\"] ",
     dt.datetime(2026, 11, 21, 0, 15, tzinfo=dt.timezone.utc)),
    ("<134>Nov 21 09:15:00 dsm01 ", dt.datetime(2026, 11, 21, 9, 15, tzinfo=dt.timezone.utc)),
    ("Nov  1 09:15:00 dsm01 ", dt.datetime(2026, 11, 1, 9, 15, tzinfo=dt.timezone.utc)),
    ("<134>Dec 31 23:59:59 dsm01 ", dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)),  # last year
])
def test_syslog_headers(header: str, when: dt.datetime) -> None:
    r = cef.parse_line(header + "CEF:0|Trend Micro|Deep Security Manager|20|2205|Pattern Update Failed|6|target=web-01", NOW)
    assert r.time == when and r.signature_id == "2205" and r.extension == {"target": "web-01"}


def test_escapes_in_header_and_extension() -> None:
    line = (r"<134>1 2026-11-21T09:15:00Z h - - - - CEF:0|Trend Micro|Deep\|Security|20|9017|a \\ b|6|"
            r"dvchost=web-01 msg=Error Code\=-24 line1\nline2 path C:\\DS cs1=x|y")
    r = cef.parse_line(line, NOW)
    assert r.product == "Deep|Security" and r.name == "a \\ b"
    assert r.extension["msg"] == "Error Code=-24 line1\nline2 path C:\\DS" and r.extension["cs1"] == "x|y"


@pytest.mark.parametrize("line", ["", "just text", "<134>1 2026-11-21T09:15:00Z h - - - - LEEF:1.0|TM|DSM|20|600|",
                                  "<134>1 2026-11-21T09:15:00Z h - - - - CEF:0|only|four|fields"])
def test_not_cef(line: str) -> None:
    with pytest.raises(cef.NotCef):
        cef.parse_line(line, NOW)


def event(event_id: int, text: str) -> Event:
    return Event(time=NOW.isoformat(), event_id=event_id, name="x", target="h", description=text, origin="t")


@pytest.mark.parametrize("event_id,text,expected", [
    (2205, "Agent/Appliance Event: 9017. Error Code: -24. Error Message: IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE",
     "cert-expire"),
    (9017, "エラーコード: -24", "cert-expire"),
    (9017, "Error Code: 11", "transient"),
    (2205, "Error Code: 11", "transient"),
    (2205, "Error Code: -3", "update-failed"),
    (9017, "Error Code: -3", "other"),
])
def test_verdicts(event_id: int, text: str, expected: str) -> None:
    assert verdict(event(event_id, text)) == expected


def test_since() -> None:
    assert parse_since("24h", NOW) == NOW - dt.timedelta(hours=24)
    assert parse_since("90m", NOW) == NOW - dt.timedelta(minutes=90)
    assert parse_since("7d", NOW) == NOW - dt.timedelta(days=7)
    assert parse_since("2026-11-01T00:00:00", NOW) == dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(InputError, match="--since: \\(option\\): expected a duration like 90m"):
        parse_since("yesterday", NOW)


def test_source_url_and_bypass() -> None:
    assert source_url("Trend Micro ActiveUpdate Server", "https://other/iau_server.dll") == ACTIVEUPDATE_URL
    assert source_url("Other Update Source", "https://relay.corp:4122/iau_server.dll") == \
        "https://relay.corp:4122/iau_server.dll"
    assert source_url(None, None) == ACTIVEUPDATE_URL
    assert tls_bypassed("https://ipv6-iaus.trendmicro.com/iau_server.dll//")
    assert not tls_bypassed("https://ipv6-iaus.trendmicro.com/iau_server.dll") and not tls_bypassed(None)
    assert probe_url("https://ipv6-iaus.trendmicro.com/iau_server.dll//") == \
        "https://ipv6-iaus.trendmicro.com/iau_server.dll"


@pytest.mark.parametrize("stdout,stderr,rc,status,trusted", [
    ("200 0.05", "", 0, "ok", None),
    ("503 0.05", "", 0, "http error", None),
    ("", "curl: (7) Failed to connect to proxy port 3128: Connection refused", 7, "connect error", None),
    ("", "curl: (56) CONNECT tunnel failed, response 407", 56, "proxy error", None),
    ("", "curl: (60) SSL certificate problem: unable to get local issuer certificate\nMore details here: x", 60,
     "tls error", False),
    ("", "curl: (28) Operation timed out after 20001 milliseconds", 28, "timeout", None),
])
def test_parse_curl(stdout: str, stderr: str, rc: int, status: str, trusted: bool | None) -> None:
    p = parse_curl("relay-01", "https://x/iau_server.dll", None, stdout, stderr, rc)
    assert p.status == status and p.trusted is trusted
    if rc:
        assert (p.reason or "").startswith("curl: (")
