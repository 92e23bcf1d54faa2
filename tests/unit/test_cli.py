"""The dsfleet command: manifest signatures (ssh-keygen -Y), verification, pruning old runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dsfleet import manifest
from dsfleet.__main__ import main


def _run_dir(tmp_path: Path, name: str = "20261122T050000Z") -> Path:
    run = tmp_path / "reports" / name
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"schema": "dsfleet-results"}')
    (run / "snapshot.json").write_text("{}")
    manifest.write(run)
    return run


@pytest.fixture
def signing_key(tmp_path: Path) -> tuple[Path, Path]:
    """An ed25519 key without passphrase and the allowed_signers file that trusts it."""
    key = tmp_path / "auditor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "auditor", "-f", str(key)], check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"auditor@example.org namespaces=\"{manifest.NAMESPACE}\" {key.with_suffix('.pub').read_text()}")
    return key, allowed


def test_a_signed_run_verifies_and_an_edited_one_cannot_be_rehashed(tmp_path: Path, signing_key: tuple[Path, Path],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    key, allowed = signing_key
    run = _run_dir(tmp_path)
    assert main(["verify", str(run), "--allowed-signers", str(allowed)]) == 1
    assert "manifest.sha256.sig: missing" in capsys.readouterr().err
    assert main(["sign", str(run), "--key", str(key)]) == 0
    assert main(["verify", str(run), "--allowed-signers", str(allowed)]) == 0
    assert "signed by auditor@example.org" in capsys.readouterr().out
    # Edit an artifact and re-hash it into the manifest: the hashes agree again, the signature does not.
    (run / "results.json").write_text('{"schema": "dsfleet-results", "edited": true}')
    manifest.write(run)
    assert main(["verify", str(run)]) == 0
    assert main(["verify", str(run), "--allowed-signers", str(allowed)]) == 1
    assert "does not verify" in capsys.readouterr().err


def test_a_signature_by_someone_else_is_refused(tmp_path: Path, signing_key: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _, allowed = signing_key
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    run = _run_dir(tmp_path)
    assert main(["sign", str(run), "--key", str(other)]) == 0
    assert main(["verify", str(run), "--allowed-signers", str(allowed)]) == 1
    assert "not made by any key in" in capsys.readouterr().err


def test_sign_needs_a_usable_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    (tmp_path / "nokey").write_text("not a key")
    assert main(["sign", str(run), "--key", str(tmp_path / "nokey")]) == 4
    assert capsys.readouterr().err.startswith(f"ERROR: {tmp_path / 'nokey'}: (key): expected an SSH private key")


def test_prune_keeps_the_newest_and_latest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["20261120T050000Z", "20261121T050000Z", "20261122T050000Z", "20261122T050000Z-1"]
    runs = [_run_dir(tmp_path, n) for n in names]
    (tmp_path / "reports" / "lab").mkdir()  # not a run folder: never touched
    (tmp_path / "reports" / "latest").symlink_to(names[0])
    assert main(["prune", "--reports", str(tmp_path / "reports"), "--keep", "2"]) == 0
    left = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert left == ["20261120T050000Z", "20261122T050000Z", "20261122T050000Z-1", "lab", "latest"]
    assert f"deleted {runs[1]}" in capsys.readouterr().out
    assert main(["prune", "--reports", str(tmp_path / "reports"), "--keep", "0"]) == 4
