"""SSH transport over asyncssh: one event loop runs many hosts' connections, each host's allowlisted commands
together on its one connection.

Why not testinfra's paramiko backend for the bulk of a fleet: its thread per connection and pure-Python
packet layer cost 13–16 ms of client CPU per guest (three commands), against 6 ms here
(``lab.bench_remote --ssh-client paramiko|asyncssh``; README, "Remote phase"). paramiko stays available
(``remote.ssh_client: paramiko``) for sites that need what only it reads from an ssh_config (GSSAPI).

The policy is the paramiko path's, line for line: host keys are checked against the inventory's known_hosts
(clear or hashed entries; an unknown or changed key is refused, whatever an ssh_config says), no agent, no
default keys, no user ssh_config beyond ``remote.ssh_config``, connect and per-command deadlines, and only
commands the caller has checked against the allowlist (``remote.is_allowed``) are run.

Cipher preference: AES-GCM first. Every OpenSSH since 6.2 (ESXi's FIPS-mode sshd and OpenSSH for Windows
included) offers it, AES-NI makes it cheap, and asyncssh's chacha20-poly1305 costs ≈ 3 ms more CPU per guest on
each side. The rest of asyncssh's defaults follow, so a server without GCM still negotiates.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, cast

import asyncssh

from .inventory import RemoteAccess, RoleAccess

# asyncssh logs each connection at INFO and failures at WARNING; the probe records them in plain words.
logging.getLogger("asyncssh").addHandler(logging.NullHandler())
logging.getLogger("asyncssh").propagate = False

_GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# A host key of one type in known_hosts is verifiable only if the server is asked for that type first.
_HOST_KEY_ALGS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}

Raw = tuple[str, int, bytes, bytes, float]  # command, exit status, stdout, stderr, seconds from start to answer


class CommandTimeout(TimeoutError):
    """A command gave no complete answer (output and exit status) within remote.command_timeout_s."""


class ConnectTimeout(TimeoutError):
    """No TCP connection within remote.connect_timeout_s."""


class HandshakeTimeout(TimeoutError):
    """The SSH handshake or authentication did not complete within remote.connect_timeout_s."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage  # "the SSH handshake" | "authentication"


class HostKeyRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CommandFailed(Exception):
    """Wraps whatever ended one command, naming it (the probe says which command failed)."""

    def __init__(self, command: str, error: BaseException) -> None:
        super().__init__(f"{command}: {error}")
        self.command, self.error = command, error


@functools.cache
def _algorithms() -> tuple[list[str], list[str], list[str]]:
    """Cipher, compression and host-key preference lists, computed once."""
    ciphers = [a.decode() for a in asyncssh.encryption.get_default_encryption_algs()]
    ciphers = [*(a for a in _GCM if a in ciphers), *(a for a in ciphers if a not in _GCM)]
    host_keys = [a.decode() for a in asyncssh.public_key.get_default_public_key_algs()]
    return ciphers, ["none", "zlib@openssh.com"], host_keys


def _host_key_algs(known_types: tuple[str, ...]) -> list[str]:
    """The default host-key algorithms with those of the types known_hosts holds for this host first."""
    defaults = _algorithms()[2]
    first = [a for t in known_types for a in _HOST_KEY_ALGS.get(t, (t,)) if a in defaults]
    return [*dict.fromkeys(first), *(a for a in defaults if a not in first)]


KnownKeys = Callable[[str], "dict[str, bytes] | None"]  # known_hosts name → key type → key blob


