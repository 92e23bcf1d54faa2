"""Shards: one run judges only part of the fleet, so a large site runs several as parallel CI jobs and merges
their run folders (``dsfleet merge``).

A spec is ``vcenter:NAME``, ``cluster:NAME`` or ``hash:K/N`` (the K-th of N buckets of a hash, 1-based).
Every shard reads the DSM and every vCenter (a few bulk calls): the join needs every VM to tell a computer
in another shard from one that no VM backs. What a shard saves is the remote probes and the checks of the
objects outside it.

Where an object belongs:
- an object on an ESXi host (the host, its DSVAs, its VMs) goes with its host: by the host's vCenter, its
  cluster, or the hash of the host's name. ISO-001 judges a host from the probes of its own VMs, so a host and
  its VMs are never split;
- an object with no host (a relay or agent no VM backs, the update-source probes, events of computers the DSM
  does not list) goes, in hash shards, by the hash of its name;
- fleet-wide rows (a subject set that could not be read, an empty scope) and, in vcenter/cluster shards, the
  objects with no host (hosts outside any cluster included) belong to the *first* shard: hash 1/N, or the
  vCenter / cluster whose name sorts first.
So the shards of one set judge every object of the unsharded run exactly once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import InputError
from .fleet import Fleet, Target
from .allowlist import ProbeTarget

KINDS = ("vcenter", "cluster", "hash")
_HASH = re.compile(r"^([1-9][0-9]*)/([1-9][0-9]*)$")
EXPECTED = "vcenter:NAME, cluster:NAME or hash:K/N (1 <= K <= N)"


@dataclass(frozen=True)
class Shard:
    kind: str  # one of KINDS
    name: str = ""  # vcenter / cluster name
    k: int = 0  # hash bucket, 1-based
    n: int = 0  # hash buckets

    @property
    def spec(self) -> str:
        return f"hash:{self.k}/{self.n}" if self.kind == "hash" else f"{self.kind}:{self.name}"

    @property
    def folder(self) -> str:
        """The spec as a folder name (``hash-1-of-4``, ``vcenter-vc-east``)."""
        text = f"hash-{self.k}-of-{self.n}" if self.kind == "hash" else f"{self.kind}-{self.name}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def parse(spec: str, where: str = "--shard") -> Shard:
    kind, sep, value = spec.partition(":")
    if not sep or kind not in KINDS or not value.strip():
        raise InputError(where, "(option)", EXPECTED, spec)
    if kind != "hash":
        return Shard(kind, name=value.strip())
    match = _HASH.match(value.strip())
    if match is None or int(match.group(1)) > int(match.group(2)):
        raise InputError(where, "(option)", EXPECTED, spec)
    return Shard(kind, k=int(match.group(1)), n=int(match.group(2)))


def bucket(key: str, n: int) -> int:
    """1-based bucket of ``key`` among ``n``: stable across runs, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % n + 1


def names(fleet: Fleet, kind: str) -> list[str]:
    """The sorted vCenter or cluster names a shard set of ``kind`` must cover (the hosts' clusters)."""
    if kind == "vcenter":
        return sorted({vc.name for vc in fleet.snap.vcenters})
    return sorted({h.cluster for h in fleet.hosts.values() if h.cluster})


def validate(shard: Shard, fleet: Fleet) -> None:
    """A vCenter or cluster name the fleet does not have is bad input, not a green run over nothing (judged
    only when every vCenter was read: otherwise the cluster may be in the one that was not)."""
    if shard.kind == "hash" or any(vc.error for vc in fleet.snap.vcenters):
        return
    known = names(fleet, shard.kind)
    if shard.name not in known:
        raise InputError("--shard", "(option)", f"a {shard.kind} of the fleet ({', '.join(known) or 'none'})",
                         shard.spec)


def _owns_fleet_wide(shard: Shard, fleet: Fleet) -> bool:
    if shard.kind == "hash":
        return shard.k == 1
    known = names(fleet, shard.kind)
    return bool(known) and shard.name == known[0]


def member(shard: Shard, fleet: Fleet, target: Target | None) -> bool:
    """Whether the shard judges ``target`` (None: a fleet-wide row, such as an unreadable subject set)."""
    if target is None:
        return _owns_fleet_wide(shard, fleet)
    host = target.host
    if shard.kind == "hash":
        return bucket(host.name if host is not None else target.object_id, shard.n) == shard.k
    if host is None or (shard.kind == "cluster" and not host.cluster):
        return _owns_fleet_wide(shard, fleet)
    placed = host.key.partition("/")[0] if shard.kind == "vcenter" else host.cluster
    return placed == shard.name


def probe_member(shard: Shard, fleet: Fleet, probe: ProbeTarget) -> bool:
    """Whether the shard contacts this remote host: the one whose checks it judges (an ESXi host by its key,
    a DSVA or guest VM by the host it runs on)."""
    host = fleet.hosts.get(probe.key)
    vm = fleet.vms.get(probe.key)
    if host is None and vm is not None:
        host = fleet.host_of(vm)
    if host is None:
        return member(shard, fleet, Target(f"{probe.name}@?", vm=vm))
    return member(shard, fleet, Target(host.name, host=host))
