"""Remote gatherer: the allowlist, host-key verification (clear and hashed known_hosts), error classes."""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko
import pytest

from dsfleet.inventory import RemoteAccess, RoleAccess
from dsfleet.remote import (ALLOWED, COMMANDS, KnownHostsPolicy, ProbeTarget, _classify, _known_hosts, commands_for,
                            probe, processes_for)


def remote(**kw: object) -> RemoteAccess:
    base = dict(concurrency=64, processes=0, connect_timeout_s=5.0, command_timeout_s=7.0, verify_host_keys=True,
                known_hosts=Path("/nonexistent"), ssh_config=None, roles={})
    base.update(kw)
    return RemoteAccess(**base)  # type: ignore[arg-type]


def test_allowlist_is_read_only_status_queries() -> None:
    for command in ALLOWED:
        assert command.startswith(("sc query ", "service ", "/opt/ds_agent/dsa_query -c Get", "rpm -q ",
                                   "/etc/init.d/")), command
        assert not any(word in command for word in ("restart", "stop", "start ", "config", "delete", ";", "&", "|"))
    assert commands_for("esxi", "nsx-v") == ("/etc/init.d/vShield-Endpoint-Mux status",)
    assert commands_for("esxi", "nsx-t") == ("/etc/init.d/nsx-context-mux status",)
    assert commands_for("windows", "nsx-t") == ("sc query vsepflt", "sc query vmci")
    assert set(COMMANDS) == {"windows", "dsva", "esxi:nsx-v", "esxi:nsx-t", "relay"} and COMMANDS["relay"] == ()


def test_relay_probe_is_a_validated_get() -> None:
    from dsfleet.remote import is_allowed
    from dsfleet.updatepath import relay_command

    command = relay_command("https://iaus.activeupdate.trendmicro.com/iau_server.dll", "http://proxy.corp:8080", 20)
    assert is_allowed(command) and "--request" not in command and "--data" not in command
    assert command.endswith("--proxy 'http://proxy.corp:8080' 'https://iaus.activeupdate.trendmicro.com/iau_server.dll'")
    for url, proxy in [("https://x/a';rm -rf /;'", None), ("http://plain/iau_server.dll", None),
                       ("https://x/iau_server.dll", "http://p:1/$(id)")]:
        with pytest.raises(ValueError):
            relay_command(url, proxy, 20)
    assert not is_allowed("curl -X POST https://x/") and not is_allowed("sc config vsepflt start= disabled")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[paramiko.PKey, paramiko.PKey]:
    import asyncssh

    out = []
    for name in ("a", "b"):
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(tmp_path / name))
        out.append(paramiko.Ed25519Key.from_private_key_file(str(tmp_path / name)))
    return out[0], out[1]


def test_known_hosts_policy_clear_and_hashed(tmp_path: Path, keys: tuple[paramiko.PKey, paramiko.PKey]) -> None:
    good, other = keys
    hashed = paramiko.HostKeys.hash_host("[10.0.0.9]:22")
    (tmp_path / "known_hosts").write_text(
        f"# comment\n[10.0.0.1]:2222 {good.get_name()} {good.get_base64()}\n"
        f"{hashed} {good.get_name()} {good.get_base64()}\n")
    policy = KnownHostsPolicy(_known_hosts(str(tmp_path / "known_hosts")), "kh")
    policy.missing_host_key(None, "[10.0.0.1]:2222", good)  # listed: accepted
    policy.missing_host_key(None, "[10.0.0.9]:22", good)  # hashed entry: accepted
    with pytest.raises(paramiko.BadHostKeyException):
        policy.missing_host_key(None, "[10.0.0.1]:2222", other)  # changed key: refused
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        policy.missing_host_key(None, "[10.0.0.2]:2222", good)  # unknown host: refused, never trusted blindly


@pytest.mark.parametrize("err,stage,status,text", [
    (paramiko.AuthenticationException("Authentication failed."), "connect", "auth failed", "authentication failed"),
    (paramiko.SSHException("Server '[h]:22' not found in known_hosts"), "connect", "host key rejected", "known_hosts"),
    (socket.timeout(), "connect", "timeout", "no answer within 5 s (connect)"),
    (socket.timeout(), "command", "timeout", "no answer within 7 s (command)"),
    (ConnectionRefusedError(111, "Connection refused"), "connect", "unreachable", "cannot connect"),
    (ValueError("odd"), "command", "error", "ValueError: odd"),
])
def test_classify(err: BaseException, stage: str, status: str, text: str) -> None:
    got_status, reason = _classify(err, stage, remote())
    assert got_status == status and text in reason


def test_probe_records_why_a_host_was_not_contacted() -> None:
    skipped = probe(ProbeTarget("windows", "vc/vm-1", "W", None, "the VM is suspended"), None, remote(), "nsx-t", None)
    assert (skipped.status, skipped.reason) == ("not probed", "the VM is suspended")
    unconfigured = probe(ProbeTarget("esxi", "vc/host-1", "esx-01", "esx-01"), None, remote(), "nsx-t", None)
    assert unconfigured.status == "not configured" and "remote.esxi" in (unconfigured.reason or "")


def test_unreachable_host_is_recorded_not_raised() -> None:
    access = RoleAccess(role="esxi", transport="ssh", user="root", port=9, password_env="X", key_file=None,
                        address="name")
    result = probe(ProbeTarget("esxi", "vc/host-1", "esx-01", "127.0.0.1"), access, remote(connect_timeout_s=2.0),
                   "nsx-t", "pw")
    assert result.status == "unreachable" and result.outputs == []


def test_processes_for() -> None:
    assert processes_for(remote(), 10) == 1
    assert processes_for(remote(processes=3), 10) == 3
    assert processes_for(remote(processes=3), 2) == 2
