"""``dsfleet`` (or ``python -m dsfleet``): run the checks, verify or sign a run's manifest, prune old runs.

  dsfleet run [pytest options]                 = pytest --pyargs dsfleet.checks [pytest options]
  dsfleet verify RUN [--allowed-signers FILE]  the artifacts match manifest.sha256 (and its signature)
  dsfleet sign RUN --key FILE                  sign manifest.sha256 with an SSH key (ssh-keygen -Y sign)
  dsfleet prune [--reports DIR] --keep N       delete all but the N newest run folders
  dsfleet merge OUT SHARD_DIR... [--baseline RUN [--fail-on new]]
                                               one run folder from the run folders of a --shard set
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import manifest, merge
from .errors import DsfleetError


def _verify(args: argparse.Namespace) -> int:
    problems = manifest.verify(args.run_dir)
    if not problems and args.allowed_signers is not None:
        problems = manifest.verify_signature(args.run_dir, args.allowed_signers)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    signed = f", signed by {manifest.signer(args.run_dir, args.allowed_signers)}" if args.allowed_signers else ""
    print(f"{args.run_dir}: every artifact matches {manifest.NAME}{signed}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    print(manifest.sign(args.run_dir, args.key))
    return 0


def _prune(args: argparse.Namespace) -> int:
    for path in manifest.prune(args.reports, args.keep):
        print(f"deleted {path}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    code = merge.merge(args.out, args.shard_dirs, args.baseline, args.fail_on)
    print(f"{args.out}: merged {len(args.shard_dirs)} shards (results.json, summary.html, {manifest.NAME})")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        import pytest

        return int(pytest.main(["--pyargs", "dsfleet.checks", *argv[1:]]))
    parser = argparse.ArgumentParser(prog="dsfleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the fleet checks: every other argument goes to pytest")
    verify = sub.add_parser("verify", help="verify a run folder against its manifest.sha256 (and signature)")
    verify.add_argument("run_dir", type=Path)
    verify.add_argument("--allowed-signers", type=Path, metavar="FILE",
                        help="OpenSSH allowed_signers file: also require a valid manifest.sha256.sig by one of them")
    sign = sub.add_parser("sign", help="sign a run's manifest.sha256 with an SSH private key")
    sign.add_argument("run_dir", type=Path)
    sign.add_argument("--key", type=Path, required=True, metavar="FILE", help="SSH private key (ssh-keygen -Y sign)")
    prune = sub.add_parser("prune", help="delete all but the newest run folders")
    prune.add_argument("--reports", type=Path, default=Path("reports"), metavar="DIR", help="default: ./reports")
    prune.add_argument("--keep", type=int, required=True, metavar="N", help="run folders to keep (at least 1)")
    merging = sub.add_parser("merge", help="combine the run folders of a shard set (pytest --shard) into one")
    merging.add_argument("out", type=Path, metavar="OUT", help="the merged run folder (new or empty)")
    merging.add_argument("shard_dirs", type=Path, nargs="+", metavar="SHARD_DIR", help="each shard's run folder")
    merging.add_argument("--baseline", type=Path, metavar="RUN",
                         help="an earlier run folder (or its results.json): diff the merged results against it")
    merging.add_argument("--fail-on", choices=("any", "new"), default="any",
                         help="exit non-zero on any failure (default) or only on new ones (needs --baseline)")
    args = parser.parse_args(argv)
    try:
        return {"verify": _verify, "sign": _sign, "prune": _prune, "merge": _merge}[args.command](args)
    except DsfleetError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    raise SystemExit(main())
