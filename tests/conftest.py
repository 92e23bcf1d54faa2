"""Self-test helpers: start lab scenarios and run the fleet suite against them as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from dsfleet.baseline import load_results
from lab.run import Lab

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SuiteRun:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def results(self) -> list[dict[str, Any]]:
        return load_results(self.run_dir)[0]  # each result with its check's catalog text put back

    def findings(self) -> set[tuple[str, str]]:
        """(check id, object) of every failing or erroring result."""
        return {(r["check"], r["object"]) for r in self.results if r["outcome"] in ("fail", "error")}

    def outcomes(self, outcome: str) -> set[tuple[str, str]]:
        return {(r["check"], r["object"]) for r in self.results if r["outcome"] == outcome}


def run_suite(run_dir: Path, *args: str, env: dict[str, str] | None = None) -> SuiteRun:
    """Run ``pytest tests_fleet`` in a subprocess, exactly as the README does."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests_fleet", "-q", "-p", "no:cacheprovider",
                           "--run-dir", str(run_dir), *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=600)
    return SuiteRun(proc.returncode, proc.stdout, proc.stderr, run_dir)


@pytest.fixture
def start_lab(tmp_path: Path) -> Iterator[Any]:
    """Start a scenario in a temporary folder; every lab started is stopped at the end of the test."""
    labs: list[Lab] = []

    def start(scenario: str, **kwargs: Any) -> Lab:
        lab = Lab(scenario, tmp_path / f"lab-{len(labs)}", **kwargs)
        labs.append(lab)
        return lab.start()

    yield start
    for lab in labs:
        lab.stop()
