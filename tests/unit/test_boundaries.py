"""Bad input at every boundary is one line naming file, field and expectation; evidence integrity; exit codes."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet import inventory, manifest, snapshot, waivers
from dsfleet.baseline import RESULTS_VERSION, Diff, load_results
from dsfleet.errors import InputError
from dsfleet.gather import _background, _by
from dsfleet.fixtures.report import EVIDENCE_INCOMPLETE, exit_code
from dsfleet.fixtures.session import _new_run_dir

from .test_inventory import minimal
from .test_snapshot_join import sample


def test_an_impossible_date_anywhere_in_the_inventory_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(minimal()) + "name_note: 2027-13-45\n")
    with pytest.raises(InputError, match=r"name_note: expected no such key"):
        inventory.load(path)  # parsed as text, so validation (not the YAML parser) names the key


def test_an_impossible_waiver_expiry_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "waivers.yml"
    path.write_text("waivers:\n  - {check: PRT-001, object: x, justification: j, approver: a, ticket: T-1,\n"
                    "     expires: 2027-13-45}\n")
    with pytest.raises(InputError) as info:
        waivers.load(path, {"PRT-001"})
    assert str(info.value) == (f"{path}: waivers[0].expires: expected a UTC date (YYYY-MM-DD) or date-time, "
                               f"got '2027-13-45'")


def test_a_valid_waiver_date_still_reads_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "waivers.yml"
    path.write_text("waivers:\n  - {check: PRT-001, object: x, justification: j, approver: a, ticket: T-1,\n"
                    "     expires: 2027-01-31}\n")
    (w,) = waivers.load(path, {"PRT-001"})
    assert w.expires == dt.datetime(2027, 1, 31, tzinfo=dt.timezone.utc)


def test_deadline_must_be_bounded(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(dict(minimal(), deadline_s=0)))
    with pytest.raises(InputError, match="deadline_s: expected a number of seconds from 10 to 86400"):
        inventory.load(path)
    path.write_text(yaml.safe_dump(minimal()))
    assert inventory.load(path).deadline_s == inventory.DEFAULT_DEADLINE_S


def _results(tmp_path: Path, **doc: Any) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": "dsfleet-results", "version": RESULTS_VERSION,
                                "results": [{"check": "PRT-001", "object": "a", "outcome": "fail"}], **doc}))
    return path


@pytest.mark.parametrize("doc,field", [
    ({"version": RESULTS_VERSION + 1}, "version"),
    ({"version": "2"}, "version"),
    ({"results": [{"check": "PRT-001", "object": 7, "outcome": "fail"}]}, "results[0].object"),
    ({"results": [{"check": "PRT-001", "object": "a", "outcome": "broken"}]}, "results[0].outcome"),
    ({"results": {"check": "PRT-001"}}, "results"),
])
def test_baseline_of_another_version_or_hand_edited_types(tmp_path: Path, doc: dict[str, Any], field: str) -> None:
    path = _results(tmp_path, **doc)
    with pytest.raises(InputError, match=rf"^{path}: {field.replace('[', '.').replace(']', '.')}: expected"):
        load_results(path)
    _results(tmp_path)
    assert load_results(tmp_path)[0][0]["object"] == "a"


def test_snapshot_references_are_checked(tmp_path: Path) -> None:
    data = json.loads(sample().to_json())
    data["relay_groups"] = [{"id": 1, "name": "g", "relay_ids": [999], "source": "inventory", "unresolved": []}]
    (tmp_path / "s.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"relay_groups\[0\]\.relay_ids\[0\]: expected the id of a computer"):
        snapshot.load(tmp_path / "s.json")


def test_snapshot_integrity_against_the_manifest_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    sha = sample().write(path)
    assert manifest.snapshot_integrity(path, sha).startswith("none: no manifest.sha256")
    manifest.write(tmp_path)
    assert manifest.snapshot_integrity(path, sha).startswith("match")
    path.write_text(path.read_text().replace('"gather_seconds":1.5', '"gather_seconds":2.5'))
    _, edited = snapshot.load(path)
    assert manifest.snapshot_integrity(path, edited).startswith("mismatch: snapshot.json was changed after the run")


def test_run_folders_started_in_the_same_second_differ(tmp_path: Path) -> None:
    now = dt.datetime(2026, 11, 22, 5, 0, 0, tzinfo=dt.timezone.utc)
    folders = {_new_run_dir(now, tmp_path) for _ in range(3)}
    assert sorted(p.name for p in folders) == ["20261122T050000Z", "20261122T050000Z-1", "20261122T050000Z-2"]


@pytest.mark.parametrize("pytest_status,counts,diff,fail_on,expected", [
    (0, {"pass": 3}, None, "any", 0),
    (1, {"pass": 3, "fail": 1}, None, "any", 1),
    (1, {"fail": 1, "error": 1}, None, "any", EVIDENCE_INCOMPLETE),  # incomplete evidence wins over findings
    (1, {"error": 1}, None, "any", EVIDENCE_INCOMPLETE),
    (1, {"fail": 1}, Diff(baseline="b"), "new", 0),  # known failures only
    (1, {"fail": 1}, Diff(baseline="b", new_failures=[{"outcome": "fail"}]), "new", 1),
    (1, {"fail": 1}, Diff(baseline="b", new_failures=[{"outcome": "waived"}]), "new", 0),  # newly waived
    (4, {}, None, "any", 4),
    (2, {"fail": 1}, None, "any", 2),  # interrupted stays interrupted
])
def test_exit_codes(pytest_status: int, counts: dict[str, int], diff: Diff | None, fail_on: str,
                    expected: int) -> None:
    assert exit_code(pytest_status, counts, diff, fail_on) == expected


def test_a_source_still_running_at_the_deadline_is_recorded_late_and_does_not_block() -> None:
    release = threading.Event()
    stuck: Future[str] = _background("stuck", lambda: "read" if release.wait(30) else "never")
    quick: Future[str] = _background("quick", lambda: "read")
    started = time.monotonic()
    deadline = started + 0.3
    assert _by(deadline, quick, lambda: "late") == "read"
    assert _by(deadline, stuck, lambda: "late") == "late"
    assert time.monotonic() - started < 1.0
    release.set()
