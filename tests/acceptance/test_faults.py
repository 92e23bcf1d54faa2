"""The fault matrix (issue 8): one healthy lab, one source broken at a time, the suite run as a user runs it.

For every fault the run must show: no false pass (every result that depends on the broken source errors or
fails), the exact reason (in the ``observed`` text of those results), bounded time, no traceback, the
documented exit code (0 compliant, 1 findings, 4 bad input, 6 evidence incomplete) and no secret in any
artifact (the lab's generated secrets are the canary). A read-only test checks what the stand-ins were asked.
The matrix (fault × exit code × reason × seconds × each assertion) is printed when the module ends.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from dsfleet.remote import is_allowed
from lab.run import FaultEndpoint, Lab

from ..conftest import ROOT, SuiteRun

BOUND_S = 60  # every run, whatever the fault; the inventory's deadline_s is 30
SMALL_TIMEOUTS = {"deadline_s": 30}
OK, FINDINGS, BAD_INPUT, INCOMPLETE = 0, 1, 4, 6
ROWS: list[dict[str, Any]] = []

Result = dict[str, Any]
Pick = Callable[[Result], bool]

DSM_FREE = {"MUX-001", "PRT-005"}  # read from the ESXi hosts and vCenter alone
VC_FREE = {"UPD-001", "UPD-002", "UPD-003", "UPD-004", "BLD-002", "ORD-002"}  # the DSM and the update path alone
WINDOWS_VM, ESXI, DSVA_HOST = "WIN-01-01", "esx-02", "esx-03"  # the hosts the SSH faults hit


def configured_out(r: Result) -> bool:
    """Not applicable by the inventory's own choice (the healthy lab declares no offline segments): such a
    result depends on no source, and it is a skip whatever the fleet says."""
    return r["outcome"] == "skip" and r["observed"].startswith("not applicable: the inventory declares")


def dsm_dependent(r: Result) -> bool:
    return r["check"] not in DSM_FREE and not configured_out(r)


def dsm_rest(r: Result) -> bool:
    """DSM-dependent results read through REST (events come through SOAP, with their own words)."""
    return dsm_dependent(r) and r["check"] != "EVT-001"


def dsm_computers(r: Result) -> bool:
    """Results that need the DSM's computer list (the update path reads only the DSM's settings)."""
    return dsm_rest(r) and not r["check"].startswith("UPD-")


def vc_dependent(r: Result) -> bool:
    return r["check"] not in VC_FREE and not configured_out(r)


def checks(*ids: str) -> Pick:
    return lambda r: r["check"] in ids


def on(obj: str, *ids: str) -> Pick:
    return lambda r: r["object"].startswith(obj) and r["check"] in ids


@dataclass(frozen=True)
class Fault:
    name: str
    exit_code: int
    reasons: tuple[str, ...] = ()  # at least one of them in the observed text of every `explains` result
    depends: Pick = lambda r: False  # results that must not pass
    explains: Pick | None = None  # default: `depends`
    target: str | None = None  # "dsm" / "vcenter" / "proxy" pointed at the fault endpoint
    mode: str = "pass"  # the endpoint's mode (refuse: its refused port)
    options: dict[str, Any] = field(default_factory=dict)
    lab_faults: dict[str, Any] = field(default_factory=dict)  # lab.set_faults
    inventory: dict[str, Any] = field(default_factory=dict)  # top-level keys merged into the inventory


def dsm(name: str, mode: str, reasons: tuple[str, ...], explains: Pick = dsm_dependent, **options: Any) -> Fault:
    return Fault(f"dsm {name}", INCOMPLETE, reasons, dsm_dependent, explains, "dsm", mode, options)


def dsm_data(name: str, exit_code: int, reasons: tuple[str, ...], depends: Pick, **faults: Any) -> Fault:
    return Fault(f"dsm {name}", exit_code, reasons, depends, lab_faults={"dsm": faults})


REPEAT = ("repeat", "no progress")  # "page repeated", "repeats a page"
SOAP_STALL = (*REPEAT, "truncated but returned no events")  # the healthy lab has no events to repeat
MALFORMED_VM = "WIN-01-02"  # its DSM record gets a computerStatus that is not an object
FAULTS = [
    dsm("refuse", "refuse", ("connection refused",)),
    dsm("hang", "hang", ("timed out",)),
    dsm("hang-tls", "hang-tls", ("timed out during the TLS handshake",)),
    dsm("401", "status", ("authentication failed",), status=401),
    dsm("403", "status", ("403",), status=403),
    dsm("500", "status", ("HTTP 500",), status=500),
    dsm("502 gateway page", "gateway", ("HTTP 502",)),
    dsm("502 says gateway", "gateway", ("gateway error page",)),
    dsm("malformed JSON", "malformed", ("not JSON",), explains=dsm_rest),
    dsm("truncated body", "truncated", ("response cut short",)),
    dsm("redirect", "redirect", ("redirect",)),
    dsm("wrong TLS name", "wrong-name", ("certificate is for another host name",)),
    Fault("dsm 429 Retry-After, then ok", OK, target="dsm", mode="status",
          options={"status": 429, "retry_after": 1, "count": 1}),
    Fault("dsm slow within timeout", OK, target="dsm", mode="slow", options={"delay_s": 0.3}),
    dsm_data("paging repeat", INCOMPLETE, REPEAT, dsm_computers, paging="repeat"),
    dsm_data("paging ignores cursor", INCOMPLETE, REPEAT, dsm_computers, paging="ignore-cursor"),
    dsm_data("short pages", OK, (), lambda r: False, paging="short"),
    dsm_data("malformed record", INCOMPLETE, ("could not be parsed", "is malformed"),
             on(MALFORMED_VM, "PRT-001", "PRT-002", "PRT-003", "PRT-004", "DRV-001"),
             malformed=[{"name": MALFORMED_VM, "field": "computerStatus", "value": "not an object"}]),
    dsm_data("SOAP truncated, empty", INCOMPLETE, SOAP_STALL, checks("EVT-001"), soap="truncated-empty"),
    dsm_data("SOAP repeat", INCOMPLETE, SOAP_STALL, checks("EVT-001"), soap="repeat"),
    Fault("vcenter refuse", INCOMPLETE, ("connection refused",), vc_dependent, target="vcenter", mode="refuse"),
    Fault("vcenter hang", INCOMPLETE, ("timed out",), vc_dependent, target="vcenter", mode="hang"),
    Fault("vcenter wrong TLS name", INCOMPLETE, ("certificate is for another host name",), vc_dependent,
          target="vcenter", mode="wrong-name"),
    Fault("ssh silent host", INCOMPLETE, ("timed out during the SSH handshake",), on(WINDOWS_VM, "DRV-001"),
          lab_faults={"ssh": {"windows:" + WINDOWS_VM: "silent"}}),
    # ISO-001 needs the MUX state only when a VM on the host is offline: it may pass here.
    Fault("ssh hang-command", INCOMPLETE, ("timed out",), on(ESXI, "MUX-001"),
          lab_faults={"ssh": {"esxi:" + ESXI: "hang-command"}}),
    Fault("ssh garbled", INCOMPLETE, ("could not be parsed", "unexpected output"),
          on(f"Trend Micro Deep Security ({DSVA_HOST})", "DSV-001", "DSV-002"),
          lab_faults={"ssh": {"dsva:" + DSVA_HOST: "garbled"}}),
    Fault("au 503", FINDINGS, ("HTTP 503",), checks("UPD-001", "UPD-004"), lab_faults={"au": {"status": 503}}),
    Fault("proxy down", INCOMPLETE, ("connection refused", "could not connect"), checks("UPD-001", "UPD-002",
                                                                                       "UPD-004"),
          explains=checks("UPD-001", "UPD-004"), target="proxy", mode="refuse"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """One healthy lab for the module (each fault is an inventory copy and/or faults.json), and the matrix."""
    request.addfinalizer(lambda: _print_matrix(request.config))
    lab = Lab("healthy", tmp_path_factory.mktemp("faults") / "lab").start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def endpoint(lab: Lab) -> FaultEndpoint:
    return lab.start_fault_endpoint()


@pytest.fixture
def clean(lab: Lab) -> Iterator[None]:
    lab.set_faults({})
    yield
    lab.set_faults({})


def _address(lab: Lab, key: str) -> str:
    """"role:name" → the lab address of that SSH endpoint (a Windows VM, an ESXi host, the DSVA on a host)."""
    role, name = key.split(":", 1)
    for e in lab.fleet.ssh_endpoints():
        if e["role"] == role and (e["name"] == name or (role == "dsva" and e["name"].endswith(f"({name})"))):
            return str(e["address"])
    raise KeyError(key)


def _resolve(lab: Lab, faults: dict[str, Any]) -> dict[str, Any]:
    """The contract's faults.json from names: SSH faults by address, malformed records by computer ID."""
    out = dict(faults)
    if "ssh" in faults:
        out["ssh"] = {_address(lab, key): mode for key, mode in faults["ssh"].items()}
    if "malformed" in faults.get("dsm", {}):
        ids = {c["displayName"]: c["ID"] for c in lab.fleet.computers}
        out["dsm"] = {**faults["dsm"], "malformed": [{"id": ids[m["name"]], "field": m["field"], "value": m["value"]}
                                                     for m in faults["dsm"]["malformed"]]}
    return out


