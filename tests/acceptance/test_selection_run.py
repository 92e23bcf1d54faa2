"""Selecting checks as pytest users do (-k, -m, --collect-only), progress while gathering, refusing -n, and
the last lines of an incomplete run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dsfleet.baseline import load_results

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


def test_k_selects_objects_as_if_each_were_an_item(start_lab: Any, tmp_path: Path) -> None:
    # A check is one pytest item with a result row per object: -k still picks objects, and "not" works per object.
    lab = start_lab("engine-offline")
    run = run_suite(tmp_path / "one", "--inventory", str(lab.inventory_path), "-k", "WIN-01-01", env=lab.env)
    objects = {r["object"] for r in run.results}
    assert objects == {"WIN-01-01@esx-01"} and {"PRT-002", "DRV-001"} <= {r["check"] for r in run.results}
    assert " deselected" in run.stdout
    run = run_suite(tmp_path / "not", "--inventory", str(lab.inventory_path), "-k", "PRT-002 and not WIN-01-0",
                    env=lab.env)
    objects = {r["object"] for r in run.results}
    assert {r["check"] for r in run.results} == {"PRT-002"} and "WIN-02-01@esx-02" in objects
    assert not any(o.startswith("WIN-01-0") for o in objects)
    # --deselect takes a result's node id.
    row = "tests_fleet/test_protection.py::test_anti_malware_engine_online[PRT-002:WIN-02-01@esx-02]"
    run = run_suite(tmp_path / "d", "--inventory", str(lab.inventory_path), "-k", "PRT-002", "--deselect", row,
                    env=lab.env)
    objects = {r["object"] for r in run.results}
    assert "WIN-02-01@esx-02" not in objects and "WIN-02-02@esx-02" in objects
    # -x stops at the first finding, whichever object it is.
    run = run_suite(tmp_path / "x", "--inventory", str(lab.inventory_path), "-x", "-k", "PRT-002", env=lab.env)
    assert [r["outcome"] for r in run.results].count("fail") == 1


def test_lf_reruns_the_objects_that_failed(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")

    def run(folder: str, *extra: str) -> list[dict[str, Any]]:
        # The repository's addopts turn pytest's cache off for the self-tests; a site's run has it on.
        proc = subprocess.run([sys.executable, "-m", "pytest", "tests_fleet", "-q", "-o", "addopts=", "-o",
                               f"cache_dir={tmp_path / 'cache'}", "--inventory", str(lab.inventory_path), "-k",
                               "PRT-00", "--run-dir", str(tmp_path / folder), *extra], cwd=ROOT,
                              capture_output=True, text=True, env=dict(os.environ, **lab.env), timeout=600)
        assert proc.returncode in (1, 6), proc.stdout[-2000:] + proc.stderr[-2000:]
        return load_results(tmp_path / folder)[0]

    first = run("first")
    failed = {(r["check"], r["object"]) for r in first if r["outcome"] == "fail"}
    again = run("again", "--lf")
    assert failed and {(r["check"], r["object"]) for r in again} == failed < {(r["check"], r["object"]) for r in first}


def test_a_results_node_id_from_a_failure_reruns_that_result(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    ids = ["tests_fleet/test_hosts.py::test_guest_drivers_running[DRV-001:WIN-01-01@esx-01]",
           str(ROOT / "tests_fleet/test_protection.py") + "::test_anti_malware_engine_online[PRT-002:WIN-02-01@esx-02]"]
    proc = subprocess.run([sys.executable, "-m", "pytest", *ids, "-q", "-p", "no:cacheprovider", "--inventory",
                           str(lab.inventory_path), "--run-dir", str(tmp_path / "run")], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, **lab.env), timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = load_results(tmp_path / "run")[0]
    assert {(r["check"], r["object"]) for r in results} == {("DRV-001", "WIN-01-01@esx-01"),
                                                            ("PRT-002", "WIN-02-01@esx-02")}
