"""Each lab scenario, run through the suite as a user runs it: the exact set of findings per scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsfleet.baseline import load_results
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
        ("DSV-002", DSVA.format("esx-01")),  # rpm says 20.0.0-8438, the DSM still 20.0.0-4416
        *{("EVT-001", name) for name in ("relay-01", "relay-02", "app-win-01", "app-win-02", "LNX-01-01@esx-01",
                                          "LNX-02-01@esx-02", *(DSVA.format(f"esx-0{i}") for i in (1, 2, 3)))},
    },
    "proxy-inspection": {("UPD-002", "update source from dsfleet"),
                         ("UPD-004", "update source from relay-01.lab.local")},
    "proxy-down": {("UPD-001", "update source from dsfleet"), ("UPD-002", "update source from dsfleet"),
                   ("UPD-004", "update source from relay-01.lab.local")},
    "tls-bypass": {("UPD-003", "update source from dsfleet")},
    "relay-order": {
        ("BLD-002", "relay-01"),
        ("ORD-001", DSVA.format("esx-01")), ("ORD-001", DSVA.format("esx-02")),
        ("ORD-001", "LNX-01-01@esx-01"), ("ORD-001", "LNX-02-01@esx-02"),
        ("ORD-002", "relay-01"), ("ORD-002", "relay-02"),  # Manager 12.0 is older than 20.0 relays
    },
    "engine-offline": {
        *{("PRT-002", f"WIN-01-0{i}@esx-01") for i in (1, 2, 3, 4)},  # case A
        *{("PRT-002", f"WIN-0{h}-0{i}@esx-0{h}") for h in (2, 4) for i in range(1, 6)},  # case B
        ("PRT-003", "WIN-01-02@esx-01"),
        ("PRT-004", "WIN-01-03@esx-01"),
        *{("PRT-001", f"WIN-03-0{i}@esx-03") for i in range(1, 6)},
        ("PRT-005", "esx-03"),
        ("DRV-001", "WIN-01-01@esx-01"), ("DRV-001", "WIN-01-04@esx-01"),  # vsepflt STOPPED / missing
        ("DRV-001", "WIN-01-05@esx-01"),  # unreachable guest: an error, never a pass
        ("DSV-001", DSVA.format("esx-02")),
        ("MUX-001", "esx-04"),
        ("ISO-001", "esx-01"), ("ISO-001", "esx-02"), ("ISO-001", "esx-04"),
        ("PRT-002", "WIN-01-06@esx-01"), ("NSX-001", "WIN-01-06@esx-01"),  # case A: in no NSX protection group
    },
    "update-failed": {
        ("UPD-005", "relay-02"),  # update status error and the virus pattern not the latest
        ("UPD-005", "LNX-02-01@esx-02"),  # update status error
        ("UPD-005", "app-win-01"),  # the virus pattern not the latest
        ("UPD-005", DSVA.format("esx-03")),  # last change 200 h ago
    },
    "offline-bundle": {
        ("BLD-002", "relay-01"), ("BLD-004", "relay-01"),  # the bundle relay is affected
        ("BLD-003", "plc-win-02"), ("BLD-004", "plc-win-02"),  # an agent behind the offline relay is affected
        ("ORD-001", "ops-win-01"),  # online, served by the affected relay-01: not in the chain
    },
}

EXPECTED["windows-readiness"] = {
    ("WIN-001", "app-win-01"),  # fixed build, ACS root missing: explains Anti-Malware Engine Offline
    ("WIN-001", "app-win-02"),  # 2012 R2, old hand-imported roots: the upgrade would fail
    ("BLD-003", "app-win-02"),  # still on an affected build
}


# Scenarios without Windows agents or relays: WIN-001 has nothing to judge there.
EMPTY_SCOPE = {"engine-offline": {"WIN-001"}}
EXIT = {"engine-offline": 6, "proxy-down": 6}  # an unreachable guest; no certificate chain to judge


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_findings(scenario: str, start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab(scenario)
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    assert run.findings() == EXPECTED[scenario], run.stdout[-3000:]
    # engine-offline has an unreachable guest: evidence incomplete (6) wins over findings (1).
    assert run.returncode == EXIT.get(scenario, 1 if EXPECTED[scenario] else 0), run.stdout[-2000:]
    for name in ("report.html", "junit.xml", "snapshot.json", "results.json"):
        assert (run.run_dir / name).is_file()
    html = (run.run_dir / "report.html").read_text()
    for finding in load_results(run.run_dir)[0]:  # with each check's catalog text (written once per check)
        if finding["outcome"] == "fail":
            assert finding["remediation"] and finding["source"] and finding["observed"] and finding["required"]
    # Secrets never reach any artifact.
    for name in ("report.html", "junit.xml", "snapshot.json", "results.json"):
        text = (run.run_dir / name).read_text()
        assert all(secret not in text for secret in lab.env.values()), name
    assert "TLS verification" in html and "on for every endpoint" in html
    # Every check ran over a non-empty scope (or was explicitly judged not applicable), except where the
    # scenario has none of its subjects on purpose.
    empty = {r["check"] for r in run.results if r["object"] == "(empty scope)"}
    assert empty == EMPTY_SCOPE.get(scenario, set()), empty


def test_engine_offline_cases_and_causes(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    by = {(r["check"], r["object"]): r for r in load_results(run.run_dir)[0]}
    iso = {host: by[("ISO-001", host)]["observed"] for host in ("esx-01", "esx-02", "esx-04")}
    assert iso["esx-01"].startswith("case A: Anti-Malware Engine Offline on 5 of 6 protected VMs on esx-01")
    for cause in ("WIN-01-01: vsepflt: STOPPED", "WIN-01-02: the VM is suspended",
                  "WIN-01-03: VMware Tools is not running", "WIN-01-04: vsepflt: not installed (FAILED 1060)"):
        assert cause in iso["esx-01"]
    assert iso["esx-02"].startswith("case B: Anti-Malware Engine Offline on every protected VM on esx-02 (5 of 5)")
    assert "ds_agent on Trend Micro Deep Security (esx-02) is inactive (dead)" in iso["esx-02"]
    assert iso["esx-04"].startswith("case B") and "nsx-context-mux is not running on esx-04" in iso["esx-04"]
    remedy_b = by[("ISO-001", "esx-02")]["remediation"]
    assert remedy_b.index("sudo service ds_agent restart") < remedy_b.index("/etc/init.d/nsx-context-mux restart")
    assert "no restart needed" in by[("ISO-001", "esx-04")]["remediation"]
    # A suspended VM, or one whose Tools are down, gets that cause, not a driver failure.
    assert by[("DRV-001", "WIN-01-02@esx-01")]["outcome"] == "skip"
    assert "PRT-003" in by[("DRV-001", "WIN-01-02@esx-01")]["observed"]
    assert by[("DRV-001", "WIN-01-03@esx-01")]["outcome"] == "skip"
    unreachable = by[("DRV-001", "WIN-01-05@esx-01")]
    assert unreachable["outcome"] == "error" and "unreachable: cannot connect" in unreachable["observed"]
    assert by[("ISO-001", "esx-03")]["outcome"] == "skip"  # no protected VM there: PRT-001/PRT-005 say why


def test_update_path_and_event_evidence(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("proxy-inspection")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    by = {(r["check"], r["object"]): r for r in run.results}
    inspected = by[("UPD-002", "update source from dsfleet")]["observed"]
    assert "issued by O=mitmproxy,CN=mitmproxy" in inspected and "SSL inspection" in inspected
    assert by[("UPD-001", "update source from dsfleet")]["outcome"] == "pass"  # the proxy does answer
    assert "curl: (60) SSL certificate problem" in by[("UPD-004", "update source from relay-01.lab.local")]["observed"]
    snap = json.loads((run.run_dir / "snapshot.json").read_text())
    chain = snap["update_path"]["probes"][0]["chain"]
    assert chain[0]["issuer"] == "O=mitmproxy,CN=mitmproxy" and len(chain) >= 1
    # endSession is always called: no SOAP session is left open on the DSM.
    import requests
    dsm = (lab.dir / "dsm.ready").read_text().strip()
    stats = requests.get(f"{dsm}/__lab/stats", verify=str(lab.dir / "ca.pem"), timeout=10).json()
    assert stats["soap_sessions_open"] == 0 and stats["soap_sessions_ended"] == 1


def test_events_from_cef_files_match_soap(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("cert-expiry-2025")
    soap = run_suite(tmp_path / "soap", "--inventory", str(lab.inventory_path), env=lab.env)
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["events"] = {"source": "cef", "cef_paths": ["syslog"]}
    (lab.dir / "cef.yml").write_text(yaml.safe_dump(inv))
    cef = run_suite(tmp_path / "cef", "--inventory", str(lab.dir / "cef.yml"), env=lab.env)
    evt = lambda run: {(r["object"], r["outcome"]) for r in run.results if r["check"] == "EVT-001"}  # noqa: E731
    assert evt(cef) == evt(soap) and ("relay-01", "fail") in evt(cef)
    transient = [r for r in cef.results if r["check"] == "EVT-001" and r["object"] == "erp-sol-01"][0]
    assert transient["outcome"] == "pass" and "transient 9017 with error code 11" in transient["observed"]
    snap = json.loads((cef.run_dir / "snapshot.json").read_text())
    assert snap["events"]["unparsed"] == 0 and snap["events"]["error"] is None  # the LEEF line is read too
    assert all(e["origin"].startswith(str(lab.dir / "syslog")) for e in snap["events"]["events"])
    # A wider window takes in the 9-day-old incident too.
    wide = run_suite(tmp_path / "wide", "--inventory", str(lab.dir / "cef.yml"), "--since", "30d", env=lab.env)
    relay = [r for r in wide.results if r["check"] == "EVT-001" and r["object"] == "relay-01"][0]
    assert "2205" in relay["observed"] and len(json.loads((wide.run_dir / "snapshot.json").read_text())
                                              ["events"]["events"]) == len(snap["events"]["events"]) + 1


def test_hung_guest_times_out_without_stalling_the_run(start_lab: Any, tmp_path: Path) -> None:
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "lab/scenarios/healthy.yml").read_text())
    spec.update(name="hung-guest", faults={"vms": {"WIN-01-01": {"ssh": "stall"}}})
    (tmp_path / "hung.yml").write_text(yaml.safe_dump(spec))
    lab = start_lab(str(tmp_path / "hung.yml"))
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["remote"]["command_timeout_s"] = 1
    (lab.dir / "fast.yml").write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(lab.dir / "fast.yml"), env=lab.env)
    assert run.findings() == {("DRV-001", "WIN-01-01@esx-01")}
    hung = [r for r in run.results if r["object"] == "WIN-01-01@esx-01" and r["check"] == "DRV-001"][0]
    assert hung["outcome"] == "error" and "timeout: no answer within 1 s" in hung["observed"]
    snap = json.loads((run.run_dir / "snapshot.json").read_text())
    assert snap["remote"]["seconds"] < 10  # one hung guest cost its own timeout, not the run


def test_changed_host_key_and_wrong_password_are_reported(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    known = (lab.dir / "known_hosts").read_text().splitlines()
    # Every ESXi host now presents a key that known_hosts does not list: refuse, never connect blind.
    (lab.dir / "known_hosts").write_text("\n".join(line for line in known if not line.startswith("[127.0.30.")) + "\n")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path),
                    env=dict(lab.env, DSFLEET_LAB_GUEST_PASSWORD="wrong"))
    errors = {(r["check"], r["object"]): r["observed"] for r in run.results if r["outcome"] == "error"}
    assert {k for k in errors if k[0] == "MUX-001"} == {("MUX-001", f"esx-0{i}") for i in (1, 2, 3)}
    assert all("host key rejected" in errors[("MUX-001", f"esx-0{i}")] for i in (1, 2, 3))
    drv = [v for (c, _), v in errors.items() if c == "DRV-001"]
    assert len(drv) == 8 and all("auth failed" in v for v in drv)
    assert not any(r["outcome"] == "pass" and r["check"] in ("MUX-001", "DRV-001") for r in run.results)


def test_no_remote_access_configured_errors_the_host_checks(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    inv = yaml.safe_load(lab.inventory_path.read_text())
    del inv["remote"]
    (lab.dir / "no-remote.yml").write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(lab.dir / "no-remote.yml"), env=lab.env)
    host_checks = [r for r in run.results if r["check"] in ("DRV-001", "DSV-001", "DSV-002", "MUX-001")]
    assert host_checks and all(r["outcome"] == "error" for r in host_checks)
    assert all("configure remote." in r["observed"] for r in host_checks)
    assert run.returncode == 6  # evidence incomplete


def test_offline_rerun_from_snapshot_gives_the_same_results(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("engine-offline")
    live = run_suite(tmp_path / "live", "--inventory", str(lab.inventory_path), env=lab.env)
    lab.stop()  # the fleet is gone: the snapshot is all the evidence there is
    offline = run_suite(tmp_path / "offline", "--snapshot", str(live.run_dir / "snapshot.json"))
    key = lambda r: (r["check"], r["object"], r["outcome"], r["observed"])  # noqa: E731
    assert sorted(map(key, offline.results)) == sorted(map(key, live.results))
    assert offline.returncode == live.returncode == 6  # engine-offline has an unreachable guest
    assert "offline re-run of a saved snapshot" in (offline.run_dir / "report.html").read_text()


def test_a_vm_property_the_vcenter_could_not_read_errors_its_checks(start_lab: Any, tmp_path: Path) -> None:
    """A read-only vCenter role without some privilege answers missingSet: the VM's checks error, naming it."""
    lab = start_lab("healthy")
    live = run_suite(tmp_path / "live", "--inventory", str(lab.inventory_path), env=lab.env)
    snap = json.loads((live.run_dir / "snapshot.json").read_text())
    mine = lambda r, vm: r["object"].partition("@")[0] == vm["name"]  # noqa: E731 - objects read "<VM>@<host>"
    vm = next(v for v in snap["vcenters"][0]["vms"] if any(
        mine(r, v) and r["check"] == "DRV-001" and r["outcome"] == "pass" for r in live.results))
    vm["unread"] = ["guest.toolsRunningStatus (NoPermission)"]
    edited = tmp_path / "snapshot.json"
    edited.write_text(json.dumps(snap))
    again = run_suite(tmp_path / "again", "--snapshot", str(edited))
    rows = [r for r in again.results if mine(r, vm)]
    assert rows and all(r["outcome"] == "error" for r in rows)
    assert all(f"the vCenter could not read guest.toolsRunningStatus (NoPermission) of VM {vm['name']}"
               in r["observed"] for r in rows)
    others = lambda run: sorted((r["check"], r["object"], r["outcome"]) for r in run.results  # noqa: E731
                                if not mine(r, vm))
    assert others(again) == others(live) and again.returncode == 6


