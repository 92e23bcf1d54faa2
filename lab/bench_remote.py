"""Benchmark: the guest-driver probes on 1,000 lab guests, sequential against the concurrent gatherer.

    .venv/bin/python -m lab.bench_remote [--hosts 5] [--vms-per-host 200] [--latency-ms 100]
                                         [--sequential-sample 50] [--concurrency 64]

Every guest answers `sc query vsepflt` and `sc query vmci` over SSH with the latency injected per command.
The sequential run probes a sample and is extrapolated linearly (the output says so); the concurrent runs
probe every guest. Prints wall time, guests per second, speed-up and a 10,000-guest extrapolation.
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
from dsfleet.remote import probe_all, processes_for


def _server_cpu(lab: object) -> float:
    """CPU seconds the lab's SSH server process has used (utime + stime from /proc)."""
    pid = [p for p in lab.procs if "lab.ssh_server" in " ".join(p.args)][0].pid  # type: ignore[attr-defined]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--vms-per-host", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--sequential-sample", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    from lab.run import Lab

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
            print(f"lab: {len(targets)} Windows guests on {args.hosts} hosts, each its own SSH endpoint; "
                  f"{args.latency_ms} ms per command, 2 commands per guest")

            def run(concurrency: int, subset: int | None = None, processes: int = 1) -> tuple[float, int]:
                chosen = targets[:subset] if subset else targets
                remote = dataclasses.replace(inv.remote, concurrency=concurrency, processes=processes)
                started = time.perf_counter()
                probes = probe_all(chosen, remote, inv.nsx, passwords)
                ok = sum(p.status == "ok" for p in probes)
                return time.perf_counter() - started, ok

            seq_s, seq_ok = run(1, args.sequential_sample)
            per_guest = seq_s / args.sequential_sample
            sequential = per_guest * len(targets)
            print(f"\nsequential: {args.sequential_sample} guests in {seq_s:.1f} s ({per_guest * 1000:.0f} ms per "
                  f"guest, {seq_ok} ok) → {len(targets)} guests ≈ {sequential:.0f} s (extrapolated)")
            for processes, label in ((1, "1 process"), (0, f"{processes_for(inv.remote, len(targets))} processes (auto)")):
                c0, s0 = resource.getrusage(resource.RUSAGE_SELF), _server_cpu(lab)
                wall, ok = run(args.concurrency, processes=processes)
                c1, s1 = resource.getrusage(resource.RUSAGE_SELF), _server_cpu(lab)
                client = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
                ten_k = wall * 10000 / len(targets)
                print(f"concurrent, bound {args.concurrency}, {label}: {len(targets)} guests in {wall:.1f} s ({ok} ok, "
                      f"{len(targets) / wall:.0f} guests/s) → {sequential / wall:.0f}x faster than sequential; "
                      f"10,000 guests ≈ {ten_k:.0f} s (target ≤ 60 s: {'met' if ten_k <= 60 else 'missed'})")
                if processes == 1:
                    print(f"   CPU per guest: suite {client / len(targets) * 1000:.1f} ms (parent process), "
                          f"lab SSH server {(s1 - s0) / len(targets) * 1000:.1f} ms — both on this machine's "
                          f"{os.cpu_count()} cores")
                    client_ms = client / len(targets) * 1000
            cores = os.cpu_count() or 1
            print(f"\nreal fleet projection (the SSH servers' CPU is on the hosts, not here): 10,000 guests × "
                  f"{client_ms:.1f} ms client CPU / {cores} cores ≈ {10000 * client_ms / 1000 / cores:.0f} s, "
                  f"or the latency bound 10,000 × {per_guest:.2f} s / {args.concurrency} ≈ "
                  f"{10000 * per_guest / args.concurrency:.0f} s, whichever is larger")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
