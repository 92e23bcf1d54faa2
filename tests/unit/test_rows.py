"""The row runner's contract with a check: a verdict per object or an error, never a silent pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dsfleet.baseline import load_results

from .test_snapshot_join import sample

CHECKS = '''
import pytest
from dsfleet.pytest_plugin import expect


@pytest.mark.check("PRT-005")
def test_forgets_its_verdict(esx_host):
    pass  # no expect(): a defect of the check


@pytest.mark.check("MUX-001")
def test_judges(esx_host, fleet):
    expect(fleet is not None, observed="judged", required="a verdict")
'''


def _run(folder: Path, source: str) -> subprocess.CompletedProcess[str]:
    (folder / "test_checks.py").write_text(source)
    sample().write(folder / "snapshot.json")
    return subprocess.run([sys.executable, "-m", "pytest", "test_checks.py", "-q", "-p", "no:cacheprovider",
                           "--snapshot", "snapshot.json", "--run-dir", "run"], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def test_a_check_that_returns_without_a_verdict_is_an_error_not_a_pass(tmp_path: Path) -> None:
    proc = _run(tmp_path, CHECKS)
    assert proc.returncode == 6, proc.stdout[-2000:] + proc.stderr[-2000:]  # evidence incomplete
    results = {r["check"]: r for r in load_results(tmp_path / "run")[0]}
    assert results["PRT-005"]["outcome"] == "error"
    assert "returned without judging this object" in results["PRT-005"]["observed"]
    assert results["MUX-001"]["outcome"] == "pass" and results["MUX-001"]["observed"] == "judged"


def test_an_argument_the_runner_cannot_supply_is_a_usage_error(tmp_path: Path) -> None:
    proc = _run(tmp_path, CHECKS.replace("def test_judges(esx_host, fleet):", "def test_judges(esx_host, tmp_path):"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("ERROR: ")]
    assert errors == ["ERROR: test_checks.py::test_judges[MUX-001:ESXi-hosts]: argument 'tmp_path': expected the "
                      "subject (esx_host), probe, fleet, policy or a plain function-scoped fixture of the check's "
                      "module (checks run per object in dsfleet's runner)"], out[-2000:]
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert "PytestAssertRewriteWarning" not in out  # the glue's modules are imported by pytest first