class _Client(asyncssh.SSHClient):
    """Checks the server's host key with the suite's own known_hosts policy and remembers how far the
    handshake got, so that a timeout names its stage."""

    def __init__(self, name: str, known: KnownKeys | None, path: str) -> None:
        self.name, self.known, self.path = name, known, path
        self.key_accepted = False
        self.refusal: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        if self.known is not None:  # None: the inventory turned host-key verification off
            entry, kind = self.known(self.name), key.algorithm.decode()
            if entry is None or kind not in entry:
                self.refusal = f"the host key of {self.name} is not found in known_hosts ({self.path})"
            elif entry[kind] != key.public_data:
                self.refusal = f"the host key of {self.name} does not match known_hosts ({self.path})"
        self.key_accepted = self.refusal is None
        return self.key_accepted


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, after the ssh_config (HostName, Port, User, IdentityFile, ProxyCommand)."""

    hostname: str
    port: int
    user: str
    key_file: str | None
    proxy_command: str | None
    known_name: str  # how known_hosts names it: "host", or "[host]:port" off port 22 (as OpenSSH writes it)


class AsyncSsh:
    """One per worker process: connection options built once, then one call per host."""

    def __init__(self, remote: RemoteAccess, known: KnownKeys | None) -> None:
        self.remote = remote
        self.known = known  # None: host keys not verified (inventory verify_host_keys: false)
        ciphers, compression, _ = _algorithms()
        # known_hosts=([], [], []): nothing trusted up front, so every server key is put to _Client's check.
        self._base = asyncssh.SSHClientConnectionOptions(
            known_hosts=([], [], []), agent_path=None, agent_forwarding=False, config=(), encryption_algs=ciphers,
            compression_algs=compression, gss_kex=False, gss_auth=False)
        self._keys: dict[str, Any] = {}

    def _client_keys(self, key_file: str | None) -> Any:
        if key_file is None:
            return None  # not (): that would try ~/.ssh/id_*
        if key_file not in self._keys:
            self._keys[key_file] = asyncssh.load_keypairs([key_file])
        return self._keys[key_file]

    async def run(self, endpoint: Endpoint, password: str | None, commands: tuple[str, ...]) -> list[Raw]:
        """Connect, run every command at once on its own channel, return their results in order.

        Raises OSError / TimeoutError (connect), HandshakeTimeout, HostKeyRejected, asyncssh.Error, or
        CommandFailed for the first command (in the given order) that did not answer.
        """
        remote = self.remote
        loop = asyncio.get_running_loop()
        sock = None  # with a ProxyCommand, asyncssh runs it and talks through its pipes
        if not endpoint.proxy_command:
            try:
                async with asyncio.timeout(remote.connect_timeout_s):
                    sock = await _tcp_connect(loop, endpoint.hostname, endpoint.port)
            except TimeoutError:
                raise ConnectTimeout("timed out during connect") from None
        client = _Client(endpoint.known_name, self.known, str(remote.known_hosts))
        known = tuple(self.known(endpoint.known_name) or ()) if self.known else ()
        try:
            async with asyncio.timeout(remote.connect_timeout_s):
                conn = await asyncssh.connect(
                    endpoint.hostname, endpoint.port, sock=sock, options=self._base, client_factory=lambda: client,
                    username=endpoint.user, password=password, client_keys=self._client_keys(endpoint.key_file),
                    server_host_key_algs=_host_key_algs(known) if known else (),
                    proxy_command=endpoint.proxy_command or ())
        except TimeoutError:
            _close(sock)
            raise HandshakeTimeout("authentication" if client.key_accepted else "the SSH handshake") from None
        except asyncssh.HostKeyNotVerifiable:
            _close(sock)
            raise HostKeyRejected(client.refusal or "the host key was not accepted") from None
        except BaseException:
            _close(sock)
            raise
        async with conn:
            outcomes = await asyncio.gather(*(self._command(conn, c) for c in commands), return_exceptions=True)
        for command, outcome in zip(commands, outcomes):
            if isinstance(outcome, BaseException):
                raise CommandFailed(command, outcome)
        return [o for o in outcomes if not isinstance(o, BaseException)]

    async def _command(self, conn: asyncssh.SSHClientConnection, command: str) -> Raw:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.remote.command_timeout_s):  # one deadline for the whole command
                _, opened = await conn.create_session(_Collect, command, encoding=None)
                session = cast(_Collect, opened)
                await session.done
        except TimeoutError:
            raise CommandTimeout(command) from None
        rc = session.status if session.status is not None else -1  # as paramiko: -1 is "no exit status came"
        return command, rc, b"".join(session.stdout), b"".join(session.stderr), time.monotonic() - started


class _Collect(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    """One command's output, stderr and whole exit status."""

    def __init__(self) -> None:
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []
        self.status: int | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, chan: Any) -> None:
        # asyncssh keeps 8 bits of an exit status (a POSIX wait status); OpenSSH for Windows sends the Win32
        # code whole (sc query's 1060, "service not installed", would read 36). The channel dispatches the
        # "exit-status" request by this name; it is replaced before the exec request is sent, so before any
        # status can arrive.
        chan._process_exit_status_request = self._exit_status

    def _exit_status(self, packet: Any) -> bool:
        self.status = packet.get_uint32()
        packet.check_end()
        return True

    def data_received(self, data: bytes, datatype: int | None) -> None:
        (self.stderr if datatype == asyncssh.EXTENDED_DATA_STDERR else self.stdout).append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(None)  # a close without exit-status leaves status None: the probe refuses it


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()


async def _tcp_connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket to the first address of ``host`` that answers."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            return sock
        except OSError as err:
            sock.close()
            error = err
        except BaseException:
            sock.close()
            raise
    raise error or OSError(f"no address for {host}")


def endpoint(address: str, access: RoleAccess, remote: RemoteAccess, lookup: Any) -> Endpoint:
    """The inventory's access, then what the ssh_config says for ``address`` (as testinfra's backend reads it)."""
    hostname, port, user = address, access.port or 22, access.user
    key_file = str(access.key_file) if access.key_file else None
    proxy = None
    if lookup is not None:
        found = lookup(address)
        hostname = found.get("hostname", hostname)
        port = int(found["port"]) if "port" in found else port
        user = found.get("user", user)
        if "identityfile" in found:
            key_file = os.path.expanduser(found["identityfile"][0])
        proxy = found.get("proxycommand")
    # The key an inventory names wins over the ssh_config's, as with testinfra (ssh_identity_file last).
    if access.key_file:
        key_file = str(access.key_file)
    known_name = hostname if port == 22 else f"[{hostname}]:{port}"
    return Endpoint(hostname, port, user, key_file, proxy, known_name)
