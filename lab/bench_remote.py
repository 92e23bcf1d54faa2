"""Benchmark: the guest-driver probes on 1,000 lab guests, sequential against the concurrent gatherer.

    .venv/bin/python -m lab.bench_remote [--hosts 5] [--vms-per-host 200] [--latency-ms 100]
                                         [--sequential-sample 50] [--concurrency 256]

Every guest answers `chcp`, `sc query vsepflt` and `sc query vmci` over SSH with the latency injected per
command. The sequential run probes a sample and is extrapolated linearly (the output says so); the concurrent
runs probe every guest. Prints the CPU calibration loop, the load average (the machine may be shared: compare
runs by CPU per guest too), wall time, guests per second, speed-up, and a 10,000-guest extrapolation against
the goal (issue 12: the remote phase ≤ 40 s for 10,000 guests).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path

from dsfleet import inventory
from dsfleet.fleet import Fleet
from dsfleet.gather import gather, remote_passwords
from dsfleet.remote import commands_for, probe_all, processes_for

GOAL_10K_S = 40.0


def calibration() -> float:
    """Seconds of the reference CPU loop (issue 12's machine class: 0.5–0.9 s)."""
    started = time.perf_counter()
    sum(i * i for i in range(10**7))
    return time.perf_counter() - started


def _server_cpu(lab: object) -> float:
    """CPU seconds the lab's SSH server process has used (utime + stime from /proc)."""
    pid = [p for p in lab.procs if "lab.ssh_server" in " ".join(p.args)][0].pid  # type: ignore[attr-defined]
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):  # the server and the processes it forked (its group)
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # process group id
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _client_cpu() -> float:
    """CPU seconds of this process and its reaped children (the worker processes, once their pool is shut)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--vms-per-host", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--sequential-sample", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--ssh-client", choices=("asyncssh", "paramiko"), default="asyncssh")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the event loop of the asyncssh client and of the lab's SSH server")
    args = parser.parse_args()
    os.environ["DSFLEET_EVENT_LOOP"] = args.loop  # before the lab and the client's worker processes start
    import dsfleet.sshasync
    dsfleet.sshasync.USE_UVLOOP = args.loop == "uvloop"

    from lab.run import Lab

    print(f"CPU calibration: sum(i*i for i in range(10**7)) = {calibration():.2f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory(prefix="dsfleet-bench-") as tmp:
        lab = Lab("healthy", Path(tmp), hosts=args.hosts, vms_per_host=args.vms_per_host,
                  ssh_latency_ms=args.latency_ms)
        with lab:
            os.environ.update(lab.env)
            inv = inventory.load(lab.inventory_path)
            assert inv.remote is not None
            bulk = gather(dataclasses.replace(inv, remote=None))  # DSM + vCenter only: which guests exist
            targets = [t for t in Fleet(bulk).remote_targets({"windows": "ip"}) if t.role == "windows"]
            passwords = remote_passwords(inv)
            print(f"SSH client: {args.ssh_client}, event loop: {args.loop if args.ssh_client == 'asyncssh' else 'threads'}")
            print(f"lab: {len(targets)} Windows guests on {args.hosts} hosts, each its own SSH endpoint; "
                  f"{args.latency_ms} ms per command, {len(commands_for('windows', inv.nsx))} commands per guest")

            def run(concurrency: int, subset: int | None = None, processes: int = 1) -> tuple[float, int]:
                chosen = targets[:subset] if subset else targets
                remote = dataclasses.replace(inv.remote, concurrency=concurrency, processes=processes,
                                             ssh_client=args.ssh_client)
                started = time.perf_counter()
                probes = probe_all(chosen, remote, inv.nsx, passwords)
                ok = sum(p.status == "ok" for p in probes)
                return time.perf_counter() - started, ok

            seq_s, seq_ok = run(1, args.sequential_sample)
            per_guest = seq_s / args.sequential_sample
            sequential = per_guest * len(targets)
            print(f"\nsequential: {args.sequential_sample} guests in {seq_s:.1f} s ({per_guest * 1000:.0f} ms per "
                  f"guest, {seq_ok} ok) → {len(targets)} guests ≈ {sequential:.0f} s (extrapolated)")
            client_ms = 0.0
            for processes, label in ((1, "1 process"), (0, f"{processes_for(inv.remote, len(targets))} processes (auto)")):
                c0, s0 = _client_cpu(), _server_cpu(lab)
                wall, ok = run(args.concurrency, processes=processes)
                client, server = _client_cpu() - c0, _server_cpu(lab) - s0
                ten_k = wall * 10000 / len(targets)
                verdict = "met" if ten_k <= GOAL_10K_S else "missed"
                print(f"concurrent, bound {args.concurrency}, {label}: {len(targets)} guests in {wall:.1f} s ({ok} ok, "
                      f"{len(targets) / wall:.0f} guests/s) → {sequential / wall:.0f}x faster than sequential; "
                      f"10,000 guests ≈ {ten_k:.0f} s (goal ≤ {GOAL_10K_S:.0f} s: {verdict})")
                both = (client + server) / len(targets)
                print(f"   CPU per guest: suite {client / len(targets) * 1000:.1f} ms (all its processes), "
                      f"lab SSH server {server / len(targets) * 1000:.1f} ms — both on this machine's "
                      f"{os.cpu_count()} cores: 10,000 guests ≈ {10000 * both / (os.cpu_count() or 1):.0f} s "
                      f"of CPU per core")
                client_ms = client_ms or client / len(targets) * 1000
            cores = os.cpu_count() or 1
            print(f"\nreal fleet projection (the SSH servers' CPU is on the hosts, not here): 10,000 guests × "
                  f"{client_ms:.1f} ms client CPU / {cores} cores ≈ {10000 * client_ms / 1000 / cores:.0f} s, "
                  f"or the latency bound 10,000 × {per_guest:.2f} s / {args.concurrency} ≈ "
                  f"{10000 * per_guest / args.concurrency:.0f} s, whichever is larger")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
