"""The report glue's cheap pieces: one-line findings and the streamed results.json."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from _pytest._io import TerminalWriter

from dsfleet.fixtures.report import OneLine, judged_outcome, write_results
from dsfleet.fleet import Unavailable
from dsfleet.pytest_plugin import CheckFailure, NoEvidence


def _shown(longrepr: OneLine) -> str:
    out = io.StringIO()
    longrepr.toterminal(TerminalWriter(out))
    return out.getvalue()


def test_a_finding_is_one_line_everywhere_pytest_shows_it() -> None:
    text = "[PRT-002] WIN-01-01@esx-01: vsepflt: STOPPED | required: vsepflt RUNNING"
    shown = OneLine(text, quiet=False)
    assert str(shown) == text  # JUnit's text
    assert shown.reprcrash.message == text and str(shown.reprcrash) == text  # short summary, --tb=line
    assert _shown(shown) == text + "\n"  # the failure section, pytest-html's log
    # With --tb=line pytest prints the crash line itself after toterminal: shown once, not twice.
    assert _shown(OneLine(text, quiet=True)) == ""


def test_results_json_is_streamed_one_result_a_line_and_reads_back_the_same(tmp_path: Path) -> None:
    rows = [{"check": "BLD-001", "object": f"vm-{i}", "outcome": "pass", "observed": "naïve ✓ \"quoted\"\n",
             "waiver": None, "explains": []} for i in range(3)]
    doc = {"schema": "dsfleet-results", "version": 2, "counts": {"pass": 3}, "baseline": None, "results": rows}
    path = tmp_path / "results.json"
    write_results(path, doc)
    assert json.loads(path.read_text(encoding="utf-8")) == doc
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line.strip().rstrip(",")) for line in lines if line.startswith("  {")] == rows


def test_results_json_with_no_results_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(path, {"schema": "dsfleet-results", "results": []})
    assert json.loads(path.read_text(encoding="utf-8")) == {"schema": "dsfleet-results", "results": []}


def test_only_a_check_that_says_so_makes_a_finding() -> None:
    assert judged_outcome("fail", CheckFailure("vsepflt: STOPPED", "RUNNING")) == "fail"
    assert judged_outcome("fail", NoEvidence("no evidence: x", "y")) == "error"
    assert judged_outcome("fail", Unavailable("vCenter was not read")) == "error"
    assert judged_outcome("fail", KeyError("relay 7")) == "error"  # a defect of the check: not a finding
    assert judged_outcome("fail", AssertionError("internal invariant")) == "error"
    assert judged_outcome("error", None) == "error" and judged_outcome("pass", None) == "pass"
    assert judged_outcome("skip", None) == "skip"


def test_junit_cases_hold_any_host_output_as_well_formed_xml(tmp_path: Path) -> None:
    from _pytest.reports import TestReport

    from dsfleet.fixtures.junit import RowJUnit

    writer = RowJUnit(str(tmp_path / "junit.xml"), "pytest", None)
    writer.pytest_sessionstart()
    odd = 'sc: "RUNNING" & <stopped> \x01\x1b[0m 日本語 \ud800 tab\there\r\nend'
    for outcome, when in (("passed", "call"), ("failed", "call"), ("failed", "setup"), ("passed", "teardown")):
        report = TestReport(f"tests_fleet/test_hosts.py::test_x[DRV-001:WIN-{outcome}-{when}]", ("x", 1, "x"), {},
                            outcome, None if outcome == "passed" else odd, when,  # type: ignore[arg-type]
                            user_properties=[("observed", odd), ("outcome", "pass")])
        writer.pytest_runtest_logreport(report)
    writer.pytest_sessionfinish()
    root = ET.parse(tmp_path / "junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["tests_fleet.test_hosts"] * 3
    assert cases[0].get("name") == "test_x[DRV-001:WIN-passed-call]"
    observed = cases[1].find("./properties/property[@name='observed']")
    assert observed is not None and observed.get("value") == odd.replace("\x01", "#x01").replace("\x1b", "#x1B") \
        .replace("\ud800", "#xD800")
    failure = cases[1].find("failure")
    assert failure is not None and "日本語" in (failure.text or "") and cases[2].find("error") is not None
    assert not list(tmp_path.glob("*.partial"))
