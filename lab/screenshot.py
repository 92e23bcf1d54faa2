"""The README's picture of the summary, made from the lab: start a scenario, run the suite, photograph
summary.html in Debian's headless Chromium at 1,366 px wide.

    .venv/bin/python -m lab.screenshot [--scenario engine-offline] [--lang en] [--out lab/screenshots/summary.png]

Run it in its own network namespace when other labs may be running (the lab uses fixed 127.x addresses).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .bench_report import CHROMIUM_FLAGS
from .run import Lab

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="engine-offline")
    parser.add_argument("--lang", choices=("en", "ja"), default="en")
    parser.add_argument("--out", type=Path, default=ROOT / "lab" / "screenshots" / "summary.png")
    parser.add_argument("--height", type=int, default=1800, help="pixels of the page shown (width is 1,366)")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("needs Debian's chromium: apt-get install -y chromium fonts-noto-cjk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dsfleet-shot-") as tmp, Lab(args.scenario, Path(tmp) / "lab") as lab:
        run_dir = Path(tmp) / "run"
        subprocess.run([sys.executable, "-m", "pytest", "tests_fleet", "-q", "-p", "no:cacheprovider", "--tb=no",
                        "--inventory", str(lab.inventory_path), "--run-dir", str(run_dir), "--lang", args.lang],
                       cwd=ROOT, env=dict(os.environ, **lab.env), capture_output=True, check=False)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}", "--hide-scrollbars",
                        f"--window-size=1366,{args.height}", f"--screenshot={args.out.resolve()}",
                        (run_dir / "summary.html").as_uri()], capture_output=True, timeout=120, check=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
