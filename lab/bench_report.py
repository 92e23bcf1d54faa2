"""Benchmark: the reports at 10,000 VMs — file size and time to first render in headless Chromium.

    .venv/bin/python -m lab.bench_report [--hosts 50] [--vms-per-host 200]

Starts the lab at scale with one VM in ten suspended, runs the fleet checks (the API-level ones: host
commands, update path and events are left out, so the run measures the reports), then loads report.html
(pytest-html) and summary.html in Debian's headless Chromium and times each until its load event, against
an empty page as the browser's own start-up cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def render_seconds(chromium: str, page: Path, runs: int = 3) -> float:
    """Median wall time for Chromium to load the page and print its DOM (after the load event)."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as profile:
            started = time.perf_counter()
            subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                            page.resolve().as_uri()], capture_output=True, timeout=600, check=True)
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--vms-per-host", type=int, default=200)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("needs Debian's chromium: apt-get install -y chromium", file=sys.stderr)
        return 2

    from lab.run import Lab

    with tempfile.TemporaryDirectory(prefix="dsfleet-bench-") as tmp:
        spec = yaml.safe_load((ROOT / "lab/scenarios/healthy.yml").read_text())
        vms = {f"WIN-{h:02d}-{v:02d}": {"power": "suspended", "tools_running": "guestToolsNotRunning",
                                         "engine_offline": True}
               for h in range(1, args.hosts + 1) for v in range(1, args.vms_per_host + 1, 10)}
        spec.update(name="report-scale", faults={"vms": vms})
        (Path(tmp) / "scale.yml").write_text(yaml.safe_dump(spec))
        lab = Lab(str(Path(tmp) / "scale.yml"), Path(tmp) / "lab", hosts=args.hosts, vms_per_host=args.vms_per_host)
        with lab:
            inv = yaml.safe_load(lab.inventory_path.read_text())
            for key in ("remote", "update_source", "events"):
                inv.pop(key, None)
            (lab.dir / "api-only.yml").write_text(yaml.safe_dump(inv))
            run_dir = Path(tmp) / "run"
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "pytest", "tests_fleet", "-q", "-p", "no:cacheprovider",
                                   "--tb=no", "--inventory", str(lab.dir / "api-only.yml"), "--run-dir", str(run_dir),
                                   "-k", "not UPD and not EVT and not DRV and not DSV and not MUX"],
                                  cwd=ROOT, env=dict(os.environ, **lab.env), capture_output=True, text=True)
            wall = time.perf_counter() - started
        print(f"lab: {len(lab.fleet.vms)} VMs; suite run {wall:.0f} s: {proc.stdout.strip().splitlines()[-1]}")
        empty = Path(tmp) / "empty.html"
        empty.write_text("<!doctype html><title>empty</title>")
        base = render_seconds(chromium, empty)
        print(f"\n{'report':<14}{'size MB':>9}{'render s':>10}   (headless Chromium to load event, minus "
              f"{base:.2f} s browser start-up)")
        for name in ("report.html", "summary.html", "summary.md", "results.json"):
            path = run_dir / name
            size = path.stat().st_size / 1e6
            shown = f"{render_seconds(chromium, path) - base:>10.2f}" if name.endswith(".html") else f"{'-':>10}"
            print(f"{name:<14}{size:>9.1f}{shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
