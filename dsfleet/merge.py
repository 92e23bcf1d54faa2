"""``dsfleet merge OUT SHARD_DIR...``: the run folders of one shard set (``--shard``) become one run folder.

OUT gets one results.json (the union of the shards' results, each (check, object) from exactly one shard),
one verdict, one summary, the baseline diff over the merged set, a copy of every shard's folder under
``shards/<spec>/``, and one manifest.sha256 listing OUT's artifacts and each shard's own manifest. A shard set
with a shard missing, one given twice, or two shards judging the same object is bad input: nothing is written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import manifest, summary
from . import shard as shard_mod
from .baseline import PER_RESULT, RESULTS_VERSION, Diff, compare, load_doc, load_results, write_results
from .catalog import language
from .errors import InputError
from .fleet import Fleet
from .snapshot import load as load_snapshot
from .verdict import EVIDENCE_INCOMPLETE, NOT_COMPLIANT, judge

# A run's exit codes (dsfleet.fixtures.report.exit_code): findings 1, evidence incomplete 6.
EXIT = {EVIDENCE_INCOMPLETE: 6, NOT_COMPLIANT: 1}


@dataclass
class ShardRun:
    folder: Path
    shard: shard_mod.Shard
    doc: dict[str, Any]
    results: list[dict[str, Any]]


def read(folder: Path) -> ShardRun:
    """One shard's run folder: its artifacts must match its manifest, and its results.json name its shard."""
    problems = manifest.verify(folder)
    if problems:
        raise InputError(str(folder), manifest.NAME, "a shard's run folder whose artifacts match its manifest",
                         problems[0])
    doc, file = load_doc(folder)
    spec = doc.get("shard")
    if not isinstance(spec, str):
        raise InputError(str(file), "shard", "the spec of a shard run (pytest --shard SPEC)", spec)
    results: list[dict[str, Any]] = doc["results"]
    for r in results:
        # The merged summary shows each check's title, remediation and source: a result without them (a
        # version 3 file whose "checks" lacks its check) cannot be reported, so the set is refused. (A baseline
        # needs only check, object and outcome: load_doc reads one without them.)
        if not all(isinstance(r.get(key), str) for key in PER_RESULT):
            raise InputError(str(file), f"checks.{r['check']}", "the check's title, severity, source and "
                             "remediation (every check the results name)")
    return ShardRun(folder, shard_mod.parse(spec, f"{file}: shard"), doc, results)


def check_set(runs: list[ShardRun]) -> None:
    """One kind of shard, each spec once, none missing (InputError naming the first problem)."""
    first = runs[0]
    for run in runs:
        if (run.shard.kind, run.shard.n) != (first.shard.kind, first.shard.n):
            raise InputError(str(run.folder), "shard", f"a shard of the same set as {first.folder} "
                             f"({first.shard.spec})", run.shard.spec)
        if run.doc.get("lang") != first.doc.get("lang"):  # one run folder, one language in every report
            raise InputError(str(run.folder), "lang", f"the language of {first.folder} ({first.doc.get('lang')})",
                             run.doc.get("lang"))
    seen: dict[str, Path] = {}
    for run in runs:
        if run.shard.spec in seen:
            raise InputError(str(run.folder), "shard", f"each shard once (overlap: {seen[run.shard.spec]} is "
                             f"{run.shard.spec} too)", run.shard.spec)
        seen[run.shard.spec] = run.folder
    missing = sorted(set(expected(first)) - set(seen))
    if missing:
        raise InputError(", ".join(str(r.folder) for r in runs), "shard", "every shard of the set (missing: "
                         + ", ".join(missing) + ")", sorted(seen))


def expected(run: ShardRun) -> list[str]:
    """The specs of the whole set: every hash bucket, or every vCenter / cluster the shard's snapshot has."""
    if run.shard.kind == "hash":
        return [f"hash:{k}/{run.shard.n}" for k in range(1, run.shard.n + 1)]
    snap, _ = load_snapshot(run.folder / str(run.doc.get("snapshot") or "snapshot.json"))
    return [f"{run.shard.kind}:{name}" for name in shard_mod.names(Fleet(snap), run.shard.kind)]


