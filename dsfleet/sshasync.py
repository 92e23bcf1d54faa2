"""SSH transport over asyncssh: one event loop runs many hosts' connections, each host's allowlisted commands
together on its one connection.

Why not testinfra's paramiko backend for the bulk of a fleet: its thread per connection and pure-Python
packet layer cost 13–16 ms of client CPU per guest (three commands), against ≈ 5 ms here
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
from typing import Any, Callable, Coroutine, TypeVar, cast

import asyncssh

try:
    import uvloop
except ImportError:  # not on Windows: asyncio's own loop
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")

from .inventory import RemoteAccess, RoleAccess

# asyncssh logs each connection at INFO and failures at WARNING; the probe records them in plain words.
logging.getLogger("asyncssh").addHandler(logging.NullHandler())
logging.getLogger("asyncssh").propagate = False


def _skip_disabled_logging() -> None:
    """asyncssh formats every log call before the logging module drops it: each call's arguments are turned
    to text first (SSHLogger.log), and each packet sent or received gets its name and size formatted
    (_log_packet) though only debug level 3 logs packets. That is ≈ 70 calls per guest, ≈ 0.3 ms of CPU on
    each side (lab.bench_remote). The same records are written when a level is enabled; when it is not,
    nothing is formatted. Installed once, at import, for every asyncssh connection in the process (the lab's
    SSH stand-in imports it too)."""
    sshlogger, packets = asyncssh.logging.SSHLogger, asyncssh.packet.SSHPacketLogger
    if getattr(sshlogger.log, "_dsfleet", False):
        return
    log, log_packet = sshlogger.log, packets._log_packet

    def log_if_enabled(self: Any, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            log(self, level, msg, *args, **kwargs)

    def log_packet_if_enabled(self: Any, *args: Any) -> None:
        if self.logger._debug_level >= 3 and self.logger.isEnabledFor(logging.DEBUG):
            log_packet(self, *args)

    log_if_enabled._dsfleet = True  # type: ignore[attr-defined]
    sshlogger.log = log_if_enabled  # type: ignore[method-assign]
    packets._log_packet = log_packet_if_enabled  # type: ignore[method-assign,assignment]


_skip_disabled_logging()

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
    # Never a CBC cipher (asyncssh offers none by default; this keeps it so whatever a later version offers):
    # lean_connection leaves out the ignore packets that only CBC mode needs.
    ciphers = [a.decode() for a in asyncssh.encryption.get_default_encryption_algs() if not a.endswith(b"-cbc")]
    ciphers = [*(a for a in _GCM if a in ciphers), *(a for a in ciphers if a not in _GCM)]
    host_keys = [a.decode() for a in asyncssh.public_key.get_default_public_key_algs()]
    return ciphers, ["none", "zlib@openssh.com"], host_keys


def cipher_algs() -> list[str]:
    """The ciphers offered (AES-GCM first, no CBC): the lab's SSH stand-in offers the same."""
    return list(_algorithms()[0])


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop's event loop where it is installed (Linux, macOS), else on asyncio's own.

    uvloop's loop (libuv, in C) takes a fifth off the CPU of every SSH handshake, on both sides: client and lab
    server 7.1 ms per guest together against 9.0 ms on asyncio's loop (lab.bench_remote --loop, README)."""
    if uvloop is None or not USE_UVLOOP:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# DSFLEET_EVENT_LOOP=asyncio: asyncio's own loop even where uvloop is installed (lab.bench_remote --loop measures
# both; the lab's SSH stand-in, started with the same environment, follows it too).
USE_UVLOOP = os.environ.get("DSFLEET_EVENT_LOOP", "uvloop") != "asyncio"


def _host_key_algs(known_types: tuple[str, ...]) -> list[str]:
    """The default host-key algorithms with those of the types known_hosts holds for this host first."""
    defaults = _algorithms()[2]
    first = [a for t in known_types for a in _HOST_KEY_ALGS.get(t, (t,)) if a in defaults]
    return [*dict.fromkeys(first), *(a for a in defaults if a not in first)]


KnownKeys = Callable[[str], "dict[str, bytes] | None"]  # known_hosts name → key type → key blob


class _Corked:
    """A connection's transport that sends what asyncssh writes in one event-loop turn as one segment.

    asyncssh writes every packet on its own (a send() each, and a segment each with TCP_NODELAY): a guest's
    handshake, authentication and three commands were ≈ 30 sends from the client and 40 from the server, 11
    and 10 now. The bytes on the wire are unchanged; a packet waits at most until the loop's next turn."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        # No is_closing() check: a ProxyCommand's pipe "transport" has none, and asyncssh writes nothing once
        # it has closed the connection (a transport that closed under it drops the write itself).
        if self._pending:
            data, self._pending = b"".join(self._pending), []
            self._transport.write(data)

    def abort(self) -> None:  # asyncssh ends a connection with abort(): its last packet (a disconnect) first
        self._flush()
        self._transport.abort()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else (extra info, flow control) as the transport's
        return getattr(self._transport, name)


def lean_connection(conn: Any) -> None:
    """Per-connection packet savings, applied from the client's (or lab server's) connection_made, which
    asyncssh calls after it has the transport and before it sends its version.

    - Writes coalesced per event-loop turn (_Corked).
    - No empty SSH_MSG_IGNORE before every packet. asyncssh sends one ahead of each packet once encryption
      is on: RFC 4251 §9.3.1's countermeasure for CBC mode's predictable IV (asyncssh's first version sent
      it only with no data outstanding, as the RFC says; it has since become unconditional). None of the
      ciphers negotiated here is CBC: asyncssh offers no CBC cipher by default and neither list here adds
      one; GCM, chacha20-poly1305 and CTR need no such packet, and OpenSSH does not send it. Peers discard
      ignore packets, so nothing else changes; it takes 12 of the client's 30 packets per guest away.

    Both, on both sides: client 8.2 → 6.8 ms and lab SSH server 8.7 → 6.7 ms of CPU per guest
    (lab.bench_remote, 1,000 guests): most of it is packets neither side has to send, encrypt, receive and
    decrypt any more; against a server that still sends them, the client saves ≈ 0.2 ms
    (lab.bench_ssh_clients).
    """
    conn._transport = _Corked(conn._transport)
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == asyncssh.constants.MSG_IGNORE and args == (_EMPTY_STRING,):
            return
        send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet


_EMPTY_STRING = asyncssh.packet.String(b"")


class _Client(asyncssh.SSHClient):
    """Checks the server's host key with the suite's own known_hosts policy and remembers how far the
    handshake got, so that a timeout names its stage."""

    def __init__(self, name: str, known: KnownKeys | None, path: str) -> None:
        self.name, self.known, self.path = name, known, path
        self.key_accepted = False
        self.refusal: str | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        lean_connection(conn)

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
                    # Plain host-key algorithms always (asyncssh's own default asks for certificates first, which
                    # _Client does not judge: a host with a certificate would be refused with verification off).
                    server_host_key_algs=_host_key_algs(known),
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
    infos = _literal(host, port) or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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


def _literal(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo's answer for an IP address, without its trip through the loop's thread pool (a thread
    hand-off per guest; inventories give guests by IP address)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return []


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
