"""Benchmark: the reports at 10,000 VMs — file size and load time in headless Chromium.

    .venv/bin/python -m lab.bench_report [--hosts 50] [--vms-per-host 200]

Starts the lab at scale with one VM in ten suspended, runs the fleet checks (the API-level ones: host
commands, update path and events are left out, so the run measures the reports), then opens report.html
(pytest-html) and summary.html in Debian's headless Chromium and reads the page's own navigation timing:
milliseconds from navigation start to the end of its load event, pytest-html's table rendering included
(the last load listener records ``performance.now()``). A CPU calibration (a fixed pure-Python loop) is
printed beside the figures so they can be compared across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


# Appended to a copy of the page: the last load listener runs after the page's own (pytest-html renders its
# table then) and writes the navigation timing into the DOM that --dump-dom prints.
_PROBE = ("<script>addEventListener('load',function(){var n=performance.getEntriesByType('navigation')[0];"
          "var p=document.createElement('pre');p.id='bench-timing';p.textContent=JSON.stringify("
          "{load:performance.now(),dcl:n.domContentLoadedEventEnd});document.body.appendChild(p);});</script>")


def load_seconds(chromium: str, page: Path, runs: int = 3) -> float:
    """Median seconds from navigation start to the end of the page's load event, by the page's own clock."""
    probe = page.with_name(f".bench-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8") + _PROBE, encoding="utf-8")
    times = []
    try:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as profile:
                out = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                                      probe.resolve().as_uri()], capture_output=True, text=True, timeout=600,
                                     check=True).stdout
            found = re.search(r'<pre id="bench-timing">(.*?)</pre>', out)
            if found is None:
                raise RuntimeError(f"{page.name}: the page never reached its load event")
            times.append(json.loads(found.group(1).replace("&quot;", '"'))["load"] / 1000)
    finally:
        probe.unlink(missing_ok=True)
    return sorted(times)[len(times) // 2]


def calibration_seconds() -> float:
    """A fixed CPU-bound loop: the machine's speed, printed beside the figures."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i * i % 7
    return time.perf_counter() - started


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
        print(f"CPU calibration: {calibration_seconds():.2f} s for 10 million Python loop steps; "
              f"{os.cpu_count()} CPUs")
        print(f"\n{'report':<14}{'size MB':>9}{'load s':>9}   (headless Chromium, the page's navigation timing: "
              f"navigation start to the end of its load event, median of 3)")
        for name in ("report.html", "summary.html", "summary.md", "results.json"):
            path = run_dir / name
            size = path.stat().st_size / 1e6
            shown = f"{load_seconds(chromium, path):>9.2f}" if name.endswith(".html") else f"{'-':>9}"
            print(f"{name:<14}{size:>9.1f}{shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
