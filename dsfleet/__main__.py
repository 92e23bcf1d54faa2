"""``python -m dsfleet verify RUN_DIR``: check a run's artifacts against its SHA-256 manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dsfleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="verify a run folder against its manifest.sha256")
    verify.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    problems = manifest.verify(args.run_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.run_dir}: every artifact matches {manifest.NAME}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
