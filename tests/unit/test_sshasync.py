"""The asyncssh client's connection choices: algorithm preferences, what an ssh_config changes, and the
per-connection packet savings (writes coalesced per loop turn, no empty ignore packets, logging formatted only
when enabled)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from dsfleet.inventory import RemoteAccess, RoleAccess
from dsfleet.remote import _ssh_config
from dsfleet.sshasync import AsyncSsh, _algorithms, _Corked, _host_key_algs, _literal, endpoint, lean_connection


def remote(ssh_config: Path | None = None) -> RemoteAccess:
    return RemoteAccess(concurrency=8, processes=1, connect_timeout_s=5.0, command_timeout_s=5.0,
                        verify_host_keys=True, known_hosts=Path("/nonexistent"), ssh_config=ssh_config, roles={})


ESXI = RoleAccess(role="esxi", transport="ssh", user="root", port=None, password_env="P", key_file=None,
                  address="name")


def test_gcm_first_and_every_default_cipher_kept() -> None:
    ciphers, compression, _ = _algorithms()
    assert ciphers[:2] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    # A server without GCM (an old or FIPS-restricted sshd) still finds a common cipher.
    assert {"chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"} <= set(ciphers)
    assert compression[0] == "none"


def test_known_host_key_types_are_asked_for_first() -> None:
    defaults = _host_key_algs(())
    rsa = _host_key_algs(("ssh-rsa",))
    assert rsa[:3] == ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] and sorted(rsa) == sorted(defaults)
    assert _host_key_algs(("ecdsa-sha2-nistp256",))[0] == "ecdsa-sha2-nistp256"


def test_endpoint_without_ssh_config() -> None:
    where = endpoint("esx-01.example.local", ESXI, remote(), None)
    assert (where.hostname, where.port, where.user, where.key_file, where.proxy_command, where.known_name) == (
        "esx-01.example.local", 22, "root", None, None, "esx-01.example.local")
    off_port = endpoint("10.0.0.5", RoleAccess(role="windows", transport="ssh", user="Administrator", port=2222,
                                               password_env="P", key_file=None, address="ip"), remote(), None)
    assert off_port.known_name == "[10.0.0.5]:2222"  # as OpenSSH writes a non-default port in known_hosts


def test_ssh_config_maps_host_port_user_identity_and_proxy(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host esx-01\n    HostName 192.0.2.11\n    Port 2022\n    User audit\n"
                      "    IdentityFile ~/.ssh/esxi_ed25519\n    ProxyCommand ssh -W %h:%p bastion\n")
    where = endpoint("esx-01", ESXI, remote(config), _ssh_config(str(config)).lookup)
    assert (where.hostname, where.port, where.user) == ("192.0.2.11", 2022, "audit")
    assert where.key_file is not None and where.key_file.endswith("/.ssh/esxi_ed25519")
    assert where.proxy_command == "ssh -W 192.0.2.11:2022 bastion"
    assert where.known_name == "[192.0.2.11]:2022"
    # The key the inventory names wins over the ssh_config's, as with testinfra's backend.
    named = endpoint("esx-01", RoleAccess(role="esxi", transport="ssh", user="root", port=None, password_env=None,
                                          key_file=tmp_path / "inventory_key", address="name"),
                     remote(config), _ssh_config(str(config)).lookup)
    assert named.key_file == str(tmp_path / "inventory_key")


def test_ssh_config_values_without_tokens_are_kept_and_tokens_still_expand(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host esx-*\n    User audit\n    IdentityFile ~/.ssh/id_%h\n    Port 2022\n")
    found = _ssh_config(str(config)).lookup("esx-07")
    assert (found["hostname"], found["port"], found["user"]) == ("esx-07", "2022", "audit")
    assert found["identityfile"][0].endswith("/.ssh/id_esx-07")  # "~" and "%h" expanded as before


def test_ip_literals_skip_the_resolver() -> None:
    assert _literal("10.1.2.3", 22) == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.1.2.3", 22))]
    assert _literal("fd00::7", 2222)[0][0] == socket.AF_INET6
    assert _literal("esx-01.example.local", 22) == []  # a name still goes through getaddrinfo


class _Transport:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def write(self, data: bytes) -> None:
        self.calls.append(data)

    def abort(self) -> None:
        self.calls.append("abort")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return f"extra:{name}"


def test_writes_of_one_loop_turn_leave_as_one_and_abort_sends_what_is_pending() -> None:
    async def main() -> list[Any]:
        transport = _Transport()
        corked = _Corked(transport)
        corked.write(b"a")
        corked.write(b"b")
        assert transport.calls == []  # nothing before the turn ends
        await asyncio.sleep(0)
        corked.write(b"c")
        corked.abort()  # asyncssh's last packet (a disconnect) is sent before the connection is dropped
        await asyncio.sleep(0)
        assert corked.get_extra_info("peername") == "extra:peername"
        return transport.calls

    assert asyncio.run(main()) == [b"ab", b"c", "abort"]


def test_only_empty_ignore_packets_are_dropped() -> None:
    sent: list[tuple[int, tuple[bytes, ...]]] = []

    class Conn:
        _transport = _Transport()

        def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
            sent.append((pkttype, args))

    async def main() -> None:
        conn: Any = Conn()
        lean_connection(conn)
        conn.send_packet(asyncssh.constants.MSG_IGNORE, asyncssh.packet.String(b""))
        conn.send_packet(asyncssh.constants.MSG_IGNORE, asyncssh.packet.String(b"x"))
        conn.send_packet(94, b"data")  # MSG_CHANNEL_DATA

    asyncio.run(main())
    assert sent == [(asyncssh.constants.MSG_IGNORE, (asyncssh.packet.String(b"x"),)), (94, (b"data",))]


def test_asyncssh_records_are_still_written_when_their_level_is_enabled(caplog: pytest.LogCaptureFixture) -> None:
    log = asyncssh.logging.logger.get_child("conn", context="conn=1")
    with caplog.at_level(logging.INFO, logger="asyncssh"):
        log.info("Connected to %s", ("10.0.0.5", 22))
        log.debug1("not at INFO")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncssh")] == [
        "[conn=1] Connected to 10.0.0.5, port 22"]


def test_a_host_presenting_a_certificate_is_read_with_verification_off() -> None:
    # asyncssh's own default asks for certificate algorithms first, which the client's key check does not judge:
    # the plain key algorithms are always asked for (paramiko reads such a host too).
    async def main() -> list[Any]:
        host_key, ca = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")
        cert = ca.generate_host_certificate(host_key, "esx-01", principals=["127.0.0.1"])

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return password == "pw"

        def answer(process: Any) -> None:
            process.stdout.write(b"nsx-context-mux is running\n")
            process.exit(0)

        server = await asyncssh.create_server(Server, "127.0.0.1", 0, server_host_keys=[(host_key, cert)],
                                              process_factory=answer, encoding=None)
        port = server.sockets[0].getsockname()[1]
        access = RemoteAccess(concurrency=8, processes=1, connect_timeout_s=5.0, command_timeout_s=5.0,
                              verify_host_keys=False, known_hosts=Path("/nonexistent"), ssh_config=None, roles={})
        where = endpoint("127.0.0.1", RoleAccess(role="esxi", transport="ssh", user="root", port=port,
                                                  password_env="P", key_file=None, address="ip"), access, None)
        try:
            return await AsyncSsh(access, None).run(where, "pw", ("/etc/init.d/nsx-context-mux status",))
        finally:
            server.close()

    ((command, rc, stdout, _stderr, _seconds),) = asyncio.run(main())
    assert (command, rc, stdout) == ("/etc/init.d/nsx-context-mux status", 0, b"nsx-context-mux is running\n")