def test_wrong_api_key_errors_every_dsm_check(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=dict(lab.env, **{ENV_DSM_KEY: "bad"}))
    assert run.returncode == 6
    errors = [r for r in run.results if r["outcome"] == "error"]
    assert {r["check"] for r in errors} >= {"BLD-001", "BLD-002", "BLD-003", "ORD-001", "PRT-001", "PRT-002"}
    assert all("authentication failed" in r["observed"] for r in errors)
    # Only checks that need no DSM fact may pass: a DSVA VM per host (vCenter), the MUX (vCenter + SSH).
    assert {r["check"] for r in run.results if r["outcome"] == "pass"} <= {"PRT-005", "MUX-001"}


def test_untrusted_certificate_fails_closed(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("healthy")
    inv = yaml.safe_load(lab.inventory_path.read_text())
    del inv["dsm"]["tls"]  # trust the system store only: the lab CA is not in it
    path = lab.dir / "no-ca.yml"
    path.write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(path), env=lab.env)
    assert run.returncode == 6
    assert any("certificate not trusted" in r["observed"] for r in run.results if r["outcome"] == "error")


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
    (["--inventory", "inventories/example.yml", "--since", "yesterday"],
     "--since: (option): expected a duration like 90m, 24h, 7d or an ISO 8601 time"),
    (["--inventory", "tests/acceptance/__init__.py"], "tests/acceptance/__init__.py: (top level)"),
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


