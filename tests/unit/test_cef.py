"""CEF/LEEF syslog parsing on published samples (tests/samples/syslog), the file reader, event verdicts, --since."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import os
import threading
import time
from pathlib import Path

import pytest

from dsfleet import cef
from dsfleet.errors import InputError
from dsfleet.events import parse_since, read_cef, verdict
from dsfleet.snapshot import Event, EventFacts

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.timezone.utc)
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "syslog"
PAYLOAD = ("CEF:0|Trend Micro|Deep Security Manager|20.0.1000|2205|Pattern Update on Agents/Appliances Failed|6|"
           "src=10.0.0.5 suser=System target=web-01 msg=Agent/Appliance Event: 9017. Error Code: -24. "
           "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE TrendMicroDsTenant=Primary TrendMicroDsTenantId=0")


def sample_lines(name: str) -> list[str]:
    return (SAMPLES / name).read_text(encoding="utf-8").splitlines()


def header_rows() -> list[tuple[str, str, str]]:
    rows = [line.split("\t") for line in sample_lines("headers.tsv") if not line.startswith("#")]
    return [(r[0], r[1], r[2]) for r in rows]


# -- headers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header,when,host", header_rows(), ids=[r[0][:40] for r in header_rows()])
def test_published_syslog_headers(header: str, when: str, host: str) -> None:
    r = cef.parse_line(f"{header} {PAYLOAD}", NOW)
    assert r.time.isoformat() == when and r.host == host
    assert r.signature_id == "2205" and r.extension["target"] == "web-01"


def test_rfc5424_byte_order_mark_before_the_payload() -> None:
    r = cef.parse_line(f"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \ufeff{PAYLOAD}", NOW)
    assert r.host == "mymachine.example.com" and r.signature_id == "2205"


def test_yearless_time_a_day_ahead_is_last_year() -> None:
    r = cef.parse_line(f"<134>Dec 31 23:59:59 dsm01 {PAYLOAD}", NOW)
    assert r.time == dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)


# -- Deep Security CEF and LEEF -----------------------------------------------------------------------------


def test_published_deep_security_cef_lines() -> None:
    records = [cef.parse_line(line, NOW) for line in sample_lines("deep-security.cef")]
    assert [r.signature_id for r in records] == ["600", "600", "482", "190", "740", "1001251", "5000000", "600"]
    assert [r.host for r in records] == ["dsmhost", "TEST", "192.168.1.20", "192.168.1.20", "192.168.1.20",
                                         "2K19-va", "DeepSec Logs", ""]
    assert records[1].time == dt.datetime(2022, 2, 14, 11, 17, 30, tzinfo=dt.timezone.utc)
    assert records[1].extension["msg"] == "User signed in from 135.181.193.110"
    assert records[2].extension["target"] == "1011144 - Microsoft Windows - AutoRun registries modified (ATT&CK " \
                                              "T1547.001)"
    assert records[3].extension["msg"] == "Alert: Memory Critical Threshold Exceeded\nSubject: 192.168.1.20\n" \
                                          "Severity: Critical"
    assert records[4].extension["target"] == "SMC-NewAPP (192.168.1.61)"
    assert records[5].product == "Deep Security Agent" and records[5].extension["dvchost"] == "2K19-va.test.local"
    assert records[6].time == dt.datetime(2020, 9, 21, 7, 21, 11, tzinfo=dt.timezone.utc)
    assert records[7].time == dt.datetime(2026, 11, 21, 9, 15, tzinfo=dt.timezone.utc)


def test_published_deep_security_leef_line() -> None:
    (line,) = sample_lines("deep-security.leef")
    r = cef.parse_line(line, NOW)
    assert (r.vendor, r.product, r.version, r.signature_id) == ("Trend Micro", "Deep Security Manager", "11.0.221",
                                                               "851")
    assert r.name == "Reconnaissance Detected: Network or Port Scan" and r.severity == "6"
    assert r.extension["target"] == "testTarget6" and r.extension["usrName"] == "qradar"
    assert r.host == "trendmicro.deepsecurity.test" and r.time.isoformat() == "2026-07-14T01:32:31+00:00"


@pytest.mark.parametrize("number", [0, 1, 2])
def test_leef2_delimiters_tab_caret_and_hex(number: int) -> None:
    payload = sample_lines("payloads-without-header.txt")[number]
    r = cef.parse_line(f"<134>Nov 21 09:15:00 dsm01 {payload}", NOW)
    assert r.signature_id == "4000030" and r.name == "HEU_AEGIS_CRYPT" and r.severity == "6"
    assert r.extension["act"] == "Terminate" and r.extension["TrendMicroDsMalwareTargetType"] == "File System"
    assert r.extension["filePath"] == "C:\\\\Windows\\\\System32\\\\virus.exe"


def test_leef2_named_caret_delimiter() -> None:
    r = cef.parse_line("Nov 21 09:15:00 lancope " + sample_lines("payloads-without-header.txt")[3], NOW)
    assert r.extension == {"src": "10.0.1.8", "dst": "10.0.0.5", "sev": "5", "srcPort": "81", "dstPort": "21"}


@pytest.mark.parametrize("line", sample_lines("payloads-without-header.txt"))
def test_a_payload_without_header_or_rt_has_no_time(line: str) -> None:
    with pytest.raises(cef.BadPayload, match="no time"):
        cef.parse_line(line, NOW)


def test_rt_gives_the_time_when_there_is_no_header() -> None:
    r = cef.parse_line(PAYLOAD + " rt=1763719200000", NOW)
    assert r.time == dt.datetime(2025, 11, 21, 10, 0, tzinfo=dt.timezone.utc) and r.host == ""


def test_escapes_in_header_and_extension() -> None:
    line = (r"<134>1 2026-11-21T09:15:00Z h - - - - CEF:0|Trend Micro|Deep\|Security|20|9017|a \\ b|6|"
            r"dvchost=web-01 msg=Error Code\=-24 line1\nline2 path C:\\DS cs1=x|y")
    r = cef.parse_line(line, NOW)
    assert r.product == "Deep|Security" and r.name == "a \\ b"
    assert r.extension["msg"] == "Error Code=-24 line1\nline2 path C:\\DS" and r.extension["cs1"] == "x|y"


@pytest.mark.parametrize("line", sample_lines("other-programs.log") + ["", "just text", "PROCEDURE:1 LEEFY stuff"])
def test_other_programs_lines_are_not_cef(line: str) -> None:
    with pytest.raises(cef.NotCef):
        cef.parse_line(line, NOW)


@pytest.mark.parametrize("line,reason", [
    ("<134>1 2026-11-21T09:15:00Z h - - - - CEF:0|only|four|fields", "CEF header has 3 of 7"),
    ("<134>Nov 21 09:15:00 h LEEF:3.0|TM|DSM|20|600|", "LEEF version '3.0'"),
    ("<134>Nov 21 09:15:00 h LEEF:2.0|TM|DSM", "LEEF header has 2 of 5"),
    ("<134>Feb 30 09:15:00 h CEF:0|a|b|c|2205|n|6|", "is not valid"),
    ("<134>Foo 21 09:15:00 h CEF:0|a|b|c|2205|n|6|", "'Foo' is not a month"),
    ("[2026-11-21 09:15:00] h CEF:0|a|b|c|2205|n|6|", "is not RFC 5424, RFC 3164"),
    ("<134>1 2026-13-40T09:15:00Z h - - - - CEF:0|a|b|c|2205|n|6|", "is not valid"),
    ("<134>Nov 21 09:15:00 h CEF:x|a|b|c|2205|n|6|", "CEF version 'x'"),
])
def test_unreadable_payloads_say_why(line: str, reason: str) -> None:
    with pytest.raises(cef.BadPayload, match=reason.replace("(", r"\(").replace("|", r"\|")):
        cef.parse_line(line, NOW)


# -- files --------------------------------------------------------------------------------------------------

SINCE = NOW - dt.timedelta(days=7)


def read(*paths: Path) -> EventFacts:
    facts = EventFacts(configured=True, source="cef")
    read_cef(paths, SINCE, NOW, facts)
    return facts


def cef_line(when: str, event_id: int = 2205, target: str = "web-01") -> str:
    return (f"<134>1 {when} dsm01 - - - - CEF:0|Trend Micro|Deep Security Manager|20|{event_id}|Update Failed|6|"
            f"target={target} msg=Error Code: -24")


def test_rotated_and_compressed_files_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dsm.cef").write_text(cef_line("2026-11-21T09:00:00Z", target="a") + "\n")
    (tmp_path / "dsm.cef.1").write_text(cef_line("2026-11-20T09:00:00Z", target="b") + "\n"
                                        + cef_line("2026-11-01T09:00:00Z", target="old") + "\n")
    with gzip.open(tmp_path / "dsm.cef.2.gz", "wt") as f:
        f.write("Nov 19 08:00:00 dsm01 sshd[1]: other program\n" + cef_line("2026-11-19T09:00:00Z", target="c") + "\n")
    with gzip.open(tmp_path / "dsm.cef.3", "wt") as f:  # gzip without the .gz name: told by its magic bytes
        f.write(cef_line("2026-11-18T09:00:00Z", target="d") + "\n")
    (tmp_path / "dsm.cef.4.bz2").write_bytes(bz2.compress((cef_line("2026-11-17T09:00:00Z", target="e") + "\n")
                                                          .encode()))
    facts = read(tmp_path)
    assert facts.error is None and facts.other == 1 and facts.scanned == 6
    assert sorted(e.target for e in facts.events) == ["a", "b", "c", "d", "e"]
    assert {e.origin for e in facts.events if e.target == "c"} == {f"{tmp_path / 'dsm.cef.2.gz'}:2"}
    assert len(facts.files) == 5


def test_a_fifo_is_skipped_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dsm.cef").write_text(cef_line("2026-11-21T09:00:00Z") + "\n")
    done: list[EventFacts] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: done.append(read(tmp_path, tmp_path / "pipe")), daemon=True)
    worker.start()
    worker.join(1)
    assert done and time.monotonic() - started < 1
    facts = done[0]
    assert f"{tmp_path / 'pipe'}: a named pipe, not read" in facts.skipped
    assert facts.error == f"no readable log file in {tmp_path / 'pipe'} ({tmp_path / 'pipe'}: a named pipe, not read)"
    assert len(facts.events) == 1


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    assert read(tmp_path).error == f"no readable log file in {tmp_path}"


def test_a_folder_of_other_programs_lines_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "messages").write_text("\n".join(sample_lines("other-programs.log")) + "\n")
    facts = read(tmp_path)
    assert facts.other == 6 and facts.error == f"no CEF or LEEF line in {tmp_path} (6 other lines in 1 file)"


def test_an_unparsed_cef_line_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "dsm.cef"
    log.write_text("\n".join([cef_line("2026-11-21T09:00:00Z"), "Nov 21 09:00:00 host sshd[1]: other",
                              "<134>Nov 21 09:15:00 dsm01 CEF:0|Trend Micro|cut short"]) + "\n")
    facts = read(log)
    assert facts.unparsed == 1 and facts.other == 1 and len(facts.events) == 1
    assert facts.unparsed_lines == [f"{log}:3: the CEF header has 2 of 7 pipe-separated fields"]
    assert facts.error == (f"1 CEF/LEEF line could not be parsed (first: {log}:3: the CEF header has 2 of 7 "
                           f"pipe-separated fields)")


def test_other_programs_lines_alone_are_not_an_error(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text("\n".join(sample_lines("other-programs.log") + sample_lines("deep-security.cef")) + "\n")
    facts = read(log)
    assert facts.error is None and facts.other == 6 and facts.scanned == 8 and facts.events == []


def test_a_gzip_cut_short_is_recorded_and_partial(tmp_path: Path) -> None:
    data = gzip.compress(("\n".join(cef_line("2026-11-21T09:00:00Z") for _ in range(200)) + "\n").encode())
    (tmp_path / "dsm.cef.1.gz").write_bytes(data[: len(data) // 2])
    facts = read(tmp_path)
    assert facts.unreadable and facts.unreadable[0].startswith(f"{tmp_path / 'dsm.cef.1.gz'}: ")
    assert "could not be read" in (facts.error or "")


def test_an_unreadable_file_is_recorded_and_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "dsm.cef"
    log.write_text(cef_line("2026-11-21T09:00:00Z") + "\n")

    def denied(path: str, flags: int) -> int:  # chmod 0 would not stop root, who runs these tests in CI
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(os, "open", denied)
    facts = read(log)
    assert facts.unreadable == [f"{log}: permission denied"]
    assert facts.error == f"no readable log file in {log}; 1 file could not be read (first: {log}: permission denied)"


def test_lines_that_are_not_utf8_are_read_with_replacement(tmp_path: Path) -> None:
    log = tmp_path / "dsm.cef"
    log.write_bytes(cef_line("2026-11-21T09:00:00Z").encode().replace(b"msg=", b"msg=\x82\xa8 ") + b"\n")
    facts = read(log)
    assert facts.error is None and facts.replaced == 1 and "\ufffd" in facts.events[0].description


def test_leef_events_are_read_too(tmp_path: Path) -> None:
    log = tmp_path / "dsm.leef"
    log.write_text("<134>Nov 21 09:15:00 dsm01 LEEF:2.0|Trend Micro|Deep Security Manager|20|2205|cat=System\t"
                   "name=Pattern Update on Agents/Appliances Failed\tsev=6\ttarget=web-02\tmsg=Error Code: -24\n")
    (event,) = read(log).events
    assert (event.event_id, event.target, event.description) == (2205, "web-02", "Error Code: -24")


# -- verdicts and --since -----------------------------------------------------------------------------------


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
    assert parse_since("3650d", NOW) == NOW - dt.timedelta(days=3650)
    assert parse_since("2026-11-01T00:00:00", NOW) == dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(InputError, match="--since: \\(option\\): expected a duration like 90m"):
        parse_since("yesterday", NOW)


@pytest.mark.parametrize("text,expected", [
    ("0m", "a window from 1m up to 3650d"),
    ("3651d", "a window from 1m up to 3650d"),
    ("99999999d", "a window from 1m up to 3650d"),
    ("2026-11-22T00:00:00Z", "a time in the past"),
    ("2026-11-21T12:00:00Z", "a time in the past"),
    ("1999-01-01", "a time in the past, at most 3650 days before now"),
])
def test_since_rejects_an_empty_or_unbounded_window(text: str, expected: str) -> None:
    with pytest.raises(InputError, match=f"--since: \\(option\\): expected {expected}") as err:
        parse_since(text, NOW)
    assert err.value.file == "--since" and err.value.field == "(option)"
