"""Remote gatherer: the allowlist, host-key verification (clear and hashed known_hosts), error classes in plain
words, Windows console code pages, bounds on silent servers and hung commands (one watchdog thread), a host's
commands in flight together on its one connection, and the ssh_config read once per version."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import paramiko
import pytest
from testinfra.backend.base import BaseBackend, CommandResult

from dsfleet import remote as remote_mod
from dsfleet.inventory import RemoteAccess, RoleAccess
from dsfleet.remote import (ALLOWED, COMMANDS, KnownHostsPolicy, ProbeTarget, _classify, _known_hosts, commands_for,
                            console_codec, probe, processes_for)

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "windows"


def remote(**kw: object) -> RemoteAccess:
    base = dict(concurrency=64, processes=0, connect_timeout_s=5.0, command_timeout_s=7.0, verify_host_keys=True,
                known_hosts=Path("/nonexistent"), ssh_config=None, roles={}, ssh_client="paramiko")
    base.update(kw)
    return RemoteAccess(**base)  # type: ignore[arg-type]


def test_allowlist_is_read_only_status_queries() -> None:
    for command in ALLOWED:
        assert command in ("chcp", "certutil -store Root",
                           "powershell -NoProfile -NonInteractive -Command Get-HotFix") or command.startswith(
            ("sc query ", "service ", "/opt/ds_agent/dsa_query -c Get", "rpm -q ", "/etc/init.d/")), command
        assert not any(word in command for word in ("restart", "stop", "start ", "config", "delete", ";", "&", "|"))
    assert commands_for("esxi", "nsx-v") == ("/etc/init.d/vShield-Endpoint-Mux status",)
    assert commands_for("esxi", "nsx-t") == ("/etc/init.d/nsx-context-mux status",)
    assert commands_for("windows", "nsx-t") == ("chcp", "sc query vsepflt", "sc query vmci")
    assert set(COMMANDS) == {"windows", "dsva", "esxi:nsx-v", "esxi:nsx-t", "relay", "windows_agent"}
    assert COMMANDS["relay"] == ()


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
    (socket.timeout(), "connect", "timeout", "no answer within 5 s: timed out during connect"),
    (remote_mod.CommandTimeout("sc query vmci"), "command", "timeout",
     "no answer within 7 s: timed out during read (command sc query vmci)"),
    (paramiko.SSHException("No existing session"), "connect", "timeout", "timed out during the SSH handshake"),
    (paramiko.AuthenticationException("Authentication timeout."), "connect", "timeout", "during authentication"),
    (ConnectionRefusedError(111, "Connection refused"), "connect", "unreachable", "cannot connect: connection refused"),
    (paramiko.ssh_exception.NoValidConnectionsError({("127.0.0.1", 9): ConnectionRefusedError(111, "refused")}),
     "connect", "unreachable", "cannot connect: connection refused"),
    (ValueError("odd"), "command", "error", "ValueError: odd"),
])
def test_classify(err: BaseException, stage: str, status: str, text: str) -> None:
    got_status, reason = _classify(err, stage, remote(), "sc query vmci" if stage == "command" else None)
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
    assert result.reason == "cannot connect: connection refused (nothing listens on that address and port)"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts and never speaks (no SSH banner): a hung sshd, or a tarpit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in [*held, listener]:
        conn.close()


def test_silent_ssh_server_times_out_in_the_handshake_within_the_connect_timeout(silent_server: int) -> None:
    access = RoleAccess(role="esxi", transport="ssh", user="root", port=silent_server, password_env="X",
                        key_file=None, address="name")
    started = time.monotonic()
    result = probe(ProbeTarget("esxi", "vc/host-1", "esx-01", "127.0.0.1"), access,
                   remote(connect_timeout_s=1.0, verify_host_keys=False), "nsx-t", "pw")
    assert (result.status, result.reason) == ("timeout", "no answer within 1 s: timed out during the SSH handshake")
    assert time.monotonic() - started < 2.5


class FakeWindows(BaseBackend):  # type: ignore[misc]
    """A Windows guest's raw console bytes, as testinfra's backends hand them over (no decoding yet)."""

    NAME = "fake"
    outputs: dict[str, tuple[int, bytes]] = {}

    def __init__(self, *args: Any) -> None:
        super().__init__("guest")

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        rc, out = self.outputs.get(command, (1, b"'x' is not recognized\r\n"))
        return self.result(rc, command.encode(), out, b"")


def windows_probe(monkeypatch: pytest.MonkeyPatch, outputs: dict[str, tuple[int, bytes]]) -> Any:
    monkeypatch.setitem(remote_mod.FACTORIES, "fake", FakeWindows)
    monkeypatch.setattr(FakeWindows, "outputs", outputs)
    access = RoleAccess(role="windows", transport="fake", user="Administrator", port=None, password_env="X",
                        key_file=None, address="name")
    return probe(ProbeTarget("windows", "vc/vm-1", "WIN-01", "10.0.0.1"), access, remote(), "nsx-t", "pw")


def crlf(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8").replace("\n", "\r\n")


def test_japanese_guest_output_is_decoded_with_its_console_code_page(monkeypatch: pytest.MonkeyPatch) -> None:
    running = crlf("sc-query-running-en.txt").replace("GoodbyeDPI", "vsepflt")
    result = windows_probe(monkeypatch, {
        "chcp": (0, crlf("chcp-ja.txt").encode("cp932")),
        "sc query vsepflt": (0, running.encode("cp932")),
        "sc query vmci": (1060, crlf("sc-query-missing-ja.txt").encode("cp932"))})
    assert result.status == "ok" and result.reason is None
    chcp, _, vmci = result.outputs
    assert chcp.stdout.strip() == "現在のコード ページ: 932"  # the evidence of the code page, readable
    assert "指定されたサービスはインストールされたサービスとして存在しません。" in vmci.stdout
    with pytest.raises(UnicodeDecodeError):  # what a UTF-8 reading of the same bytes did before
        crlf("sc-query-missing-ja.txt").encode("cp932").decode("utf-8")


def test_unknown_code_page_is_decoded_with_replacement_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    result = windows_probe(monkeypatch, {
        "chcp": (0, b"Active code page: 99999\r\n"),
        "sc query vsepflt": (0, crlf("sc-query-running-de-labels.txt").encode("cp850")),
        "sc query vmci": (0, b"\xff\xfe garbage")})
    assert result.status == "unexpected output"
    assert "console code page 99999 is not known here" in (result.reason or "")
    assert "\ufffd" in result.outputs[2].stdout


def test_garbled_chcp_is_unexpected_output_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    result = windows_probe(monkeypatch, {"chcp": (0, b"\x93\xfa\x96{")})
    assert result.status == "unexpected output" and "chcp: no code page" in (result.reason or "")


@pytest.mark.parametrize("code_page,codec", [(932, "cp932"), (850, "cp850"), (437, "cp437"), (1252, "cp1252"),
                                             (65001, "utf-8"), (936, "gbk"), (99999, None)])
def test_console_codec(code_page: int, codec: str | None) -> None:
    assert console_codec(code_page) == codec


def test_processes_for() -> None:
    assert processes_for(remote(), 10) == 1
    assert processes_for(remote(processes=3), 10) == 3
    assert processes_for(remote(processes=3), 2) == 2


class PipelinedSsh(remote_mod.SshBackend):
    """An SSH host whose commands only record when they are started and when their results are collected."""

    events: list[str] = []

    def _connect(self) -> Any:
        return type("Client", (), {"close": lambda self: None})()

    def start(self, command: str) -> Any:
        self.events.append(f"start {command}")

        def finish() -> CommandResult:
            self.events.append(f"collect {command}")
            out = b"Active code page: 437\r\n" if command == "chcp" else SAMPLE_SC.encode()
            return self.result(0, command.encode(), out, b"")
        return finish


SAMPLE_SC = ("\r\nSERVICE_NAME: x\r\n        TYPE               : 1  KERNEL_DRIVER\r\n"
             "        STATE              : 4  RUNNING\r\n        WIN32_EXIT_CODE    : 0  (0x0)\r\n")


def test_ssh_commands_all_start_before_any_is_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    """One connection, a channel per command, all in flight at once: a host costs one command's latency."""
    monkeypatch.setitem(remote_mod.FACTORIES, "ssh", PipelinedSsh)
    monkeypatch.setattr(PipelinedSsh, "events", [])
    access = RoleAccess(role="windows", transport="ssh", user="Administrator", port=None, password_env="X",
                        key_file=None, address="ip")
    probe(ProbeTarget("windows", "vc/vm-1", "WIN-01", "10.0.0.1"), access, remote(), "nsx-t", "pw")
    commands = COMMANDS["windows"]
    assert PipelinedSsh.events == [f"start {c}" for c in commands] + [f"collect {c}" for c in commands]


