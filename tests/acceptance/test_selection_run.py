"""Selecting checks as pytest users do (-k, -m, --collect-only), progress while gathering, refusing -n, and
the last lines of an incomplete run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ..conftest import ROOT, run_suite


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_dsm_only_selection_contacts_no_host(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    ssh_log, nsx_log = lab.dir / "commands-ssh.log", lab.dir / "requests-nsx.log"
    before = len(_lines(ssh_log)), len(_lines(nsx_log))
    run = run_suite(tmp_path / "k", "--inventory", str(lab.inventory_path), "-k", "BLD-001 or BLD-002", env=lab.env)
    assert {r["check"] for r in run.results} == {"BLD-001", "BLD-002"}
    assert (len(_lines(ssh_log)), len(_lines(nsx_log))) == before  # no host, no NSX Manager
    snap = json.loads((run.run_dir / "snapshot.json").read_text())
    assert snap["remote"]["probes"] == [] and snap["events"]["error"] == "not read: no selected check reads it"
    assert "dsfleet: DSM " in run.stdout and "computers in" in run.stdout  # progress, one line per source
    assert "dsfleet: whole run" in run.stdout


def test_severity_markers_select(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    run = run_suite(tmp_path / "m", "--inventory", str(lab.inventory_path), "-m", "high or medium", env=lab.env)
    severities = {r["severity"] for r in run.results}
    assert severities and severities <= {"high", "medium"}
    assert "PRT-003" in {r["check"] for r in run.results}  # high


def test_collect_only_contacts_nothing_and_writes_nothing(tmp_path: Path) -> None:
    inv = tmp_path / "site.yml"  # points at addresses where nothing listens: collecting must not notice
    inv.write_text(yaml.safe_dump({"name": "site", "nsx": "nsx-t",
                                   "dsm": {"url": "https://127.0.0.1:9", "api_key_env": "NOPE"},
                                   "vcenters": [{"name": "vc", "url": "https://127.0.0.1:9/sdk", "user": "u",
                                                 "password_env": "NOPE"}]}))
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests_fleet", "--collect-only", "-q", "-p",
                           "no:cacheprovider", "--inventory", str(inv), "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "tests_fleet/test_builds.py::test_dsva_agent_build_fixed[BLD-001:DSVA-VMs]" in proc.stdout
    assert not (tmp_path / "run").exists()


def test_xdist_is_refused_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests_fleet", "-n", "2", "-p", "no:cacheprovider",
                           "--snapshot", str(tmp_path / "none.json")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 4 and lines[0].startswith("ERROR: -n (pytest-xdist): expected no worker processes")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_an_unreachable_dsm_ends_in_exit_6_naming_what_was_not_read(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["dsm"].update(url="https://127.0.20.9:9", timeout_s=2, retries=0)  # a closed port
    (lab.dir / "no-dsm.yml").write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(lab.dir / "no-dsm.yml"), env=lab.env)
    assert run.returncode == 6
    tail = run.stdout.strip().splitlines()[-6:]
    assert any(line.startswith("not read: DSM https://127.0.20.9:9: ") and "connection refused" in line
               for line in run.stdout.splitlines()), run.stdout[-2000:]
    assert any("exit 6: evidence incomplete" in line for line in tail) or "evidence incomplete" in run.stdout


def test_a_stopped_lab_is_named_as_such(tmp_path: Path) -> None:
    lab_dir = tmp_path / "reports" / "lab"
    lab_dir.mkdir(parents=True)
    (lab_dir / "inventory.yml").write_text("name: stale\n")  # left behind by `python -m lab down`
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "dsfleet.checks", "-q", "-p",
                           "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 4 and len(lines) == 1 and "but the lab is stopped" in lines[0], lines
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["lab"]  # no empty run folder left behind