def test_windows_guests_over_winrm(start_lab: Any, tmp_path: Path) -> None:
    """The Windows group over WinRM (testinfra's WinRM backend, pywinrm, HTTPS): the same findings as SSH."""
    lab = start_lab("engine-offline", windows_transport="winrm")
    assert yaml.safe_load(lab.inventory_path.read_text())["remote"]["windows"]["transport"] == "winrm"
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    assert run.findings() == EXPECTED["engine-offline"], run.stdout[-3000:]
    snap = json.loads((run.run_dir / "snapshot.json").read_text())
    assert {p["transport"] for p in snap["remote"]["probes"] if p["role"] == "windows" and p["status"] == "ok"} \
        == {"winrm"}
    # A wrong password and an untrusted certificate are each reported as such, never passed.
    inv = yaml.safe_load(lab.inventory_path.read_text())
    del inv["remote"]["windows"]["tls"]
    (lab.dir / "untrusted.yml").write_text(yaml.safe_dump(inv))
    untrusted = run_suite(tmp_path / "untrusted", "--inventory", str(lab.dir / "untrusted.yml"), env=lab.env)
    reachable = lambda r: r["check"] == "DRV-001" and r["outcome"] != "skip" and r["object"] != "WIN-01-05@esx-01"  # noqa: E731
    drv = [r for r in untrusted.results if reachable(r)]
    assert drv and all(r["outcome"] == "error" and "tls rejected" in r["observed"] for r in drv)
    wrong = run_suite(tmp_path / "wrong", "--inventory", str(lab.inventory_path),
                      env=dict(lab.env, DSFLEET_LAB_GUEST_PASSWORD="nope"))
    drv = [r for r in wrong.results if reachable(r)]
    assert drv and all(r["outcome"] == "error" and "auth failed" in r["observed"] for r in drv)


