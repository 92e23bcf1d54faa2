"""A SHA-256 manifest of a run's artifacts, and its verification (``python -m dsfleet verify RUN``).

The manifest uses the ``sha256sum`` format, so ``sha256sum -c manifest.sha256`` checks it too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

NAME = "manifest.sha256"
ARTIFACTS = ("snapshot.json", "results.json", "report.html", "junit.xml", "summary.html", "summary.md")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(run_dir: Path) -> Path:
    lines = [f"{_sha256(run_dir / name)}  {name}\n" for name in ARTIFACTS if (run_dir / name).is_file()]
    path = run_dir / NAME
    path.write_text("".join(lines), encoding="utf-8")
    return path


def snapshot_integrity(snapshot: Path, sha256: str) -> str:
    """What the manifest beside a snapshot says of it: "match", "mismatch: ..." or "none: ..."."""
    path = snapshot.parent / NAME
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return f"none: no {NAME} beside {snapshot.name}, its origin cannot be verified"
    except (OSError, UnicodeDecodeError) as err:
        return f"mismatch: {path} is unreadable ({err})"
    listed = {name: digest for digest, _, name in (line.partition("  ") for line in lines)}
    if snapshot.name not in listed:
        return f"mismatch: {path} does not list {snapshot.name}"
    if listed[snapshot.name] != sha256:
        return (f"mismatch: {snapshot.name} was changed after the run that wrote it (sha256 {sha256[:16]}…, "
                f"{NAME} says {listed[snapshot.name][:16]}…)")
    return f"match: {snapshot.name} is the one {path} lists"


def verify(run_dir: Path) -> list[str]:
    """Problems found (empty: every artifact listed is present and unchanged)."""
    path = run_dir / NAME
    if not path.is_file():
        return [f"{path}: (file): expected a manifest written by dsfleet"]
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name:
            problems.append(f"{path}: line {number}: expected '<sha256>  <file name>'")
            continue
        target = run_dir / name
        if not target.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(target) != digest:
            problems.append(f"{name}: changed since the run (sha256 differs)")
    return problems
