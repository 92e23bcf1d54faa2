"""Before and after a change: the baseline diff, --fail-on new, waivers, Japanese hints, the manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dsfleet.baseline import load_doc

from ..conftest import ROOT, run_suite

HEALTHY = ROOT / "lab" / "scenarios" / "healthy.yml"


def scenario(tmp_path: Path, name: str, vms: dict[str, Any]) -> str:
    spec = yaml.safe_load(HEALTHY.read_text())
    spec.update(name=name, faults={"vms": vms})
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_change_is_classified_and_gated_on_regressions(start_lab: Any, tmp_path: Path) -> None:
    before_lab = start_lab(scenario(tmp_path, "before", {"WIN-01-01": {"tools_running": "guestToolsNotRunning"}}))
    before = run_suite(tmp_path / "before", "--inventory", str(before_lab.inventory_path), env=before_lab.env)
    assert before.findings() == {("PRT-004", "WIN-01-01@esx-01")}
    before_lab.stop()
    # The change fixed WIN-01-01's Tools but stopped vsepflt on WIN-02-01.
    after_lab = start_lab(scenario(tmp_path, "after", {"WIN-02-01": {"vsepflt": "stopped"}}))
    after = run_suite(tmp_path / "after", "--inventory", str(after_lab.inventory_path), "--baseline",
                      str(before.run_dir), "--fail-on", "new", env=after_lab.env)
    assert after.returncode == 1  # a regression fails the gate
    diff = yaml.safe_load((after.run_dir / "results.json").read_text())["baseline"]
    assert [(d["check"], d["object"]) for d in diff["new_failures"]] == [("DRV-001", "WIN-02-01@esx-02")]
    assert [(d["check"], d["object"]) for d in diff["fixed"]] == [("PRT-004", "WIN-01-01@esx-01")]
    summary = (after.run_dir / "summary.md").read_text()
    assert summary.index("Against the baseline") < summary.index("## Findings")
    assert "Against the baseline" in (after.run_dir / "report.html").read_text()
    # Nothing new since the last run: the same failure does not fail the gate, but still shows.
    again = run_suite(tmp_path / "again", "--inventory", str(after_lab.inventory_path), "--baseline",
                      str(after.run_dir), "--fail-on", "new", env=after_lab.env)
    assert again.returncode == 0
    assert yaml.safe_load((again.run_dir / "results.json").read_text())["baseline"]["counts"]["still failing"] == 1
    # The default gate still fails on any failure.
    assert run_suite(tmp_path / "any", "--snapshot", str(again.run_dir / "snapshot.json")).returncode == 1


def test_waivers_are_reported_never_passed(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    waivers = tmp_path / "waivers.yml"
    waivers.write_text(yaml.safe_dump({"waivers": [
        {"check": "PRT-001", "object": "WIN-03-*@esx-03", "justification": "esx-03 is being decommissioned",
         "approver": "j.tanaka", "ticket": "CHG-2041", "expires": "2099-01-31"},
        {"check": "MUX-001", "object": "esx-04", "justification": "expired exception", "approver": "k.sato",
         "ticket": "CHG-1900", "expires": "2020-01-01"},
        {"check": "DRV-001", "object": "WIN-99-*", "justification": "matches nothing", "approver": "k.sato",
         "ticket": "CHG-1901", "expires": "2099-01-01"}]}))
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), "--waivers", str(waivers),
                    "--lang", "ja", env=lab.env)
    doc, _ = load_doc(run.run_dir)  # each result with its check's catalog text (written once per check)
    waived = [r for r in doc["results"] if r["outcome"] == "waived"]
    assert {r["object"] for r in waived} == {f"WIN-03-0{i}@esx-03" for i in range(1, 6)}
    assert all(r["waiver"]["approver"] == "j.tanaka" and r["waiver"]["status"] == "applied" for r in waived)
    assert {w["ticket"]: w["status"] for w in doc["waivers"]} == {"CHG-2041": "applied", "CHG-1900": "expired",
                                                                  "CHG-1901": "unused"}
    mux = [r for r in doc["results"] if r["check"] == "MUX-001" and r["object"] == "esx-04"][0]
    assert mux["outcome"] == "fail" and "expired" in mux["observed"]
    assert "xfailed" in run.stdout and "CHG-1900): expired" in run.stdout and "CHG-1901): unused" in run.stdout
    # Japanese hints, and every artifact covered by the manifest.
    assert "ESXi ホストで" in mux["remediation"] and doc["lang"] == "ja"
    assert "切り分けます" in (run.run_dir / "summary.html").read_text()
    verify = subprocess.run([sys.executable, "-m", "dsfleet", "verify", str(run.run_dir)], cwd=ROOT,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    manifest = (run.run_dir / "manifest.sha256").read_text()
    assert all(name in manifest for name in ("snapshot.json", "results.json", "report.html", "junit.xml",
                                             "summary.html", "summary.md"))


def test_bad_waivers_and_options_stop_the_run(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    bad = tmp_path / "w.yml"
    bad.write_text(yaml.safe_dump({"waivers": [{"check": "PRT-003", "object": "x", "justification": "j",
                                                "approver": "a", "ticket": "t"}]}))
    run = run_suite(tmp_path / "r1", "--inventory", str(lab.inventory_path), "--waivers", str(bad), env=lab.env)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 4 and lines == [f"ERROR: {bad}: waivers[0].expires: expected a value (required)"]
    run = run_suite(tmp_path / "r2", "--fail-on", "new", "--inventory", "inventories/example.yml")
    assert run.returncode == 4 and "ERROR: --fail-on new: expected --baseline RUN" in run.stdout + run.stderr
