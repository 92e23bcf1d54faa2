"""``python -m lab up SCENARIO`` starts a scenario and writes its inventory; ``python -m lab down`` stops it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .run import Lab, stop_dir
from .scenario import SCENARIO_DIR

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "reports" / "lab"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a scenario (stopping the one running in --dir)")
    up.add_argument("scenario", help="scenario name (" + ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yml")))
                    + ") or a YAML path")
    up.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    up.add_argument("--hosts", type=int, help="scale: ESXi hosts (first cluster only)")
    up.add_argument("--vms-per-host", type=int, help="scale: Windows VMs per host")
    up.add_argument("--vc-delay-ms", type=int, default=0, help="latency added to every vSphere call")
    up.add_argument("--dsm-latency-ms", type=int, default=0, help="latency added to every DSM call")
    up.add_argument("--ssh-latency-ms", type=int, default=0, help="latency added to every remote command")
    up.add_argument("--windows-transport", choices=("ssh", "winrm"), default="ssh",
                    help="how the Windows guests are reached: OpenSSH for Windows or WinRM (WS-Management)")
    down = sub.add_parser("down", help="stop the lab running in --dir")
    down.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    sub.add_parser("list", help="list the scenarios")
    args = parser.parse_args(argv)
    if args.command == "list":
        for path in sorted(SCENARIO_DIR.glob("*.yml")):
            print(path.stem)
        return 0
    if args.command == "down":
        stop_dir(args.dir)
        return 0
    lab = Lab(args.scenario, args.dir, hosts=args.hosts, vms_per_host=args.vms_per_host,
              vc_delay_ms=args.vc_delay_ms, dsm_latency_ms=args.dsm_latency_ms,
              ssh_latency_ms=args.ssh_latency_ms, windows_transport=args.windows_transport).start()
    print(f"lab {lab.fleet.name}: {len(lab.fleet.vms)} VMs, {len(lab.fleet.computers)} DSM computers")
    print(f"inventory: {lab.inventory_path}")
    print(f"secrets:   {lab.dir / 'lab.env'} (export them: set -a; . {lab.dir / 'lab.env'}; set +a)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
