"""Each lab scenario, run through the suite as a user runs it: the exact set of findings per scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.run import ENV_DSM_KEY

from ..conftest import run_suite

DSVA = "Trend Micro Deep Security ({0})@{0}"

EXPECTED: dict[str, set[tuple[str, str]]] = {
    "healthy": set(),
    "cert-expiry-2025": {
        ("BLD-001", DSVA.format("esx-01")), ("BLD-001", DSVA.format("esx-02")), ("BLD-001", DSVA.format("esx-03")),
        ("BLD-002", "relay-01"), ("BLD-002", "relay-02"),
        ("BLD-003", "LNX-01-01@esx-01"), ("BLD-003", "LNX-02-01@esx-02"),
        ("BLD-003", "app-win-01"), ("BLD-003", "app-win-02"),
        ("ORD-001", "erp-sol-01"),  # fixed, but its relays are not
    },
    "relay-order": {
        ("BLD-002", "relay-01"),
        ("ORD-001", DSVA.format("esx-01")), ("ORD-001", DSVA.format("esx-02")),
        ("ORD-001", "LNX-01-01@esx-01"), ("ORD-001", "LNX-02-01@esx-02"),
        ("ORD-002", "relay-01"), ("ORD-002", "relay-02"),  # Manager 12.0 is older than 20.0 relays
    },
    "engine-offline": {
        ("PRT-002", "WIN-01-01@esx-01"), ("PRT-002", "WIN-01-03@esx-01"),  # case A
        ("PRT-002", "WIN-02-01@esx-02"), ("PRT-002", "WIN-02-02@esx-02"), ("PRT-002", "WIN-02-03@esx-02"),  # case B
        ("PRT-003", "WIN-01-02@esx-01"),
        ("PRT-004", "WIN-01-03@esx-01"),
        ("PRT-001", "WIN-03-01@esx-03"), ("PRT-001", "WIN-03-02@esx-03"), ("PRT-001", "WIN-03-03@esx-03"),
        ("PRT-005", "esx-03"),
    },
}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_findings(scenario: str, start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab(scenario)
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    assert run.findings() == EXPECTED[scenario], run.stdout[-3000:]
    assert run.returncode == (1 if EXPECTED[scenario] else 0), run.stdout[-2000:]
    for name in ("report.html", "junit.xml", "snapshot.json", "results.json"):
        assert (run.run_dir / name).is_file()
    html = (run.run_dir / "report.html").read_text()
    for finding in run.results:
        if finding["outcome"] == "fail":
            assert finding["remediation"] and finding["source"] and finding["observed"] and finding["required"]
    # Secrets never reach any artifact.
    for name in ("report.html", "junit.xml", "snapshot.json", "results.json"):
        text = (run.run_dir / name).read_text()
        assert all(secret not in text for secret in lab.env.values()), name
    assert "TLS verification" in html and "on for every endpoint" in html
    # Every check ran over a non-empty scope (or was explicitly judged not applicable).
    assert not any(r["object"] == "(empty scope)" for r in run.results)


def test_offline_rerun_from_snapshot_gives_the_same_results(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    live = run_suite(tmp_path / "live", "--inventory", str(lab.inventory_path), env=lab.env)
    lab.stop()  # the fleet is gone: the snapshot is all the evidence there is
    offline = run_suite(tmp_path / "offline", "--snapshot", str(live.run_dir / "snapshot.json"))
    key = lambda r: (r["check"], r["object"], r["outcome"], r["observed"])  # noqa: E731
    assert sorted(map(key, offline.results)) == sorted(map(key, live.results))
    assert offline.returncode == 1
    assert "offline re-run of a saved snapshot" in (offline.run_dir / "report.html").read_text()


def test_wrong_api_key_errors_every_dsm_check(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=dict(lab.env, **{ENV_DSM_KEY: "bad"}))
    assert run.returncode == 1
    errors = [r for r in run.results if r["outcome"] == "error"]
    assert {r["check"] for r in errors} >= {"BLD-001", "BLD-002", "BLD-003", "ORD-001", "PRT-001", "PRT-002"}
    assert all("authentication failed" in r["observed"] for r in errors)
    assert not any(r["outcome"] == "pass" and r["check"] != "PRT-005" for r in run.results)


def test_untrusted_certificate_fails_closed(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    inv = yaml.safe_load(lab.inventory_path.read_text())
    del inv["dsm"]["tls"]  # trust the system store only: the lab CA is not in it
    path = lab.dir / "no-ca.yml"
    path.write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(path), env=lab.env)
    assert run.returncode == 1
    assert any("TLS verification of" in r["observed"] for r in run.results if r["outcome"] == "error")


def test_tls_verification_off_shows_in_the_report(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["dsm"]["tls"] = {"verify": False}
    path = lab.dir / "insecure.yml"
    path.write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(path), env=lab.env)
    assert run.returncode == 0
    assert f"OFF for DSM {inv['dsm']['url']}" in (run.run_dir / "report.html").read_text()
    assert "TLS verification OFF for: DSM" in run.stdout


@pytest.mark.parametrize("args,message", [
    (["--inventory", "inventories/nope.yml"], "inventories/nope.yml: (file): expected a readable inventory file"),
    (["--snapshot", "pyproject.toml"], "pyproject.toml: (file): expected JSON written by dsfleet"),
    (["--inventory", "inventories/example.yml", "--snapshot", "x.json"], "--inventory and --snapshot: expected one of them, not both"),
])
def test_bad_input_is_one_line_and_exit_4(tmp_path: Path, args: list[str], message: str) -> None:
    run = run_suite(tmp_path / "run", *args)
    assert run.returncode == 4
    output = run.stdout + run.stderr
    assert message in output and "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {message}")


def test_missing_secret_is_an_input_error(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path),
                    env={k: "" for k in lab.env})
    assert run.returncode == 4
    assert f"dsm.api_key_env: expected environment variable {ENV_DSM_KEY} to be set" in run.stdout + run.stderr


def test_cloud_one_auth_style(start_lab: Any, tmp_path: Path) -> None:
    """Cloud One / Vision One: `Authorization: ApiKey`; the Manager is Trend Micro's, so ORD-002 is not applicable."""
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "lab/scenarios/healthy.yml").read_text())
    spec.update(name="healthy-cloud-one", dsm_auth="apikey")
    path = tmp_path / "cloud.yml"
    path.write_text(yaml.safe_dump(spec))
    lab = start_lab(str(path))
    assert yaml.safe_load(lab.inventory_path.read_text())["dsm"]["auth"] == "apikey"
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    assert run.returncode == 0 and run.findings() == set(), run.stdout[-2000:]
    skipped = [r for r in run.results if r["check"] == "ORD-002"]
    assert skipped and all(r["outcome"] == "skip" and "Cloud One" in r["observed"] for r in skipped)
