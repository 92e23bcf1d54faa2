"""What a large run costs besides its checks: pytest-html optional, one line per finding, a cheap exit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..conftest import run_suite


def test_a_failing_run_without_pytest_html_prints_one_line_per_finding(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), "-p", "no:html", env=lab.env)
    assert "INTERNALERROR" not in run.stdout + run.stderr
    assert run.returncode == 6, run.stdout[-2000:]  # evidence incomplete (the unreachable guest)
    assert not (run.run_dir / "report.html").exists() and (run.run_dir / "summary.html").exists()
    assert "report.html" not in next(line for line in run.stdout.splitlines() if line.startswith("run folder:"))
    doc = json.loads((run.run_dir / "results.json").read_text())
    failures = [r for r in doc["results"] if r["outcome"] == "fail"]
    assert failures and doc["counts"]["fail"] == len(failures)
    # No traceback anywhere: each finding is its one line (the --tb=line summary), the error its one line too.
    assert "Traceback" not in run.stdout and "def test_" not in run.stdout
    section = run.stdout.split("= FAILURES =", 1)[1].split("- dsfleet -", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("[")]
    assert len(lines) == len(failures) == len(set(lines))
    assert "[DRV-001] WIN-01-01@esx-01: vsepflt: STOPPED | required: " in section
    errors = run.stdout.split("= ERRORS =", 1)[1].split("= FAILURES =", 1)[0]
    assert "ERROR at setup of test_guest_drivers_running[DRV-001:WIN-01-05@esx-01]" in errors
    assert "[DRV-001] WIN-01-05@esx-01: no evidence: unreachable" in errors


def test_a_chosen_traceback_style_is_kept(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), "--tb=short", env=lab.env)
    # pytest's own section per failure, with the finding as its body (still no traceback).
    assert "_ test_guest_drivers_running[DRV-001:WIN-01-01@esx-01] _" in run.stdout
    assert "Traceback" not in run.stdout
