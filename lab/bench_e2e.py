"""Benchmark: the whole run at 10,000 VMs as a user runs it, stage by stage, against issue 12's goals.

    .venv/bin/python -m lab.bench_e2e [--hosts 50] [--vms-per-host 200] [--api-ms 2] [--command-ms 100]
                                      [--scenarios healthy engine-offline] [--keep DIR]

For each scenario: starts the lab at scale (the latency injected into every DSM and vSphere call and every
remote command), runs ``pytest tests_fleet --inventory …`` in a child process exactly as a user would, then a
trivial test parametrized with one item per result under the same plugins (pytest-html, JUnit, dsfleet's
entry point) — what pytest alone costs in the shape of one item per object, the floor the test phase is compared
with (a check is one item with one result per object). The child loads this module as a plugin (``-p``) only
to stamp the wall clock at pytest's stage boundaries into a file; the progress lines gathering prints give the
API and remote parts. Peak RSS is the child's own (wait4). A CPU calibration loop is printed beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAMPS_ENV = "DSFLEET_BENCH_STAMPS"  # the child appends "<stage>:<begin|end> <unix time> <CPU s>" lines here


# -- in the child: stage stamps ----------------------------------------------------------------------


def _stamp(name: str) -> None:
    path = os.environ.get(STAMPS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{name} {time.time():.6f} {time.process_time():.6f}\n")


@contextlib.contextmanager
def _span(stage: str) -> Iterator[None]:
    _stamp(f"{stage}:begin")
    try:
        yield
    finally:
        _stamp(f"{stage}:end")


# Wrappers around every implementation of each hook: dsfleet gathers in sessionstart, writes its reports in
# sessionfinish (pytest-html and JUnit too) and the manifest in unconfigure.
@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session) -> Iterator[None]:
    with _span("gather"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[Any]:
    with _span("collection"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[Any]:
    with _span("tests"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    with _span("reports"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_unconfigure(config: pytest.Config) -> Iterator[None]:
    with _span("manifest"):
        return (yield)


def pytest_collection_finish(session: pytest.Session) -> None:
    _stamp(f"items:{len(session.items)}")
    from dsfleet.fixtures.session import CheckRows, subject_param  # a check is one item with a result per object

    rows = [subject_param(item) for item in session.items]
    _stamp(f"results:{sum(len(r) if isinstance(r, CheckRows) else 1 for r in rows)}")


# -- in the parent ----------------------------------------------------------------------------------


def calibration_seconds() -> float:
    started = time.perf_counter()
    sum(i * i for i in range(10**7))
    return time.perf_counter() - started


def run_pytest(args: list[str], env: dict[str, str], workdir: Path, name: str) -> dict[str, Any]:
    """One pytest child: its output lines with arrival times, its stage stamps, wall time and peak RSS."""
    stamps = workdir / f"{name}.stamps"
    stamps.unlink(missing_ok=True)
    child_env = dict(os.environ, **env, PYTHONUNBUFFERED="1", **{STAMPS_ENV: str(stamps)})
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "lab.bench_e2e", "-p", "no:cacheprovider", *args],
                            cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = [(time.time(), line.rstrip("\n")) for line in proc.stdout]
    _pid, status, usage = os.wait4(proc.pid, 0)
    ended = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    (workdir / f"{name}.log").write_text("\n".join(f"{t - started:8.2f} {line}" for t, line in lines))
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}
    items = results = 0
    for row in stamps.read_text().splitlines() if stamps.exists() else []:
        key, wall, used = row.split(" ")
        if key.startswith("items:"):
            items = int(key.split(":")[1])
        elif key.startswith("results:"):
            results = int(key.split(":")[1])
        elif key.endswith(":begin"):
            marks.setdefault(key, float(wall))  # the outermost begin
            cpu.setdefault(key, float(used))
        else:
            marks[key], cpu[key] = float(wall), float(used)  # the outermost end
    return {"started": started, "ended": ended, "lines": lines, "marks": marks, "cpu": cpu, "items": items,
            "results": results or items, "rc": proc.returncode, "peak_rss_mb": usage.ru_maxrss / 1024, "tail": [ln for _t, ln in lines[-3:]],
            "cpu_total": usage.ru_utime + usage.ru_stime}


STAGES = ("start-up", "API gather + join", "remote probes", "whole gathering", "collection", "test run",
          "reports", "interpreter exit", "whole run")


def stages(run: dict[str, Any], clock: str = "wall") -> dict[str, float | None]:
    """Seconds per stage (wall clock, or this process's CPU), from the stamps and the gathering's progress lines.

    The API and remote parts come from the progress lines, so they have wall times only.
    """
    m = run["marks"] if clock == "wall" else run["cpu"]
    lines = run["lines"]

    def span(stage: str) -> float | None:
        begin, end = m.get(f"{stage}:begin"), m.get(f"{stage}:end")
        return end - begin if begin is not None and end is not None else None

    def line_time(pattern: str) -> float | None:
        return next((t for t, line in lines if re.search(pattern, line)), None)

    gather_begin = m.get("gather:begin")
    probing = line_time(r"dsfleet: remote: probing \d+ hosts")
    probed = next((float(found.group(1)) for _t, line in lines
                   if (found := re.search(r"dsfleet: remote: \d+ hosts in ([\d.]+) s", line))), None)
    api = (probing or m.get("gather:end", 0.0)) - gather_begin if gather_begin and clock == "wall" else None
    reports = [span("reports"), span("manifest")]
    start, end = (run["started"], run["ended"]) if clock == "wall" else (0.0, run["cpu_total"])
    return {
        "start-up": (gather_begin or m.get("collection:begin", start)) - start,
        "API gather + join": api, "remote probes": probed if clock == "wall" else None,
        "whole gathering": span("gather"), "collection": span("collection"), "test run": span("tests"),
        "reports": sum(r for r in reports if r is not None) if any(r is not None for r in reports) else None,
        # wait4's CPU includes the run's own child processes (remote probes): no exit CPU to take from it.
        "interpreter exit": end - m["manifest:end"] if "manifest:end" in m and clock == "wall" else None,
        "whole run": end - start,
    }


FLOOR_TEST = '''import pytest

IDS = [f"{i // 1000:03d}:{i}" for i in range({n})]


@pytest.mark.parametrize("subject", range({n}), ids=IDS)
def test_floor(subject):
    assert subject >= 0
'''


def floor_run(items: int, workdir: Path) -> dict[str, Any]:
    """A trivial test with as many items, under the same plugins (pytest-html and JUnit written too)."""
    folder = workdir / "floor"
    folder.mkdir(exist_ok=True)
    (folder / "test_floor.py").write_text(FLOOR_TEST.replace("{n}", str(items)))
    return run_pytest([str(folder / "test_floor.py"), "-q", "--rootdir", str(folder),
                       "--html", str(folder / "report.html"), "--self-contained-html",
                       "--junitxml", str(folder / "junit.xml")], {}, workdir, "floor")


GOALS = {"API gather + join": 5, "remote probes": 40, "reports": 5, "interpreter exit": 1, "whole run": 90}


def scenario_run(scenario: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from lab.run import Lab

    lab = Lab(scenario, workdir / f"lab-{scenario}", hosts=args.hosts, vms_per_host=args.vms_per_host,
              vc_delay_ms=args.api_ms, dsm_latency_ms=args.api_ms, ssh_latency_ms=args.command_ms)
    with lab:
        run_dir = workdir / f"run-{scenario}"
        run = run_pytest(["tests_fleet", "-q", "--inventory", str(lab.inventory_path), "--run-dir", str(run_dir)],
                         lab.env, workdir, scenario)
        run["vms"] = len(lab.fleet.vms)
    run["sizes_mb"] = {name: (run_dir / name).stat().st_size / 1e6 if (run_dir / name).exists() else None
                       for name in ("results.json", "report.html")}
    return run


def table(runs: dict[str, dict[str, Any]], floor: dict[str, Any] | None) -> list[str]:
    """Issue 12's table: per scenario the wall seconds and, in brackets, the run's own CPU seconds."""
    names = list(runs)
    wall = {n: stages(r) for n, r in runs.items()}
    cpu = {n: stages(r, "cpu") for n, r in runs.items()}
    floor_wall, floor_cpu = (stages(floor), stages(floor, "cpu")) if floor else ({}, {})
    width, col = 22, 22

    def cell(w: float | None, c: float | None) -> str:
        text = "-" if w is None else f"{w:.1f} s" + ("" if c is None else f" ({c:.1f} CPU)")
        return f"{text:>{col}}"

    out = [f"{'stage':<{width}}" + "".join(f"{n:>{col}}" for n in names) + f"{'goal':>{col}}"]
    for stage in STAGES:
        goal = GOALS.get(stage)
        goal_text = f"≤ {goal} s" if goal else ""
        if stage == "test run" and floor_wall.get("test run"):
            goal_text = f"≤ 1.2 × floor"
        out.append(f"{stage:<{width}}" + "".join(cell(wall[n][stage], cpu[n][stage]) for n in names)
                   + f"{goal_text:>{col}}")
    out.append(f"{'peak RSS':<{width}}" + "".join(f"{runs[n]['peak_rss_mb']:>{col - 3}.0f} MB" for n in names)
               + f"{'≤ 1000 MB':>{col}}")
    for name in ("results.json", "report.html"):
        sizes = [runs[n]["sizes_mb"][name] for n in names]
        out.append(f"{name:<{width}}" + "".join(f"{'-' if v is None else f'{v:.1f} MB':>{col}}" for v in sizes))
    out.append(f"{'items / results':<{width}}" + "".join(f"{runs[n]['items']} / {runs[n]['results']}".rjust(col)
                                                        for n in names))
    out.append(f"{'exit code':<{width}}" + "".join(f"{runs[n]['rc']:>{col}}" for n in names))
    if floor:
        out.append("")
        out.append(f"floor (a trivial test with one item per result, {floor['items']} items, same plugins): "
                   + ", ".join(f"{stage} {cell(floor_wall[stage], floor_cpu[stage]).strip()}"
                               for stage in ("collection", "test run", "reports", "interpreter exit", "whole run"))
                   + f", peak RSS {floor['peak_rss_mb']:.0f} MB")
        for n in names:
            ratios = [(wall[n]["test run"] or 0) / (floor_wall["test run"] or 1),
                      (cpu[n]["test run"] or 0) / (floor_cpu["test run"] or 1)]
            out.append(f"{n}: test run / floor's = {ratios[0]:.2f}× wall, {ratios[1]:.2f}× CPU (goal ≤ 1.2× in CPU: "
                       f"{'met' if ratios[1] <= 1.2 else 'missed'})")
    for n in names:
        out.append(f"{n}: last line: {runs[n]['tail'][-1] if runs[n]['tail'] else ''}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--vms-per-host", type=int, default=200)
    parser.add_argument("--api-ms", type=int, default=2, help="latency per DSM / vSphere call")
    parser.add_argument("--command-ms", type=int, default=100, help="latency per remote command")
    parser.add_argument("--scenarios", nargs="+", default=["healthy", "engine-offline"])
    parser.add_argument("--no-floor", action="store_true", help="skip the trivial-test floor run")
    parser.add_argument("--keep", metavar="DIR", help="keep the run folders, logs and snapshots here")
    args = parser.parse_args()
    # Run in the background (nohup … &), where SIGINT is ignored: SIGTERM still stops the labs on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="dsfleet-e2e-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    for scenario in args.scenarios:
        runs[scenario] = scenario_run(scenario, args, workdir)
        print(f"{scenario}: {runs[scenario]['vms']} VMs, {runs[scenario]['items']} items, "
              f"{runs[scenario]['results']} results, whole run "
              f"{stages(runs[scenario])['whole run']:.1f} s", flush=True)
    # The floor: what pytest itself costs for one item per result (the shape dsfleet had before a check became
    # one item with a row per object).
    results = max(r["results"] for r in runs.values())
    floor = None if args.no_floor or not results else floor_run(results, workdir)
    calibration = calibration_seconds()
    print(f"\n{args.hosts} ESXi × {args.vms_per_host} VMs, {args.api_ms} ms per API call, {args.command_ms} ms per "
          f"remote command; CPU calibration sum(i*i for i in range(10**7)): {calibration:.2f} s; "
          f"{os.cpu_count()} CPUs; logs in {workdir}\n")
    print("\n".join(table(runs, floor)))
    if not args.keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