def test_a_disallowed_command_means_none_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(remote_mod.FACTORIES, "ssh", PipelinedSsh)
    monkeypatch.setattr(PipelinedSsh, "events", [])
    access = RoleAccess(role="relay", transport="ssh", user="u", port=None, password_env="X", key_file=None,
                        address="ip")
    target = ProbeTarget("relay", "dsm/1", "relay-01", "10.0.0.2", commands=("chcp", "rm -rf /"))
    result = probe(target, access, remote(), "nsx-t", "pw")
    assert (result.status, result.reason) == ("error", "'rm -rf /' is not an allowed read-only command")
    assert PipelinedSsh.events == []


class Channel:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


def test_one_watchdog_thread_closes_only_overdue_channels() -> None:
    watchdog = remote_mod._Watchdog()
    late, answered, later = Channel(), Channel(), Channel()
    now = time.monotonic()
    watchdog.watch(later, now + 0.6)  # type: ignore[arg-type]
    watchdog.watch(late, now + 0.2)  # type: ignore[arg-type]  # due first: wakes the waiting thread
    watchdog.release(watchdog.watch(answered, now + 0.2))  # type: ignore[arg-type]
    assert late.closed.wait(2) and time.monotonic() - now >= 0.2
    assert not later.closed.is_set() and later.closed.wait(2)
    assert not answered.closed.is_set()
    assert sum(t.name == "ssh-watchdog" for t in threading.enumerate()) >= 1


