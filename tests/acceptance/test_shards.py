"""A sharded lab run merges into the run folder of the unsharded run: same results, verdict and exit code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..conftest import ROOT, run_suite

KEYS = ("check", "object", "outcome", "observed")
# What differs between two runs of the same fleet: the events window's end and the probe's latency.
CLOCK = re.compile(r"\d{4}-\d\d-\d\dT[\d:.+]+|in \d+\.\d+ s")


def _dsfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dsfleet", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _rows(results: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return sorted(tuple(CLOCK.sub("<clock>", r[k]) for k in KEYS) for r in results)


def test_two_hash_shards_merge_into_the_unsharded_run(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    inventory = ("--inventory", str(lab.inventory_path))
    whole = run_suite(tmp_path / "whole", *inventory, env=lab.env)
    shards, contacted = [], []
    log = lab.dir / "commands-ssh.log"  # "<address> <user> <command>" per command the SSH stand-in was sent
    for k in (1, 2):
        log.write_text("")
        shards.append(run_suite(tmp_path / f"shard-{k}", *inventory, "--shard", f"hash:{k}/2", env=lab.env))
        contacted.append({line.split()[0] for line in log.read_text().splitlines()})
    # A shard contacts only the hosts whose rows it judges (guests, DSVAs, ESXi, relays, Windows agents).
    assert contacted[0] and contacted[1] and not contacted[0] & contacted[1], contacted[0] & contacted[1]
    for run in shards:
        assert run.results, run.stdout[-2000:] + run.stderr[-2000:]
        assert json.loads((run.run_dir / "results.json").read_text())["shard"].startswith("hash:")
    # Each shard judges part of the fleet: neither is the whole run.
    assert all(len(run.results) < len(whole.results) for run in shards)

    merged = _dsfleet("merge", str(tmp_path / "merged"), *(str(run.run_dir) for run in shards))
    doc = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert _rows(doc["results"]) == _rows(whole.results)
    whole_doc = json.loads((whole.run_dir / "results.json").read_text())
    assert doc["verdict"] == whole_doc["verdict"]
    assert merged.returncode == whole.returncode == 6, merged.stderr  # engine-offline has an unreachable guest
    assert [s["shard"] for s in doc["shards"]] == ["hash:1/2", "hash:2/2"]

    verified = _dsfleet("verify", str(tmp_path / "merged"))
    assert verified.returncode == 0, verified.stderr
    # The shards' own artifacts are covered too: an edited shard report fails verification of the merge.
    (tmp_path / "merged" / "shards" / "hash-2-of-2" / "summary.md").write_text("edited")
    assert _dsfleet("verify", str(tmp_path / "merged")).returncode == 1

    # A shard set with a shard missing is bad input: one line, exit 4, nothing written.
    missing = _dsfleet("merge", str(tmp_path / "partial"), str(shards[0].run_dir))
    assert missing.returncode == 4 and "missing: hash:2/2" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "partial").exists()


def test_ci_examples_sharded_variant_runs_and_merges(start_lab: Any, tmp_path: Path) -> None:
    """The examples' matrix jobs and merge job, run as the platforms run them (artifacts moved between them)."""
    import shutil

    import yaml

    from .test_ci_examples import EXAMPLES, _bash, _workspace

    lab = start_lab("engine-offline")
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())["jobs"]
    shard_step = next(s for s in workflow["shard"]["steps"] if str(s.get("name", "")).startswith("Run one shard"))
    merge_steps = {s.get("name"): s for s in workflow["merge"]["steps"]}
    merger = _workspace(tmp_path / "merge-job", lab)
    for index, spec in enumerate(workflow["shard"]["strategy"]["matrix"]["shard"]):
        job = _workspace(tmp_path / f"shard-job-{index}", lab)  # each matrix job has its own runner
        done = _bash(shard_step["run"], job, dict(lab.env, SHARD=spec))
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        shutil.copytree(job / "reports" / "shard", merger / "shards" / f"dsfleet-shard-{index}")  # the artifact
    output = tmp_path / "github-output"
    output.write_text("")
    for name in ("Merge the shards", "Verify the evidence (the merged folder and every shard's)"):
        done = _bash(merge_steps[name]["run"], merger, dict(lab.env, GITHUB_OUTPUT=str(output)))
        assert done.returncode == 0, (name, done.stdout[-1500:], done.stderr[-1500:])
    assert output.read_text().strip() == "rc=6"  # engine-offline: an unreachable guest, as the unsharded run

    gitlab = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    site = _workspace(tmp_path / "gitlab", lab)
    run_item = next(s for s in gitlab["dsfleet-shard"]["script"] if "dsfleet run" in s)
    for index, spec in enumerate(gitlab["dsfleet-shard"]["parallel"]["matrix"][0]["DSFLEET_SHARD"], 1):
        done = _bash(run_item, site, dict(lab.env, DSFLEET_SHARD=spec, CI_NODE_INDEX=str(index)))
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    merge_item = next(s for s in gitlab["dsfleet-merge"]["script"] if "dsfleet merge" in s)
    merged = _bash(merge_item, site, lab.env)
    assert merged.returncode == 6 and "every artifact matches manifest.sha256" in merged.stdout, merged.stderr