def test_running_dsva_that_cannot_be_reached_is_not_skipped(start_lab: Any, tmp_path: Path) -> None:
    """Powered on but Tools down (so no IP): not PRT-005's case, so DSV-001/002 report missing evidence."""
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "lab/scenarios/healthy.yml").read_text())
    spec.update(name="dsva-no-tools",
                faults={"vms": {"Trend Micro Deep Security (esx-01)": {"tools_running": "guestToolsNotRunning"}}})
    (tmp_path / "dsva.yml").write_text(yaml.safe_dump(spec))
    lab = start_lab(str(tmp_path / "dsva.yml"))
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    dsva = DSVA.format("esx-01")
    assert run.findings() == {("DSV-001", dsva), ("DSV-002", dsva)}
    assert all("the DSVA was not contacted: VMware Tools is not running" in r["observed"]
               for r in run.results if r["object"] == dsva and r["check"] in ("DSV-001", "DSV-002"))


def test_security_update_findings_show_message_components_and_age(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("update-failed")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    by = {r["object"]: r for r in run.results if r["check"] == "UPD-005"}
    relay = by["relay-02"]
    assert relay["outcome"] == "fail" and relay["observed"].startswith(
        "update status error: Anti-Malware Component Update Failed (Error Code: -24, "
        "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE); not the latest: Virus Pattern (Windows (64 bit)) 19.571.00; "
        "2 of 3 anti-malware components the latest; last change ")
    assert relay["required"] == ("update status not error, every anti-malware component the latest, last change "
                                 "within 48 h of the snapshot")
    assert "200.0 h before the snapshot (more than 48 h)" in by[DSVA.format("esx-03")]["observed"]
    assert by["app-win-02"]["outcome"] == "pass" and "47.0 h before the snapshot" in by["app-win-02"]["observed"]
    # Every relay, agent and DSVA is judged; the agentlessly protected VMs are not.
    dsvas = {DSVA.format(f"esx-0{i}") for i in (1, 2, 3)}
    assert set(by) == {"relay-01", "relay-02", "app-win-01", "app-win-02", "LNX-01-01@esx-01", "LNX-02-01@esx-02",
                       *dsvas}
    # The age is the inventory's: at 24 h the 47-hour-old update fails too.
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["security_updates"] = {"max_age_h": 24}
    (lab.dir / "day.yml").write_text(yaml.safe_dump(inv))
    day = run_suite(tmp_path / "day", "--inventory", str(lab.dir / "day.yml"), env=lab.env)
    assert {o for c, o in day.findings() if c == "UPD-005"} == {o for c, o in run.findings() if c == "UPD-005"} | {
        "app-win-02"}
    # Still one paged search: securityUpdates comes in the same expand, no call per computer.
    log = (lab.dir / "requests-dsm.log").read_text().splitlines()
    assert not any(line.startswith("GET /api/computers/") for line in log)
    # Per run: one page of every computer, then the empty page that ends the search.
    assert log.count("POST /api/computers/search") == 2 * 2


def test_offline_bundle_chain_verdicts(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("offline-bundle")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    chain = {r["object"]: (r["outcome"], r["observed"]) for r in run.results if r["check"] == "BLD-004"}
    assert chain == {
        "relay-01": ("fail", "offline bundle chain (builds the update bundle of offline segment plant-a): "
                             "20.0.0-4416 (linux) is affected (<= 20.0.0-4416) [affected]"),
        "relay-02": ("pass", "offline bundle chain (relay of offline segment plant-a): 20.0.0-8438 (windows) is a "
                             "fixed build [fixed]"),
        "plc-win-01": ("pass", "offline bundle chain (downloads from Relay Group Plant in offline segment plant-a): "
                               "20.0.0-8438 (windows) is a fixed build [fixed]"),
        "plc-win-02": ("fail", "offline bundle chain (downloads from Relay Group Plant in offline segment plant-a): "
                               "20.0.0-5995 (windows) is affected (<= 20.0.0-5995) [affected]"),
        "LNX-01-01@esx-01": ("pass", "offline bundle chain (downloads from Relay Group Plant in offline segment "
                                     "plant-a): 20.0.0-8438 (linux) is a fixed build [fixed]"),
        DSVA.format("esx-01"): ("pass", "offline bundle chain (downloads from Relay Group Plant in offline segment "
                                        "plant-a): 20.0.0-8438 is fixed and within the DSVA range [fixed]"),
    }
    # The same checks on healthy: no offline segment declared, so judged not applicable (never an empty pass).
    lab.stop()  # the labs share fixed loopback addresses
    healthy = start_lab("healthy")
    plain = run_suite(tmp_path / "healthy", "--inventory", str(healthy.inventory_path), env=healthy.env)
    assert [(r["outcome"], r["observed"]) for r in plain.results if r["check"] == "BLD-004"] == [
        ("skip", "not applicable: the inventory declares no offline_segments (environments fed by an update bundle)")]
    assert {r["outcome"] for r in plain.results if r["check"] == "UPD-005"} == {"pass"}


def test_an_offline_segment_naming_no_relay_is_bad_input(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("offline-bundle")
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["offline_segments"][0]["relays"].append("plc-win-01")  # an agent, not a relay
    path = lab.dir / "typo.yml"
    path.write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(path), env=lab.env)
    output = run.stdout + run.stderr
    assert run.returncode == 4 and "Traceback" not in output
    # Judged against the DSM's relays, so after gathering's progress lines: the error itself is one line.
    assert [line for line in output.splitlines() if line.strip() and not line.startswith("dsfleet: ")] == [
        f"ERROR: {path}: offline_segments[0].relays[1]: expected a relay the DSM knows, got 'plc-win-01'"]


EXPECTED["nsx-policy"] = {
    ("NSX-001", "WIN-01-02@esx-01"), ("PRT-002", "WIN-01-02@esx-01"), ("ISO-001", "esx-01"),  # lost its tag, offline
    ("NSX-001", "WIN-03-01@esx-03"),  # lost its tag, not offline yet: NSX-001 predicts it
}


def test_nsx_policy_is_evidence(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("nsx-policy")
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    by = {(r["check"], r["object"]): r for r in run.results}
    nsx = (lab.dir / "nsx.ready").read_text().strip()
    groups = ("any of the NSX groups DS-cl-dmz (/infra/domains/default/groups/DS-cl-dmz), DS-cl-prod "
              "(/infra/domains/default/groups/DS-cl-prod)")
    missing = f"not in {groups} (the endpoint protection rules' groups, NSX Manager {nsx})"
    assert by[("NSX-001", "WIN-03-01@esx-03")]["observed"] == missing
    assert by[("ISO-001", "esx-01")]["observed"] == ("case A: Anti-Malware Engine Offline on 1 of 3 protected VMs on "
                                                     f"esx-01: WIN-01-02; causes: WIN-01-02: drivers running; {missing}")
    tagged = by[("NSX-001", "WIN-01-01@esx-01")]
    assert tagged["outcome"] == "pass" and tagged["observed"].startswith(
        "in NSX group DS-cl-prod (/infra/domains/default/groups/DS-cl-prod) (matched by instance UUID ")
    # Bulk and read-only: a handful of paged list calls, GET only, every list read to its last page.
    log = (lab.dir / "requests-nsx.log").read_text().splitlines()
    assert log and all(line.startswith("GET /policy/api/v1/infra/domains/") for line in log)
    assert sum("cursor=" in line for line in log) >= 2
    snap = json.loads((run.run_dir / "snapshot.json").read_text())
    assert snap["nsx"]["api_calls"] == len(log) and snap["nsx"]["error"] is None and snap["nsx"]["unreadable"] == []


def test_nsx_v_membership_is_read_from_security_groups(start_lab: Any, tmp_path: Path) -> None:
    lab = start_lab("cert-expiry-2025")  # an NSX-V fleet
    run = run_suite(tmp_path / "run", "--inventory", str(lab.inventory_path), env=lab.env)
    nsx = [r for r in run.results if r["check"] == "NSX-001"]
    assert nsx and all(r["outcome"] == "pass" and "(matched by moref vm-" in r["observed"] for r in nsx)
    log = (lab.dir / "requests-nsx.log").read_text().splitlines()
    assert log[:2] == ["GET /api/2.0/si/serviceprofiles", "GET /api/2.0/si/serviceprofile/serviceprofile-1/binding"]
    assert all(line.startswith("GET /api/2.0/") for line in log)


def test_without_an_nsx_manager_the_check_errors_and_iso_says_nsx_was_not_read(start_lab: Any,
                                                                                tmp_path: Path) -> None:
    lab = start_lab("nsx-policy")
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["nsx"] = "nsx-t"  # the plain flavour: no NSX reads
    (lab.dir / "plain.yml").write_text(yaml.safe_dump(inv))
    run = run_suite(tmp_path / "run", "--inventory", str(lab.dir / "plain.yml"), env=lab.env)
    nsx = [r for r in run.results if r["check"] == "NSX-001"]
    assert nsx and all(r["outcome"] == "error" and "configure nsx.url" in r["observed"] for r in nsx)
    iso = next(r for r in run.results if (r["check"], r["object"]) == ("ISO-001", "esx-01"))
    assert iso["observed"].endswith("WIN-01-02: drivers running; configure nsx.url (nsx: {type, url, user, "
                                    "password_env}) in the inventory: the NSX Manager was not read, so its endpoint "
                                    "protection policy is unknown; check its NSX security tag / policy")
    assert not (lab.dir / "requests-nsx.log").exists() or not (lab.dir / "requests-nsx.log").read_text()
