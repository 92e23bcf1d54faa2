"""Waivers (strict loading, matching, expiry), the baseline diff, the manifest, the summaries."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet import manifest
from dsfleet.baseline import RESULTS_VERSION, compare, load_doc, load_results, write_results
from dsfleet.errors import InputError
from dsfleet.waivers import find, load

CHECKS = {"PRT-003", "MUX-001"}
GOOD = {"check": "PRT-003", "object": "WIN-*@esx-0?", "justification": "decommissioning", "approver": "j.tanaka",
        "ticket": "CHG-1", "expires": "2027-01-31"}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "waivers.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_waiver_matching_and_expiry(tmp_path: Path) -> None:
    (w,) = load(write(tmp_path, {"waivers": [GOOD]}), CHECKS)
    assert find([w], "PRT-003", "WIN-01-02@esx-01") is w
    assert find([w], "PRT-003", "LNX-01-02@esx-01") is None and find([w], "MUX-001", "WIN-1@esx-01") is None
    assert not w.expired(dt.datetime(2027, 1, 30, 23, 59, tzinfo=dt.timezone.utc))
    assert w.expired(dt.datetime(2027, 1, 31, 0, 0, tzinfo=dt.timezone.utc))  # from the expiry date on (UTC)
    assert "j.tanaka" in w.describe() and "CHG-1" in w.describe()


@pytest.mark.parametrize("edit,field,expected", [
    (lambda w: w.pop("approver"), "waivers[0].approver", "a value (required)"),
    (lambda w: w.update(justification="  "), "waivers[0].justification", "a value (required)"),
    (lambda w: w.update(check="XYZ-999"), "waivers[0].check", "a check id from the catalog"),
    (lambda w: w.update(expires="next month"), "waivers[0].expires", "a UTC date"),
    (lambda w: w.update(risk="low"), "waivers[0].risk", "no such field"),
    (lambda w: w.update(ticket=1234), "waivers[0].ticket", "text"),
])
def test_malformed_waivers_name_file_entry_and_field(tmp_path: Path, edit: Any, field: str, expected: str) -> None:
    entry = dict(GOOD)
    edit(entry)
    path = write(tmp_path, {"waivers": [entry]})
    with pytest.raises(InputError) as err:
        load(path, CHECKS)
    assert str(err.value).startswith(f"{path}: {field}: expected ") and expected in str(err.value)


def test_waivers_file_shape(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="waivers: expected a list of waivers"):
        load(write(tmp_path, {"exceptions": []}), CHECKS)


def r(check: str, obj: str, outcome: str) -> dict[str, Any]:
    return {"check": check, "object": obj, "outcome": outcome, "observed": "", "title": "t", "severity": "high",
            "remediation": "fix", "source": "s", "required": "", "host": "esx-01"}


def test_baseline_categories() -> None:
    before = [r("A", "1", "fail"), r("A", "2", "pass"), r("A", "3", "fail"), r("A", "4", "skip"), r("A", "gone", "pass")]
    after = [r("A", "1", "fail"), r("A", "2", "error"), r("A", "3", "pass"), r("A", "4", "pass"), r("A", "new", "fail")]
    diff = compare(after, before, "earlier")
    assert [x["object"] for x in diff.new_failures] == ["2", "new"]
    assert [x["object"] for x in diff.still_failing] == ["1"] and [x["object"] for x in diff.fixed] == ["3"]
    assert [x["object"] for x in diff.new_passes] == ["4"]
    assert diff.appeared == [("A", "new")] and diff.disappeared == [("A", "gone")]
    waived_before = compare([r("A", "1", "fail")], [r("A", "1", "waived")], "b")
    assert waived_before.still_failing and not waived_before.new_failures  # a waived result was not passing


def test_load_results_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected the results.json of an earlier run"):
        load_results(tmp_path / "nope")
    (tmp_path / "results.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(InputError, match="schema: expected 'dsfleet-results'"):
        load_results(tmp_path)


def _run_result(check: str, obj: str, outcome: str, remedy: str = "") -> dict[str, Any]:
    """A result as a run holds it: its own facts and its check's catalog text."""
    return {"check": check, "title": f"title {check}", "severity": "high", "object": obj, "host": "esx-01",
            "identity": "", "observed": "seen", "required": "wanted", "outcome": outcome,
            "remediation": " ".join(x for x in (remedy, f"fix {check}") if x) if outcome != "pass" else "",
            "remedy": remedy, "guidance": f"fix {check}", "source": "field practice: x", "evidence": [],
            "waiver": None, "case": "", "explains": [], "cause": None, "nodeid": f"n-{obj}"}


