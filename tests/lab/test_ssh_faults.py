"""The SSH stand-in's runtime faults (faults.json "ssh"), seen through the suite's own remote gatherer, and its
command log. Runs lab/ssh_server.py alone on loopback addresses (run inside a network namespace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import asyncssh
import pytest

from dsfleet.inventory import RemoteAccess, RoleAccess
from dsfleet.remote import ProbeTarget, probe

ROOT = Path(__file__).resolve().parents[2]
PORT = 2222
WINDOWS, DSVA = "127.0.77.1", "127.0.77.2"
PASSWORD = "lab-guest-pw"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("ssh-lab")
    host_key, client_key = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    host_key.write_private_key(str(folder / "host_key"))
    client_key.write_private_key(str(folder / "client_key"))
    client_key.write_public_key(str(folder / "client_key.pub"))
    os.chmod(folder / "client_key", 0o600)
    (folder / "ssh.json").write_text(json.dumps({
        "port": PORT, "host_key": str(folder / "host_key"), "authorized_keys": str(folder / "client_key.pub"),
        "nsx": "nsx-t", "ready_file": str(folder / "ssh.ready"),
        "endpoints": [{"address": WINDOWS, "role": "windows", "vsepflt": "running", "vmci": "missing"},
                      {"address": DSVA, "role": "dsva", "build": "20.0.1-3180"}]}))
    proc = subprocess.Popen([sys.executable, "-m", "lab.ssh_server", str(folder / "ssh.json")], cwd=ROOT,
                            env=dict(os.environ, DSFLEET_LAB_GUEST_PASSWORD=PASSWORD))
    try:
        deadline = time.monotonic() + 30
        while not (folder / "ssh.ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the SSH stand-in did not start"
            time.sleep(0.05)
        yield folder
    finally:
        proc.terminate()
        proc.wait(10)


def set_faults(folder: Path, ssh: dict[str, str]) -> None:
    tmp = folder / "faults.json.tmp"
    tmp.write_text(json.dumps({"ssh": ssh}))
    os.replace(tmp, folder / "faults.json")
    time.sleep(0.02)  # a new mtime even on coarse-grained file systems


# Both SSH clients must see every fault alike: asyncssh (the default) and testinfra's paramiko backend.
pytestmark = pytest.mark.parametrize("client", ["asyncssh", "paramiko"])


def run(folder: Path, role: str, address: str, client: str, known_hosts: Path | None = None) -> Any:
    remote = RemoteAccess(concurrency=4, processes=0, connect_timeout_s=1.0, command_timeout_s=1.0,
                          verify_host_keys=known_hosts is not None, known_hosts=known_hosts, ssh_config=None,
                          roles={}, ssh_client=client)
    access = (RoleAccess(role="windows", transport="ssh", user="Administrator", port=PORT, password_env="X",
                         key_file=None, address="name") if role == "windows" else
              RoleAccess(role="dsva", transport="ssh", user="dsva", port=PORT, password_env=None,
                         key_file=folder / "client_key", address="name"))
    return probe(ProbeTarget(role, f"vc/{address}", address, address), access, remote, "nsx-t",
                 PASSWORD if role == "windows" else None)


def test_japanese_guest_in_cp932(lab: Path, client: str) -> None:
    set_faults(lab, {WINDOWS: "ja-JP"})
    result = run(lab, "windows", WINDOWS, client)
    assert result.status == "ok", result.reason
    chcp, vsepflt, vmci = result.outputs
    assert chcp.stdout.strip() == "現在のコード ページ: 932" and "4  RUNNING" in vsepflt.stdout
    assert vmci.rc == 1060 and "指定されたサービスはインストールされたサービスとして存在しません。" in vmci.stdout


def test_german_labels_keep_the_numbers(lab: Path, client: str) -> None:
    set_faults(lab, {WINDOWS: "de-DE-labels"})
    result = run(lab, "windows", WINDOWS, client)
    assert result.status == "ok", result.reason
    assert "ZUSTAND" in result.outputs[1].stdout and "Der angegebene Dienst" in result.outputs[2].stdout


def test_english_guest_says_code_page_437(lab: Path, client: str) -> None:
    set_faults(lab, {})
    result = run(lab, "windows", WINDOWS, client)
    assert result.status == "ok" and result.outputs[0].stdout.strip() == "Active code page: 437"


@pytest.mark.parametrize("mode,status,reason", [
    ("silent", "timeout", "no answer within 1 s: timed out during the SSH handshake"),
    ("hang-command", "timeout", "no answer within 1 s: timed out during read (command service ds_agent status)"),
])
def test_silent_host_and_hung_command_are_bounded(lab: Path, mode: str, status: str, reason: str, client: str) -> None:
    set_faults(lab, {DSVA: mode})
    started = time.monotonic()
    result = run(lab, "dsva", DSVA, client)
    assert (result.status, result.reason) == (status, reason)
    assert time.monotonic() - started < 3


def test_a_command_ended_without_exit_status_is_not_evidence(lab: Path, client: str) -> None:
    """Output that looks whole but no exit-status (killed, or the channel closed early): never a pass."""
    set_faults(lab, {DSVA: "no-exit-status", WINDOWS: "no-exit-status"})
    for role, address in (("dsva", DSVA), ("windows", WINDOWS)):
        result = run(lab, role, address, client)
        assert result.status == "unexpected output" and "no exit status" in (result.reason or ""), result.reason
        assert result.outputs and result.outputs[0].stdout  # the answer is kept in the snapshot, as seen


def test_garbled_output_is_never_a_pass(lab: Path, client: str) -> None:
    set_faults(lab, {DSVA: "garbled", WINDOWS: "garbled"})
    assert run(lab, "dsva", DSVA, client).status == "unexpected output"
    assert run(lab, "windows", WINDOWS, client).status == "unexpected output"


def test_every_command_is_logged(lab: Path, client: str) -> None:
    set_faults(lab, {})
    run(lab, "windows", WINDOWS, client)
    lines = (lab / "commands-ssh.log").read_text().splitlines()
    assert f"{WINDOWS} Administrator chcp" in lines and f"{WINDOWS} Administrator sc query vmci" in lines
    assert f"{DSVA} dsva service ds_agent status" in lines


def test_host_keys_are_checked_against_known_hosts(lab: Path, client: str, tmp_path: Path) -> None:
    set_faults(lab, {})
    lab_key = asyncssh.read_private_key(str(lab / "host_key")).export_public_key().decode().strip()
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known = tmp_path / "known_hosts"
    name = f"[{DSVA}]:{PORT}"
    known.write_text(f"{name} {lab_key}\n")
    assert run(lab, "dsva", DSVA, client, known).status == "ok"
    known.write_text(f"{name} {other}\n")
    changed = run(lab, "dsva", DSVA, client, known)
    assert (changed.status, changed.reason) == ("host key rejected",
                                                f"the host key of {name} does not match known_hosts ({known})")
    known.write_text(f"[{WINDOWS}]:{PORT} {lab_key}\n")
    unknown = run(lab, "dsva", DSVA, client, known)
    assert unknown.status == "host key rejected" and "not found in known_hosts" in (unknown.reason or "")
    assert unknown.outputs == [] and changed.outputs == []
