"""A SHA-256 manifest of a run's artifacts, and its verification (``python -m dsfleet verify RUN``).

The manifest uses the ``sha256sum`` format, so ``sha256sum -c manifest.sha256`` checks it too.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

from .errors import InputError

NAME = "manifest.sha256"
ARTIFACTS = ("snapshot.json", "results.json", "report.html", "junit.xml", "summary.html", "summary.md")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()  # read and hashed in C, block by block


def write(run_dir: Path, nested: Iterable[str] = ()) -> Path:
    """Hash the run's artifacts; ``nested``: manifests in sub-folders (a merged run's shards, e.g.
    ``shards/hash-1-of-2/manifest.sha256``), which :func:`verify` then checks with what they list."""
    names = [name for name in ARTIFACTS if (run_dir / name).is_file()] + list(nested)
    lines = [f"{_sha256(run_dir / name)}  {name}\n" for name in names]
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
        parts = name.split("/")
        nested = len(parts) > 1  # only a sub-folder's own manifest, never a path out of the run folder
        if len(digest) != 64 or not name or (nested and (parts[-1] != NAME or {"", ".", ".."} & set(parts))):
            problems.append(f"{path}: line {number}: expected '<sha256>  <file name>'")
            continue
        target = run_dir / name
        if not target.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(target) != digest:
            problems.append(f"{name}: changed since the run (sha256 differs)")
        elif nested:
            folder = name.rpartition("/")[0]
            problems += [f"{folder}/{problem}" for problem in verify(target.parent)]
    return problems


# -- signatures (OpenSSH's ssh-keygen -Y): an edited run cannot be re-hashed into a clean one -------------

NAMESPACE = "dsfleet-manifest"  # ssh-keygen -n: a signature made for something else never verifies here
SIGNATURE = NAME + ".sig"


def _ssh_keygen(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["ssh-keygen", *args], input=stdin, capture_output=True, timeout=30,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise InputError("ssh-keygen", "(program)", "OpenSSH's ssh-keygen on PATH (package openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise InputError("ssh-keygen", "(program)", "an answer within 30 s (a key with a passphrase needs "
                         "ssh-agent)") from None


def sign(run_dir: Path, key: Path) -> str:
    """Sign the run's manifest with an SSH private key; returns where the signature was written."""
    path = run_dir / NAME
    if not path.is_file():
        raise InputError(str(path), "(file)", "a manifest written by dsfleet (sign a finished run)")
    (run_dir / SIGNATURE).unlink(missing_ok=True)
    done = _ssh_keygen("-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(path))
    if done.returncode != 0:
        raise InputError(str(key), "(key)", "an SSH private key ssh-keygen can sign with",
                         done.stderr.decode(errors="replace").strip())
    return str(run_dir / SIGNATURE)


def signer(run_dir: Path, allowed_signers: Path) -> str | None:
    """The principal of allowed_signers whose key made the manifest's signature, if any."""
    done = _ssh_keygen("-Y", "find-principals", "-s", str(run_dir / SIGNATURE), "-f", str(allowed_signers))
    principals = done.stdout.decode(errors="replace").split()
    return principals[0] if done.returncode == 0 and principals else None


def verify_signature(run_dir: Path, allowed_signers: Path) -> list[str]:
    """Problems with the manifest's signature (empty: signed, for this namespace, by an allowed signer)."""
    if not allowed_signers.is_file():
        return [f"{allowed_signers}: (file): expected an OpenSSH allowed_signers file"]
    if not (run_dir / SIGNATURE).is_file():
        return [f"{SIGNATURE}: missing (sign the run with: dsfleet sign {run_dir} --key FILE)"]
    principal = signer(run_dir, allowed_signers)
    if principal is None:
        return [f"{SIGNATURE}: not made by any key in {allowed_signers}"]
    done = _ssh_keygen("-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", NAMESPACE,
                       "-s", str(run_dir / SIGNATURE), stdin=(run_dir / NAME).read_bytes())
    if done.returncode != 0:
        return [f"{SIGNATURE}: does not verify for {principal}: {done.stderr.decode(errors='replace').strip()}"]
    return []


# -- housekeeping ------------------------------------------------------------------------------------------

_RUN_NAME = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?$")


def prune(reports: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest run folders under reports/ (and never the one reports/latest names)."""
    if keep < 1:
        raise InputError("--keep", "(option)", "at least 1 (the newest run is always kept)", keep)
    runs = []
    for path in reports.iterdir() if reports.is_dir() else []:
        match = _RUN_NAME.match(path.name)
        if match and path.is_dir() and not path.is_symlink():
            runs.append(((match.group(1), int(match.group(2) or 0)), path))
    latest = (reports / "latest").resolve() if (reports / "latest").is_symlink() else None
    doomed = [path for _, path in sorted(runs, reverse=True)[keep:] if path.resolve() != latest]
    for path in doomed:
        shutil.rmtree(path)
    return doomed
