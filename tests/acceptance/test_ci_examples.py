"""The scheduled-CI examples: valid for their platforms (published JSON schemas, shipped by check-jsonschema),
and their shell steps, run as the platform would run them, gate on change against the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import ROOT

EXAMPLES = ROOT / ".ci" / "examples"


@pytest.mark.parametrize("example,schema", [("github-actions.yml", "vendor.github-workflows"),
                                            ("gitlab-ci.yml", "vendor.gitlab-ci")])
def test_examples_match_the_platform_schema(example: str, schema: str) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", schema,
                           str(EXAMPLES / example)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _workspace(tmp_path: Path, lab: Any) -> Path:
    """A site repository as the examples expect it: inventory, waivers and an installed dsfleet in .dsfleet/."""
    (tmp_path / "inventories").mkdir(parents=True)
    (tmp_path / "inventories" / "site.yml").symlink_to(lab.inventory_path)  # its relative paths stay the lab's
    (tmp_path / "inventories" / "waivers.yml").write_text("waivers: []\n")
    bin_dir = tmp_path / ".dsfleet" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "dsfleet").write_text(f"#!/bin/sh\nexec {sys.executable} -m dsfleet \"$@\"\n")
    (bin_dir / "dsfleet").chmod(0o755)
    return tmp_path


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` with bash -eo pipefail; GitLab runs each script item in a shell with -e as well.
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, **env))


def test_github_steps_gate_on_new_failures_and_incomplete_evidence(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    site = _workspace(tmp_path / "site", lab)
    steps = {s.get("name"): s for s in yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())["jobs"]
             ["compliance"]["steps"]}
    summary = tmp_path / "step-summary.md"

    def scheduled_run() -> tuple[int, int]:
        output = tmp_path / "github-output"
        output.write_text("")
        env = dict(lab.env, GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary))
        for name in ("Run the checks", "Verify the evidence (fails the job if any artifact differs from its manifest)",
                     "Job summary"):
            done = _bash(steps[name]["run"], site, env)
            assert done.returncode == 0, (name, done.stdout[-1500:], done.stderr[-1500:])
        rc = dict(line.split("=", 1) for line in output.read_text().split())["rc"]
        gate = _bash(steps["Gate (new failures or incomplete evidence fail the job)"]["run"], site, dict(env, RC=rc))
        return int(rc), gate.returncode

    assert scheduled_run() == (0, 0)
    assert summary.read_text().strip()  # the run's summary.md, appended to the job page
    # The next day: the previous run is the baseline; a guest now answers garbage (evidence incomplete).
    (site / "reports" / "run").rename(site / "baseline")
    guest = next(e["address"] for e in lab.fleet.ssh_endpoints() if e["role"] == "windows")
    lab.set_faults({"ssh": {guest: "garbled"}})
    assert scheduled_run() == (6, 6)
    # An artifact edited after the run fails the verification step.
    (site / "reports" / "run" / "summary.md").write_text("all good")
    verify = _bash(steps["Verify the evidence (fails the job if any artifact differs from its manifest)"]["run"],
                   site, lab.env)
    assert verify.returncode == 1 and "summary.md: changed since the run" in verify.stderr


def test_gitlab_script_gates_and_verifies(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    site = _workspace(tmp_path / "site", lab)
    script = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())["dsfleet"]["script"]
    run_step = next(s for s in script if "dsfleet run" in s)
    first = _bash(run_step, site, lab.env)
    assert first.returncode == 0, first.stdout[-1500:] + first.stderr[-1500:]
    assert "every artifact matches manifest.sha256" in first.stdout
    (site / "reports" / "run").rename(site / "baseline")
    again = _bash(run_step, site, lab.env)  # same fleet, with the baseline: nothing new
    assert again.returncode == 0, again.stdout[-1500:]
    doc = json.loads((site / "reports" / "run" / "results.json").read_text())
    assert doc["baseline"]["baseline"].startswith("baseline") and doc["baseline"]["counts"]["new failures"] == 0