def test_ssh_config_is_read_once_per_version_and_asks_for_the_local_user_only_when_needed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ssh_config"
    path.write_text("".join(f"Host esx-{i}\n    HostName 10.0.0.{i}\n" for i in range(50))
                    + "Match user audit\n    Port 2222\nHost *\n    User audit\n")
    config = remote_mod._ssh_config(str(path))
    assert remote_mod._ssh_config(str(path)) is config
    asked = []
    monkeypatch.setattr("getpass.getuser", lambda: asked.append(1) or "root")
    for name in ("esx-7", "10.9.9.9"):
        assert config.lookup(name) == paramiko.SSHConfig.from_path(str(path)).lookup(name)
    assert config.lookup("esx-7")["hostname"] == "10.0.0.7"
    asked.clear()
    config.lookup("10.9.9.9")
    assert len(asked) <= 3  # the Match entry and the expanded values, not once per Host entry (50)
    path.write_text("Host esx-7\n    HostName 10.1.1.7\n")
    os.utime(path, (1, 1))  # a new version of the file
    assert remote_mod._ssh_config(str(path)).lookup("esx-7")["hostname"] == "10.1.1.7"


def test_a_linux_hosts_output_that_is_not_utf8_is_unexpected_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    # No chcp on a DSVA: a replaced byte could be the one a build number is read from.
    monkeypatch.setitem(remote_mod.FACTORIES, "fake", FakeWindows)
    monkeypatch.setattr(FakeWindows, "outputs", {
        "service ds_agent status": (0, b"ds_agent is running\n"),
        "/opt/ds_agent/dsa_query -c GetAgentStatus": (0, b"AgentStatus.agentState: green\n"),
        "rpm -q ds_agent": (0, b"ds_agent-20.0.0-8438\xff.el7.x86_64\n")})
    access = RoleAccess(role="dsva", transport="fake", user="dsva", port=None, password_env="X", key_file=None,
                        address="ip")
    result = probe(ProbeTarget("dsva", "vc/vm-9", "DSVA", "10.0.0.9"), access, remote(), "nsx-t", "pw")
    assert result.status == "unexpected output"
    assert (result.reason or "").startswith("rpm -q ds_agent: output not valid UTF-8 (invalid start byte at byte 20)")


def test_an_unreadable_known_hosts_is_each_hosts_error_with_asyncssh(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("10.0.0.1 ssh-ed25519 not-base64!!\n")
    access = RoleAccess(role="esxi", transport="ssh", user="root", port=22, password_env=None, key_file=None,
                        address="ip")
    result = probe(ProbeTarget("esxi", "vc/host-1", "esx-01", "10.0.0.1"), access,
                   remote(ssh_client="asyncssh", known_hosts=known), "nsx-t", None)  # never raises
    assert result.status == "error" and (result.reason or "").startswith("InvalidHostKey: ")  # as paramiko says it


def test_a_host_that_is_not_contacted_starts_no_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_mod.sshasync, "run", lambda coro: pytest.fail("an event loop for a skipped host"))
    access = RoleAccess(role="windows", transport="ssh", user="Administrator", port=None, password_env="X",
                        key_file=None, address="ip")
    skipped = probe(ProbeTarget("windows", "vc/vm-1", "W", None, "the VM is suspended"), access,
                    remote(ssh_client="asyncssh"), "nsx-t", "pw")
    assert skipped.status == "not probed"