def _inventory(lab: Lab, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the lab inventory with small timeouts, next to the original (its relative paths hold)."""
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["dsm"].update(timeout_s=2, retries=1)
    inv["vcenters"][0]["timeout_s"] = 2
    inv["remote"].update(connect_timeout_s=2, command_timeout_s=2)
    inv.update(SMALL_TIMEOUTS)
    edit(inv)
    path = lab.dir / ("inventory-" + re.sub(r"[^A-Za-z0-9]+", "-", name) + ".yml")
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


def _run(lab: Lab, run_dir: Path, *args: str) -> tuple[SuiteRun | None, float]:
    """tests/conftest.py's run_suite, with the matrix's time bound as the hard limit; None when it hung."""
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "tests_fleet", "-q", "-p", "no:cacheprovider",
                               "--run-dir", str(run_dir), *args], cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, **lab.env), timeout=BOUND_S + 30)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started
    return SuiteRun(proc.returncode, proc.stdout, proc.stderr, run_dir), time.monotonic() - started


def _leaks(lab: Lab, run: SuiteRun, extra: list[Path]) -> list[str]:
    """Where a lab secret appears: any file of the run folder, stdout/stderr, the extra files."""
    secrets = [v for v in lab.env.values() if v]
    places = {"stdout": run.stdout, "stderr": run.stderr}
    for path in [*sorted(p for p in run.run_dir.rglob("*") if p.is_file()), *extra]:
        if path.exists():
            places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return [place for place, text in places.items() if any(s in text for s in secrets)]


def _results(run: SuiteRun) -> list[Result]:
    path = run.run_dir / "results.json"
    return run.results if path.exists() else []


def _judge(fault: Fault, run: SuiteRun | None, seconds: float, lab: Lab, extra: list[Path]) -> dict[str, Any]:
    """Every assertion of the matrix for one run, as booleans, plus what was seen."""
    if run is None:
        return {"fault": fault.name, "exit": f"hung>{BOUND_S + 30}", "reason": "-", "s": seconds,
                "checks": {"bounded": False}, "detail": "the run did not finish"}
    results = _results(run)
    depends = [r for r in results if fault.depends(r)]
    explains = [r for r in depends if (fault.explains or fault.depends)(r)]
    unexplained = [r for r in explains if not any(w in r["observed"] for w in fault.reasons)]
    found = ", ".join(w for w in fault.reasons if any(w in r["observed"] for r in explains))
    output = run.stdout + run.stderr
    verdict = {
        "results": bool(results),
        "no false pass": all(r["outcome"] in ("error", "fail") for r in depends)
        and (bool(depends) or not fault.reasons),
        "reason": not fault.reasons or (bool(explains) and not unexplained),
        "bounded": seconds <= BOUND_S,
        "no traceback": "Traceback" not in output and "INTERNALERROR" not in output,
        "exit code": run.returncode == fault.exit_code,
        "no secret": not _leaks(lab, run, extra),
    }
    if fault.exit_code == OK:
        verdict["all pass"] = bool(results) and all(r["outcome"] == "pass" or configured_out(r) for r in results)
    passed = [f"{r['check']} {r['object']}" for r in depends if r["outcome"] not in ("error", "fail")]
    detail = (f"exit {run.returncode}, expected {fault.exit_code}; false passes: {passed[:5]}; "
              f"reason missing: {[(r['check'], r['object'], r['observed']) for r in unexplained[:3]]}; "
              f"leaks: {_leaks(lab, run, extra)}; "
              f"output tail: {output[-1500:]}")
    return {"fault": fault.name, "exit": f"{run.returncode}/{fault.exit_code}",
            "reason": found or ("-" if not fault.reasons else "MISSING"), "s": seconds, "checks": verdict,
            "detail": detail}


def _record(row: dict[str, Any]) -> None:
    ROWS.append(row)
    failed = [name for name, ok in row["checks"].items() if not ok]
    assert not failed, f"{row['fault']}: failed {failed}; {row['detail']}"


# What the suite may ask of each stand-in: reads only.
DSM_READS = re.compile(r"^(GET \S+|POST /api/computers/search(\?\S*)?|"
                       r"POST /webservice/Manager (authenticate|authenticateTenant|systemEventRetrieve|endSession))$")
VCENTER_READS = {"RetrieveServiceContent", "Login", "Logout", "RetrievePropertiesEx", "ContinueRetrievePropertiesEx",
                 "RetrieveProperties", "CancelRetrievePropertiesEx", "CreateContainerView", "DestroyView",
                 "CurrentTime", "CreateFilter", "DestroyPropertyFilter", "WaitForUpdatesEx"}


def _new_lines(path: Path, offset: int) -> list[str]:
    return path.read_bytes()[offset:].decode("utf-8", "replace").splitlines() if path.exists() else ["(no log)"]


def _vcenter_read(line: str) -> bool:
    return line in VCENTER_READS or line.startswith("GET ")


def _ssh_read(line: str) -> bool:
    parts = line.split(" ", 2)
    return len(parts) == 3 and is_allowed(parts[2])


def test_healthy_run_only_reads(lab: Lab, clean: None, tmp_path: Path) -> None:
    """A normal run: compliant, exit 0, and every request each stand-in logged is a read."""
    logs: dict[str, Callable[[str], object]] = {"requests-dsm.log": DSM_READS.match, "requests-vcenter.log": _vcenter_read,
            "requests-au.log": lambda line: line.startswith("GET "), "commands-ssh.log": _ssh_read}
    offsets = {name: (lab.dir / name).stat().st_size if (lab.dir / name).exists() else 0 for name in logs}
    run, seconds = _run(lab, tmp_path / "run", "--inventory", str(_inventory(lab, "healthy", lambda inv: None)))
    row = _judge(Fault("none (healthy, read-only)", OK), run, seconds, lab, [])
    for name, allowed in logs.items():
        lines = _new_lines(lab.dir / name, offsets[name])
        writes = [line for line in lines if not allowed(line)]
        row["checks"][f"reads only: {name}"] = bool(lines) and not writes
        row["detail"] += f"; {name}: {len(lines)} lines, not reads: {writes[:5]}"
    _record(row)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(fault: Fault, lab: Lab, endpoint: FaultEndpoint, clean: None, tmp_path: Path) -> None:
    real = yaml.safe_load(lab.inventory_path.read_text())
    upstream = {"dsm": real["dsm"]["url"], "vcenter": real["vcenters"][0]["url"]}.get(fault.target or "")
    if fault.target and fault.mode != "refuse":
        endpoint.set(fault.mode, **({"upstream": _origin(upstream)} if upstream else {}), **fault.options)
    base = endpoint.refused_url if fault.mode == "refuse" else endpoint.url

    def edit(inv: dict[str, Any]) -> None:
        if fault.target == "dsm":
            inv["dsm"]["url"] = base
        elif fault.target == "vcenter":
            inv["vcenters"][0]["url"] = base + "/sdk"
        elif fault.target == "proxy":
            inv["update_proxy"]["url"] = base.replace("https://", "http://")
        inv.update(fault.inventory)

    inventory = _inventory(lab, fault.name, edit)
    lab.set_faults(_resolve(lab, fault.lab_faults))
    endpoint.catcher_log.write_text("")
    run, seconds = _run(lab, tmp_path / "run", "--inventory", str(inventory))
    row = _judge(fault, run, seconds, lab, [endpoint.catcher_log])
    if fault.mode == "redirect":
        # Not followed at all: nothing (least of all a credential) reaches the redirect's target.
        row["checks"]["nothing reached the catcher"] = endpoint.catcher_log.read_text() == ""
    _record(row)


def _origin(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


@pytest.mark.parametrize("name,edit,args", [
    ("--since in the future", lambda inv: None, ("--since", "2999-01-01")),
    ("unknown scope cluster", lambda inv: inv.update(scope={"clusters": ["cl-nowhere"]}), ()),
])
def test_bad_input(name: str, edit: Callable[[dict[str, Any]], None], args: tuple[str, ...], lab: Lab,
                   clean: None, tmp_path: Path) -> None:
    run, seconds = _run(lab, tmp_path / "run", "--inventory", str(_inventory(lab, name, edit)), *args)
    output = [line for line in ((run.stdout + run.stderr) if run else "").splitlines() if line.strip()]
    # Input that can only be judged against the fleet (a scope name) comes after gathering's progress lines.
    lines = [line for line in output if not line.startswith("dsfleet: ")]
    checks = {"bounded": run is not None and seconds <= BOUND_S,
              "exit code": run is not None and run.returncode == BAD_INPUT,
              "one line": len(lines) == 1 and lines[0].startswith("ERROR: "),
              "no traceback": not any("Traceback" in line for line in output)}
    _record({"fault": name, "exit": f"{run.returncode if run else 'hung'}/{BAD_INPUT}",
             "reason": lines[0][:60] if lines else "-", "s": seconds, "checks": checks,
             "detail": "\n".join(lines[:20])})


def _print_matrix(config: pytest.Config) -> None:
    if not ROWS:
        return
    names = list(dict.fromkeys(name for row in ROWS for name in row["checks"]))
    capture = config.pluginmanager.getplugin("capturemanager")
    writer = config.get_terminal_writer()
    with capture.global_and_fixture_disabled():
        writer.line()
        writer.sep("=", f"fault matrix: {len(ROWS)} runs, {sum(r['s'] for r in ROWS):.0f} s of suite runs")
        writer.line(f"{'fault':34} {'exit/want':9} {'s':>5}  {'reason':38} failed assertions")
        for row in ROWS:
            failed = [n for n in names if n in row["checks"] and not row["checks"][n]]
            writer.line(f"{row['fault'][:34]:34} {row['exit']:9} {row['s']:5.1f}  {row['reason'][:38]:38} "
                        + (", ".join(failed) if failed else "all pass"))
