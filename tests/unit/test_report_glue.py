"""The report glue's cheap pieces: one-line findings and the streamed results.json."""

from __future__ import annotations

import io
import json
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