def union(runs: list[ShardRun]) -> list[dict[str, Any]]:
    """Every shard's results, sorted as a run sorts them; an object judged by two shards is an overlap."""
    owner: dict[tuple[str, str], ShardRun] = {}
    for run in runs:
        for r in run.results:
            key = (r["check"], r["object"])
            if key in owner:
                raise InputError(str(run.folder), "results", f"each (check, object) in one shard only (overlap: "
                                 f"{owner[key].shard.spec} has it too)", f"{key[0]} {key[1]}")
            owner[key] = run
    return sorted((r for run in runs for r in run.results), key=lambda r: (r["check"], r["object"]))


def _waivers(runs: list[ShardRun]) -> list[dict[str, Any]]:
    """The waiver list (the same file in every shard), with the objects each waived in any shard."""
    merged = [dict(w, matched=[]) for w in runs[0].doc.get("waivers", [])]
    for run in runs:
        for mine, theirs in zip(merged, run.doc.get("waivers", [])):
            mine["matched"] += theirs.get("matched", [])
            if theirs.get("status") == "applied":
                mine["status"] = "applied"
    return merged


def merge(out: Path, folders: list[Path], baseline: Path | None = None, fail_on: str = "any") -> int:
    """Write the merged run folder; returns the run's exit code (0 compliant, 1 findings, 6 incomplete; with
    ``fail_on="new"`` and a baseline, findings only fail when some are new, as in a run)."""
    if fail_on == "new" and baseline is None:
        raise InputError("--fail-on new", "(option)", "--baseline RUN as well (new against what?)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(str(out), "(folder)", "a new or empty folder for the merged run", "not empty")
    runs = [read(folder) for folder in folders]
    if not runs:
        raise InputError("dsfleet merge", "SHARD_DIR", "at least one shard's run folder")
    check_set(runs)
    rows = union(runs)
    earlier, baseline_file = load_results(baseline) if baseline is not None else ([], None)
    diff = compare(rows, earlier, str(baseline_file)) if baseline_file is not None else None
    runs.sort(key=lambda r: (r.shard.k, r.shard.name))
    first = runs[0].doc
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    gaps = list(dict.fromkeys(g for run in runs for g in run.doc.get("evidence_gaps", [])))
    verdict = judge(rows)
    doc = {
        **first, "version": RESULTS_VERSION, "shard": None, "snapshot": None, "snapshot_sha256": None,
        "shards": [{"shard": run.shard.spec, "folder": f"shards/{run.shard.folder}",
                    "snapshot_sha256": run.doc.get("snapshot_sha256"), "verdict": run.doc.get("verdict"),
                    "started_utc": run.doc.get("started_utc"), "finished_utc": run.doc.get("finished_utc")}
                   for run in runs],
        "started_utc": min(str(run.doc.get("started_utc")) for run in runs),
        "finished_utc": max(str(run.doc.get("finished_utc")) for run in runs),
        "counts": counts, "waivers": _waivers(runs), "baseline": diff.as_doc() if diff else None,
        "verdict": verdict.as_dict(), "scope": dict(first.get("scope", {}), checks=len({r["check"] for r in rows}),
                                                    results=len(rows)),
        "evidence_gaps": gaps, "results": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        shutil.copytree(run.folder, out / "shards" / run.shard.folder, symlinks=True)
    write_results(out / "results.json", doc)
    history = [(language(doc.get("lang", "en"))("trend.baseline"), summary.failing_counts(earlier))] if diff else None
    summary.write(out, doc, diff, history)
    _write_manifest(out, runs)
    if verdict.status == NOT_COMPLIANT and diff is not None and fail_on == "new" and not diff.regressions():
        return 0
    return EXIT.get(verdict.status, 0)


def _write_manifest(out: Path, runs: list[ShardRun]) -> None:
    """OUT's artifacts, then each shard's manifest (which lists that shard's artifacts): one chain of hashes."""
    manifest.write(out, [f"shards/{run.shard.folder}/{manifest.NAME}" for run in runs])