def test_results_json_writes_catalog_text_once_and_reads_back_the_same(tmp_path: Path) -> None:
    rows = [_run_result("BLD-001", "a", "fail", remedy="upgrade a"), _run_result("BLD-001", "b", "pass"),
            _run_result("PRT-002", "c", "waived")]
    path = tmp_path / "results.json"
    write_results(path, {"schema": "dsfleet-results", "version": RESULTS_VERSION, "results": rows})
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["checks"] == {"BLD-001": {"title": "title BLD-001", "severity": "high", "source": "field practice: x",
                                         "remediation": "fix BLD-001"},
                             "PRT-002": {"title": "title PRT-002", "severity": "high", "source": "field practice: x",
                                         "remediation": "fix PRT-002"}}
    assert not any({"title", "severity", "source", "guidance", "remediation"} & set(r) for r in raw["results"])
    assert path.read_text(encoding="utf-8").count("fix BLD-001") == 1
    assert load_results(path)[0] == rows  # every reader sees the results as the run held them


def test_results_whose_check_text_differs_keep_their_own(tmp_path: Path) -> None:
    # A merge of shards run by another version: the same check with two texts; neither is lost on the way.
    other = dict(_run_result("BLD-001", "b", "fail"), title="タイトル", guidance="修正", remediation="修正")
    rows = [_run_result("BLD-001", "a", "fail"), other]
    path = tmp_path / "results.json"
    write_results(path, {"schema": "dsfleet-results", "version": RESULTS_VERSION, "results": rows})
    assert load_results(path)[0] == rows


def test_a_version_2_baseline_still_loads_and_a_newer_one_fails_in_one_line(tmp_path: Path) -> None:
    # Last week's scheduled run wrote version 2: every result with its catalog text. It keeps gating.
    rows = [_run_result("BLD-001", "a", "fail", remedy="upgrade a")]
    (tmp_path / "results.json").write_text(json.dumps({"schema": "dsfleet-results", "version": 2, "results": rows}))
    assert load_results(tmp_path)[0] == rows
    (tmp_path / "results.json").write_text(json.dumps({"schema": "dsfleet-results", "version": RESULTS_VERSION + 1,
                                                       "results": rows}))
    with pytest.raises(InputError, match=rf"results.json: version: expected a results version from 1 to "
                                         rf"{RESULTS_VERSION} \(this dsfleet reads up to {RESULTS_VERSION}"):
        load_doc(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": "dsfleet-results", "version": RESULTS_VERSION,
                                                       "checks": {"BLD-001": {"title": 1}}, "results": []}))
    with pytest.raises(InputError, match="checks.BLD-001: expected an object with text title, severity"):
        load_doc(tmp_path)


def test_manifest_round_trip_and_tampering(tmp_path: Path) -> None:
    for name in ("snapshot.json", "results.json", "summary.md"):
        (tmp_path / name).write_text(name)
    manifest.write(tmp_path)
    assert manifest.verify(tmp_path) == []
    (tmp_path / "results.json").write_text("edited")
    (tmp_path / "summary.md").unlink()
    assert manifest.verify(tmp_path) == ["results.json: changed since the run (sha256 differs)", "summary.md: missing"]
    assert manifest.verify(tmp_path / "elsewhere")[0].endswith("expected a manifest written by dsfleet")
