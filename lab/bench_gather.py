"""Benchmark: bulk gatherers against per-object calls on a large lab fleet (not a timed test).

    .venv/bin/python -m lab.bench_gather [--hosts 50] [--vms-per-host 200] [--latency-ms 2] [--sample 500] [--full]

Starts the lab at scale with the latency injected into every vSphere and DSM call, then runs each
gatherer in its own process (so peak RSS is its own) and prints wall time, CPU time (the lab's servers'
not included), API calls and peak memory.
The per-object baselines read ``--sample`` objects and extrapolate linearly to the whole fleet unless
``--full`` is given; the output says which.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pyVmomi import vim

ROOT = Path(__file__).resolve().parent.parent


def _child(mode: str, inventory: str, sample: int) -> dict[str, Any]:
    from dsfleet import inventory as inv_mod
    from dsfleet import vcenter
    from dsfleet.gather import DSM_EXPAND, dsm_client, gather_dsm

    inv = inv_mod.load(inventory)
    started, cpu_started = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"mode": mode}
    if mode == "gather":  # what a run does: both sources concurrently, then the join
        import dataclasses

        from dsfleet.gather import gather
        # The bulk API gather only: host commands, the update path and events have their own benchmark.
        snap = gather(dataclasses.replace(inv, remote=None, update_source=None, events=None))
        errors = [e for e in [snap.dsm.error] + [vc.error for vc in snap.vcenters] if e]
        out.update(objects=len(snap.dsm.computers) + sum(len(vc.vms) for vc in snap.vcenters),
                   calls=snap.dsm.api_calls + sum(vc.api_calls for vc in snap.vcenters), error="; ".join(errors),
                   matched=len(snap.join.matches))
    elif mode == "bulk-dsm":
        facts = gather_dsm(inv)
        out.update(objects=len(facts.computers), calls=facts.api_calls, error=facts.error)
    elif mode == "bulk-vcenter":
        ep = inv.vcenters[0]
        facts = vcenter.gather(ep, inv.secret(ep.password_env, "vcenters[0].password_env"))
        out.update(objects=len(facts.vms), calls=facts.api_calls, error=facts.error)
    elif mode == "naive-dsm":
        client = dsm_client(inv)
        ids = [c["ID"] for c in client.search_computers([], page_size=inv.dsm.page_size)]
        for cid in ids[:sample]:
            client._request("GET", f"/api/computers/{cid}", params=[("expand", e) for e in DSM_EXPAND]).json()
        out.update(objects=min(sample, len(ids)), total=len(ids), calls=client.calls)
    elif mode == "naive-vcenter":
        ep = inv.vcenters[0]
        si = vcenter.connect(ep, inv.secret(ep.password_env, "vcenters[0].password_env"))
        counter = vcenter.CallCounter()
        counter.wrap(si._stub)
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        vms = list(view.view)
        for vm in vms[:sample]:  # what a script that walks objects does: one call per property read
            _ = (vm.name, vm.runtime.powerState, vm.runtime.host.name, vm.config.uuid, vm.config.instanceUuid,
                 vm.config.guestId, vm.config.template, vm.guest.guestFamily, vm.guest.toolsRunningStatus,
                 vm.guest.toolsVersionStatus2, vm.guest.hostName)
        out.update(objects=min(sample, len(vms)), total=len(vms), calls=counter.calls)
    out["seconds"] = time.perf_counter() - started
    # CPU beside wall: on a shared 2-core machine the wall time moves with the load, the CPU much less.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["cpu"] = time.process_time() - cpu_started + children.ru_utime + children.ru_stime
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out


def calibration_seconds() -> float:
    started = time.perf_counter()
    sum(i * i for i in range(10**7))
    return time.perf_counter() - started


def _run(mode: str, inventory: Path, env: dict[str, str], sample: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "lab.bench_gather", "--child", mode, "--inventory", str(inventory),
                           "--sample", str(sample)], cwd=ROOT, env=dict(os.environ, **env), capture_output=True,
                          text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--vms-per-host", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=2)
    parser.add_argument("--sample", type=int, default=500, help="objects the per-object baselines read")
    parser.add_argument("--full", action="store_true", help="per-object baselines read every object")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--inventory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.inventory, args.sample)))
        return 0

    from lab.run import Lab

    with tempfile.TemporaryDirectory(prefix="dsfleet-bench-") as tmp:
        started = time.perf_counter()
        lab = Lab("healthy", Path(tmp), hosts=args.hosts, vms_per_host=args.vms_per_host,
                  vc_delay_ms=args.latency_ms, dsm_latency_ms=args.latency_ms)
        with lab:
            print(f"lab: {len(lab.fleet.vms)} VMs on {args.hosts} hosts, {len(lab.fleet.computers)} DSM computers, "
                  f"{args.latency_ms} ms per API call; started in {time.perf_counter() - started:.1f} s")
            sample = 10**9 if args.full else args.sample
            rows = {m: _run(m, lab.inventory_path, lab.env, sample)
                    for m in ("gather", "bulk-dsm", "bulk-vcenter", "naive-dsm", "naive-vcenter")}
    print(f"\n{'gatherer':<16}{'objects':>9}{'API calls':>12}{'wall s':>10}{'CPU s':>8}{'peak RSS MB':>13}")
    for mode, r in rows.items():
        print(f"{mode:<16}{r['objects']:>9}{r['calls']:>12}{r['seconds']:>10.2f}{r['cpu']:>8.2f}"
              f"{r['peak_rss_mb']:>13.0f}")
    print()
    for system in ("dsm", "vcenter"):
        bulk, naive = rows[f"bulk-{system}"], rows[f"naive-{system}"]
        scale = naive["total"] / naive["objects"]
        calls, secs = naive["calls"] * scale, naive["seconds"] * scale
        how = "measured" if scale == 1 else f"extrapolated x{scale:.1f} from {naive['objects']} objects"
        print(f"{system}: per-object ≈ {calls:,.0f} calls / {secs:,.1f} s ({how}); bulk {bulk['calls']} calls / "
              f"{bulk['seconds']:.2f} s → {calls / max(bulk['calls'], 1):,.0f}x fewer calls, "
              f"{secs / bulk['seconds']:,.0f}x faster")
    g = rows["gather"]
    print(f"CPU calibration sum(i*i for i in range(10**7)): {calibration_seconds():.2f} s; {os.cpu_count()} CPUs")
    if g.get("error"):
        print(f"gather reported errors: {g['error']}")
    naive_calls = sum(rows[f"naive-{s}"]["calls"] * rows[f"naive-{s}"]["total"] / rows[f"naive-{s}"]["objects"]
                      for s in ("dsm", "vcenter"))
    print(f"dsfleet gather (DSM and vCenter concurrently, then the join of {g['matched']} computers): "
          f"{g['seconds']:.2f} s wall ({g['cpu']:.2f} s CPU, its worker processes included), {g['calls']} API calls, "
          f"peak RSS {g['peak_rss_mb']:.0f} MB "
          f"(targets: <= 5 s: {'met' if g['seconds'] <= 5 else 'MISSED'}; >= 20x fewer calls than per-object: "
          f"{naive_calls / g['calls']:,.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
