"""Shard membership (every object in exactly one shard of a set) and the merge of shard run folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dsfleet import manifest, merge, shard
from dsfleet.errors import InputError
from dsfleet.fleet import Fleet, Target
from dsfleet.snapshot import VcenterFacts, VcHost

from .test_snapshot_join import computer, sample, vm


def fleet() -> Fleet:
    """Two vCenters; hosts in clusters a and b, one standalone; a VM on each host and one computer with no VM."""
    snap = sample()
    hosts = {"vc1": [("h1", "esx-01", "a"), ("h2", "esx-02", "b")], "vc2": [("h3", "esx-03", "a"),
                                                                          ("h4", "esx-04", None)]}
    snap.vcenters = [VcenterFacts(name=name, url=f"https://{name}/sdk", tls_verify=True,
                                  hosts=[VcHost(f"{name}/{moid}", host, cluster, "connected", False, "ESXi")
                                         for moid, host, cluster in rows],
                                  vms=[vm(f"{name}/vm-{moid}", f"WIN-{host}", None) for moid, host, _ in rows])
                     for name, rows in hosts.items()]
    for vc in snap.vcenters:
        for v in vc.vms:
            v.host_key = v.key.replace("vm-", "")
    snap.dsm.computers = [computer(9, "lonely-agent")]
    return Fleet(snap)


def targets(f: Fleet) -> list[Target | None]:
    """Every kind of subject: hosts, VMs on them, a computer with no VM, a fleet-wide row (None)."""
    hosts = [Target(h.name, host=h) for h in f.hosts.values()]
    vms = [Target(f"{v.name}@{h.name}", vm=v, host=h) for v in f.vms.values() for h in [f.hosts[v.host_key or ""]]]
    return [*hosts, *vms, Target("lonely-agent", computer=f.computers[9]), Target("update source from dsfleet"), None]


SETS = {
    "hash:1": ["hash:1/1"],
    "hash:3": ["hash:1/3", "hash:2/3", "hash:3/3"],
    "vcenter": ["vcenter:vc1", "vcenter:vc2"],
    "cluster": ["cluster:a", "cluster:b"],
}


@pytest.mark.parametrize("specs", SETS.values(), ids=SETS.keys())
def test_every_object_is_in_exactly_one_shard_of_a_set(specs: list[str]) -> None:
    f = fleet()
    shards = [shard.parse(s) for s in specs]
    for t in targets(f):
        owners = [s.spec for s in shards if shard.member(s, f, t)]
        assert len(owners) == 1, (t, owners)


def test_a_host_and_its_vms_and_probes_share_a_shard() -> None:
    # ISO-001 judges a host from the probes of its DSVA and VMs: they must be gathered in the host's shard.
    f = fleet()
    for spec in ("hash:1/3", "hash:2/3", "hash:3/3", "vcenter:vc2", "cluster:a"):
        s = shard.parse(spec)
        for v in f.vms.values():
            host = f.host_of(v)
            assert host is not None
            on_host = shard.member(s, f, Target(host.name, host=host))
            assert shard.member(s, f, Target(f"{v.name}@{host.name}", vm=v, host=host)) == on_host
            probe = f.remote_targets({})
            assert all(shard.probe_member(s, f, p) == on_host for p in probe if p.key in (v.key, host.key))


def test_fleet_wide_rows_belong_to_the_first_shard() -> None:
    f = fleet()
    assert [spec for spec in ("hash:1/2", "hash:2/2", "vcenter:vc1", "vcenter:vc2", "cluster:a", "cluster:b")
            if shard.member(shard.parse(spec), f, None)] == ["hash:1/2", "vcenter:vc1", "cluster:a"]
    standalone = next(h for h in f.hosts.values() if h.cluster is None)
    assert shard.member(shard.parse("cluster:a"), f, Target(standalone.name, host=standalone))


def test_vcenter_shard_keeps_its_own_objects() -> None:
    f = fleet()
    mine = [t.object_id for t in targets(f) if t is not None and shard.member(shard.parse("vcenter:vc2"), f, t)]
    assert mine == ["esx-03", "esx-04", "WIN-esx-03@esx-03", "WIN-esx-04@esx-04"]


@pytest.mark.parametrize("spec", ["", "hash", "hash:0/2", "hash:3/2", "hash:1/0", "hash:a/b", "vcenter:", "site:x",
                                  "hash:1-2"])
def test_malformed_specs_are_bad_input(spec: str) -> None:
    with pytest.raises(InputError, match="expected vcenter:NAME, cluster:NAME or hash:K/N"):
        shard.parse(spec)


def test_unknown_vcenter_or_cluster_is_bad_input() -> None:
    with pytest.raises(InputError, match=r"expected a cluster of the fleet \(a, b\), got 'cluster:c'"):
        shard.validate(shard.parse("cluster:c"), fleet())
    shard.validate(shard.parse("vcenter:vc1"), fleet())


def test_hash_buckets_are_stable() -> None:
    # The same object lands in the same bucket on every machine and Python version (no hash randomisation).
    assert shard.bucket("esx-01", 4) == int.from_bytes(hashlib.sha256(b"esx-01").digest()[:8], "big") % 4 + 1


# -- merge -------------------------------------------------------------------------------------------------


def result(check: str, obj: str, outcome: str = "pass") -> dict[str, Any]:
    return {"check": check, "object": obj, "outcome": outcome, "severity": "critical", "title": "t", "host": "",
            "identity": "", "observed": "o", "required": "r", "evidence": [], "remedy": "", "remediation": "",
            "guidance": "", "source": "s", "waiver": None, "case": "", "explains": [], "cause": None, "nodeid": "n"}


def shard_run(folder: Path, spec: str, results: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    doc = {"schema": "dsfleet-results", "version": 2, "dsfleet": "0.1.0", "lang": "en", "inventory": "lab",
           "snapshot": "snapshot.json", "snapshot_sha256": "0" * 64, "started_utc": "2026-11-22T00:00:00+00:00",
           "finished_utc": "2026-11-22T00:01:00+00:00", "counts": {}, "waivers": [], "baseline": None,
           "verdict": {}, "scope": {"inventory": "lab", "vcenters": 1, "esx_hosts": 2, "vms": 2, "dsm_computers": 2},
           "evidence_gaps": [], "snapshot_integrity": "gathered by this run", "results": results, "shard": spec}
    (folder / "results.json").write_text(json.dumps(doc))
    manifest.write(folder)
    return folder


def test_merge_unions_the_shards(tmp_path: Path) -> None:
    one = shard_run(tmp_path / "1", "hash:1/2", [result("BLD-001", "esx-01"), result("PRT-002", "vm-1", "fail")])
    two = shard_run(tmp_path / "2", "hash:2/2", [result("BLD-001", "esx-02")])
    assert merge.merge(tmp_path / "out", [two, one]) == 1  # a finding: exit 1, as a run
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["check"], r["object"]) for r in doc["results"]] == [
        ("BLD-001", "esx-01"), ("BLD-001", "esx-02"), ("PRT-002", "vm-1")]
    assert doc["verdict"]["status"] == "NOT COMPLIANT" and doc["counts"] == {"pass": 2, "fail": 1}
    assert [s["shard"] for s in doc["shards"]] == ["hash:1/2", "hash:2/2"]
    listed = (tmp_path / "out" / manifest.NAME).read_text()
    assert "  shards/hash-1-of-2/manifest.sha256" in listed and "  results.json" in listed
    assert (tmp_path / "out" / "summary.html").is_file()


@pytest.mark.parametrize("specs,objects,message", [
    (["hash:1/2", "hash:2/2"], [["esx-01"], ["esx-01"]], "overlap: hash:1/2 has it too), got 'BLD-001 esx-01'"),
    (["hash:1/4", "hash:2/4", "hash:4/4"], [["a"], ["b"], ["c"]], "missing: hash:3/4"),
    (["hash:1/2", "hash:1/2"], [["a"], ["b"]], "each shard once (overlap:"),
    (["hash:1/2", "hash:1/3"], [["a"], ["b"]], "a shard of the same set as"),
])
def test_merge_refuses_a_bad_shard_set(tmp_path: Path, specs: list[str], objects: list[list[str]],
                                       message: str) -> None:
    folders = [shard_run(tmp_path / str(i), spec, [result("BLD-001", o) for o in objs])
               for i, (spec, objs) in enumerate(zip(specs, objects))]
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge.merge(tmp_path / "out", folders)
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_run_that_is_no_shard_or_was_edited(tmp_path: Path) -> None:
    plain = shard_run(tmp_path / "plain", "hash:1/1", [result("BLD-001", "a")])
    doc = json.loads((plain / "results.json").read_text())
    del doc["shard"]
    (plain / "results.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="manifest.sha256: expected a shard's run folder whose artifacts match"):
        merge.merge(tmp_path / "out", [plain])
    manifest.write(plain)
    with pytest.raises(InputError, match="shard: expected the spec of a shard run"):
        merge.merge(tmp_path / "out", [plain])


def test_merge_diffs_the_merged_set_against_a_baseline(tmp_path: Path) -> None:
    before = shard_run(tmp_path / "before", "hash:1/1", [result("BLD-001", "esx-01", "fail"), result("BLD-001", "esx-02")])
    one = shard_run(tmp_path / "1", "hash:1/2", [result("BLD-001", "esx-01")])
    two = shard_run(tmp_path / "2", "hash:2/2", [result("BLD-001", "esx-02", "fail")])
    merge.merge(tmp_path / "out", [one, two], baseline=before)
    diff = json.loads((tmp_path / "out" / "results.json").read_text())["baseline"]
    assert diff["fixed"] == [{"check": "BLD-001", "object": "esx-01", "outcome": "pass"}]
    assert diff["new_failures"] == [{"check": "BLD-001", "object": "esx-02", "outcome": "fail"}]


def test_the_ci_examples_list_a_complete_shard_set() -> None:
    # A copied example must merge: its matrix lists every shard of one set (merge refuses anything else).
    import yaml

    from ..conftest import ROOT

    examples = ROOT / ".ci" / "examples"
    github = yaml.safe_load((examples / "github-actions.yml").read_text())["jobs"]["shard"]["strategy"]["matrix"]
    gitlab = yaml.safe_load((examples / "gitlab-ci.yml").read_text())["dsfleet-shard"]["parallel"]["matrix"][0]
    for specs in (github["shard"], gitlab["DSFLEET_SHARD"]):
        shards = [shard.parse(s) for s in specs]
        assert sorted(s.spec for s in shards) == [f"hash:{k}/{len(specs)}" for k in range(1, len(specs) + 1)]


def test_a_merge_refuses_shards_of_other_sets_twice_missing_or_in_another_language() -> None:
    from dsfleet.merge import ShardRun, check_set

    def run(spec: str, lang: str = "en") -> ShardRun:
        return ShardRun(Path(f"/runs/{spec.replace(':', '-').replace('/', '-')}"), shard.parse(spec),
                        {"lang": lang}, [])

    check_set([run("hash:1/2"), run("hash:2/2")])
    for runs, field, got in (([run("hash:1/2"), run("hash:2/3")], "shard", "'hash:2/3'"),
                             ([run("hash:1/2"), run("hash:1/2")], "shard", "'hash:1/2'"),
                             ([run("hash:1/2")], "shard", "['hash:1/2']"),
                             ([run("hash:1/2"), run("hash:2/2", "ja")], "lang", "'ja'")):
        with pytest.raises(InputError) as err:
            check_set(runs)
        assert f": {field}: expected " in str(err.value) and str(err.value).endswith(f"got {got}"), str(err.value)
