"""Read-only commands on ESXi hosts, DSVAs and Windows guests, over pytest-testinfra backends.

SSH uses testinfra's paramiko backend, extended with what a compliance run needs: host keys verified
against a known_hosts file (unknown or changed keys are refused), connect and per-command timeouts,
no agent or stray keys. Windows guests may use testinfra's WinRM backend instead. Only the commands in
:data:`dsfleet.allowlist.COMMANDS` can be run, each checked before any starts. Every host ends in one :class:`HostProbe` whose
status says what happened.

Over SSH a host's commands run together on its one connection, a channel each (its server must allow that many
sessions per connection: OpenSSH's MaxSessions is 10, we need at most 3), so a host costs one command's latency.

Windows writes console output in the guest's OEM code page (CP932 on a Japanese guest, CP850 or CP437 in
Europe and the US), not UTF-8: a Windows probe runs ``chcp`` first and decodes the other outputs' bytes with
that code page.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import logging
import heapq
import itertools
import os
import socket
import threading
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import repeat
from typing import Any, Callable

import asyncssh
import paramiko
import paramiko.hostkeys
import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.backend.paramiko import ParamikoBackend

from . import sshasync
from .inventory import RemoteAccess, RoleAccess
from .neterrors import chain, plain_reason
from .parsers import (UnexpectedOutput, parse_agent_state, parse_chcp, parse_init_status, parse_rpm_query,
                      parse_sc_query, parse_service_status)
from .snapshot import CommandOutput, HostProbe
from .sshasync import Raw

# paramiko logs a failed handshake's traceback from its transport thread; with no handler Python's last-resort
# handler prints it to stderr. The probe records that failure in plain words, so its log has nowhere to go.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
from .winready import CERTUTIL_ROOT, HOTFIX, parse_certutil_store, parse_hotfixes

# What may be asked, of which host: dsfleet.allowlist (re-exported here for the transport's callers).
from .allowlist import ALLOWED as ALLOWED, COMMANDS as COMMANDS, DRIVERS as DRIVERS, MUX as MUX
from .allowlist import ProbeTarget as ProbeTarget, commands_for as commands_for, is_allowed as is_allowed


KnownHosts = dict[str, dict[str, paramiko.PKey]]  # "[host]:port" or host (or a |1|salt|hash) → key type → key
_file_cache_lock = threading.Lock()
_known_hosts_cache: dict[tuple[str, float], KnownHosts] = {}


def _known_hosts(path: str) -> KnownHosts:
    """known_hosts indexed once per file version, under a lock: paramiko's HostKeys scans every entry on
    each lookup, and parsing per connection costs more than the SSH handshake itself."""
    mtime = os.path.getmtime(path) if os.path.isfile(path) else 0.0
    with _file_cache_lock:
        if (path, mtime) not in _known_hosts_cache:
            index: KnownHosts = {}
            if mtime:
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
                        if entry is None or entry.key is None:
                            continue  # comments, blank lines, unsupported key types
                        for name in entry.hostnames:
                            index.setdefault(name, {})[entry.key.get_name()] = entry.key
            _known_hosts_cache[(path, mtime)] = index
        return _known_hosts_cache[(path, mtime)]


class _SshConfig(paramiko.SSHConfig):  # type: ignore[misc]
    """paramiko's SSHConfig, without asking for the local user's name at every ``Host`` entry: its
    ``_does_match`` calls getpass.getuser() before looking at the entry's ``Match`` criteria, even when there
    are none, and with LOGNAME, USER, LNAME and USERNAME unset (cron, CI runners, containers) each call reads
    /etc/passwd: 3.1 ms per lookup in a 60-entry file, 0.3 ms without. With no criteria the answer is "no
    match" either way."""

    def _does_match(self, match_list: list[dict[str, Any]], *args: Any) -> Any:
        return bool(match_list) and super()._does_match(match_list, *args)

    # The same for the values a lookup returns: paramiko expands %-tokens and ~ in each (hostname, port,
    # user...) and gathers every token's value first, getpass.getuser() included, for every key and host
    # (0.25 ms per guest). A value with neither "%" nor "~" expands to itself.
    def _tokenize(self, config: Any, target_hostname: str, key: str, value: Any) -> Any:
        if isinstance(value, str) and "%" not in value and "~" not in value:
            return value
        return super()._tokenize(config, target_hostname, key, value)


_ssh_config_cache: dict[tuple[str, float], _SshConfig] = {}


def _ssh_config(path: str) -> _SshConfig:
    """The ssh_config parsed once per file version (testinfra parses it again for every connection)."""
    mtime = os.path.getmtime(path)
    with _file_cache_lock:
        if (path, mtime) not in _ssh_config_cache:
            _ssh_config_cache[(path, mtime)] = _SshConfig.from_path(path)
        return _ssh_config_cache[(path, mtime)]


def known_entry(known: KnownHosts, hostname: str) -> dict[str, paramiko.PKey] | None:
    """The keys known_hosts holds for ``hostname`` ("host" or "[host]:port"), clear or hashed."""
    if hostname in known:
        return known[hostname]
    for name, keys in known.items():
        if name.startswith("|1|") and paramiko.HostKeys.hash_host(hostname, name) == name:
            return keys
    return None


@functools.lru_cache(maxsize=8)
def _known_blobs(path: str, mtime: float) -> Callable[[str], dict[str, bytes] | None]:
    """known_hosts as key blobs by type, for the asyncssh client (one lookup function per file version)."""
    known = _known_hosts(path)

    @functools.lru_cache(maxsize=None)
    def lookup(hostname: str) -> dict[str, bytes] | None:
        entry = known_entry(known, hostname)
        return None if entry is None else {kind: key.asbytes() for kind, key in entry.items()}

    return lookup


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Accept a server key only if known_hosts lists exactly that key for the address (and port) dialled.

    Clear entries are a dict lookup; hashed ones (``|1|salt|hash``, OpenSSH's HashKnownHosts) are matched
    by hashing the name with each entry's salt.
    """

    def __init__(self, known: KnownHosts, path: str) -> None:
        self.known, self.path = known, path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        entry = known_entry(self.known, hostname)
        if entry is None or key.get_name() not in entry:
            raise paramiko.SSHException(f"the host key of {hostname} is not found in known_hosts")
        if entry[key.get_name()] != key:
            raise paramiko.BadHostKeyException(hostname, key, entry[key.get_name()])


class _Unverified(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """verify_host_keys: false. Every key is accepted without paramiko's warning per host (thousands in a fleet
    run); the report's environment says once "SSH host keys NOT verified", as for the asyncssh client. Nothing is
    stored."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None


class SshBackend(ParamikoBackend):  # type: ignore[misc]
    """testinfra's paramiko backend with host-key verification and command timeouts."""

    def __init__(self, address: str, access: RoleAccess, remote: RemoteAccess, password: str | None) -> None:
        spec = f"{access.user}@{address}" + (f":{access.port}" if access.port else "")
        super().__init__(spec, ssh_config=str(remote.ssh_config) if remote.ssh_config else None,
                         ssh_identity_file=str(access.key_file) if access.key_file else None,
                         timeout=max(1, int(remote.connect_timeout_s)))
        self._password = password
        self._remote = remote
        # testinfra would otherwise run `python -c 'import locale...'` on the host the first time output is
        # not ASCII (systemd's "●"): a command outside the allowlist. Our hosts answer in UTF-8.
        self._encoding = "utf-8"
        self._client: paramiko.SSHClient | None = None
        self._tickets: list[int] = []  # this connection's commands under the watchdog

    # A plain per-instance property, not functools.cached_property: on Python < 3.12 that holds one lock per
    # class while the value is computed, so every host's SSH handshake would wait for every other's.
    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    @client.deleter
    def client(self) -> None:  # testinfra's run() reconnects once with `del self.client`
        if self._client is not None:
            self._client.close()
        self._client = None

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        cfg: dict[str, Any] = {"hostname": self.host.name, "port": int(self.host.port) if self.host.port else 22,
                               "username": self.host.user}
        if self.ssh_config:  # HostName, Port, User, IdentityFile from an OpenSSH client config
            self._load_ssh_config(client, cfg, _ssh_config(self.ssh_config), os.path.dirname(self.ssh_config))
        # The inventory decides host-key checking, whatever an ssh_config says. The client's own key store
        # stays empty, so every server key goes through the policy, which checks the shared known_hosts.
        if self._remote.verify_host_keys:
            path = str(self._remote.known_hosts or "")
            client.set_missing_host_key_policy(KnownHostsPolicy(_known_hosts(path), path))
        else:
            client.set_missing_host_key_policy(_Unverified())
        if self.ssh_identity_file:
            cfg["key_filename"] = self.ssh_identity_file
        t = self._remote.connect_timeout_s
        client.connect(**cfg, password=self._password, timeout=t, banner_timeout=t, auth_timeout=t,
                       allow_agent=False, look_for_keys=False)
        return client

    def start(self, command: str) -> Callable[[], CommandResult]:
        """Start ``command`` on a channel of its own and return what waits for its result: the probe starts
        all of a host's commands before it collects any, so their round trips and run times overlap on the
        one connection instead of adding up (three 100 ms commands: ≈ 100 ms, not 300)."""
        encoded = self.encode(self.get_command(command))
        finish = self._start(encoded)
        return functools.partial(self._result, encoded, finish)

    def _result(self, encoded: bytes, finish: Callable[[], tuple[int, bytes, bytes]]) -> CommandResult:
        rc, stdout, stderr = finish()
        return self.result(rc, encoded, stdout, stderr)

    def _exec_command(self, command: bytes) -> tuple[int, bytes, bytes]:  # testinfra's run(), one at a time
        return self._start(command)()

    def _start(self, command: bytes) -> Callable[[], tuple[int, bytes, bytes]]:
        transport = self.client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=self._remote.connect_timeout_s)
        # One deadline for the whole command. Per-read timeouts would let a trickling command run on, and
        # paramiko waits for the exec request's reply without any: past the deadline the watchdog closes the
        # channel, which ends every wait on it.
        deadline = time.monotonic() + self._remote.command_timeout_s
        ticket = _WATCHDOG.watch(channel, deadline)
        self._tickets.append(ticket)
        name = command.decode(errors="replace")
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, OSError):
            if time.monotonic() < deadline:
                raise
            raise CommandTimeout(name) from None
        return functools.partial(self._finish, channel, ticket, deadline, name)

    @staticmethod
    def _finish(channel: paramiko.Channel, ticket: int, deadline: float, name: str) -> tuple[int, bytes, bytes]:
        try:
            stdout = b"".join(iter(lambda: channel.recv(32768), b""))
            stderr = b"".join(iter(lambda: channel.recv_stderr(32768), b""))
            done = channel.status_event.wait(max(0.0, deadline - time.monotonic()))
        except (paramiko.SSHException, OSError):
            if time.monotonic() < deadline:
                raise
            done = False
        finally:
            _WATCHDOG.release(ticket)
        if not done or time.monotonic() >= deadline:
            raise CommandTimeout(name)
        return channel.exit_status, stdout, stderr

    def close(self) -> None:
        _WATCHDOG.release(*self._tickets)  # commands never collected (a failure before their turn)
        del self.client


@functools.cache
def _winrm_class() -> type[BaseBackend]:
    """testinfra's WinRM backend with the whole answer of a command bounded (imported only when used)."""
    import winrm.protocol
    from testinfra.backend.winrm import WinRMBackend
    from winrm.exceptions import WinRMOperationTimeoutError

    class BoundedWinRMBackend(WinRMBackend):  # type: ignore[misc]
        # pywinrm's get_command_output retries the server's "operation timeout" answers forever: a command that
        # never ends on the guest would hang the run. Poll the same Receive call under our own deadline instead.
        command_timeout_s = 60.0

        def run_winrm(self, command: str) -> CommandResult:
            protocol = winrm.protocol.Protocol(**self.conn_args)
            shell_id = protocol.open_shell()
            try:
                command_id = protocol.run_command(shell_id, command)
                deadline = time.monotonic() + self.command_timeout_s
                stdout, stderr, rc, done = [], [], None, False
                while not done:
                    if time.monotonic() >= deadline:
                        raise CommandTimeout(command)
                    try:
                        out, err, rc, done = protocol.get_command_output_raw(shell_id, command_id)
                    except WinRMOperationTimeoutError:
                        continue  # the guest is still working: ask again, within our deadline
                    stdout.append(out)
                    stderr.append(err)
                protocol.cleanup_command(shell_id, command_id)
            finally:
                try:
                    protocol.close_shell(shell_id)
                except Exception:  # noqa: BLE001 - closing is best effort; the answer (or its timeout) stands
                    pass
            return self.result(rc, self.encode(command), b"".join(stdout), b"".join(stderr))

    return BoundedWinRMBackend


def winrm_backend(address: str, access: RoleAccess, remote: RemoteAccess, password: str | None) -> BaseBackend:
    """testinfra's WinRM backend, with the inventory's auth, TLS trust and timeouts."""
    port = f":{access.port}" if access.port else ""
    backend = _winrm_class()(f"{access.user}@{address}{port}", no_ssl=not access.winrm_https,
                             read_timeout_sec=int(remote.command_timeout_s) + 10,
                             operation_timeout_sec=int(remote.command_timeout_s))
    backend.command_timeout_s = remote.command_timeout_s
    backend.conn_args.update(password=password, transport=access.winrm_auth,
                             server_cert_validation="validate" if access.tls.verify else "ignore")
    if access.tls.verify and access.tls.ca_bundle is not None:
        backend.conn_args["ca_trust_path"] = str(access.tls.ca_bundle)
    backend._encoding = "utf-8"  # as for SSH: never let testinfra run its own encoding probe on the guest
    return backend


class _Watchdog:
    """Closes the channel of every command still running at its deadline, from one thread per process
    (a threading.Timer per command started a thread each time: ≈ 9 % of a probe's client CPU)."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._due: list[tuple[float, int]] = []  # heap of (deadline, ticket); released tickets stay until due
        self._channels: dict[int, paramiko.Channel] = {}
        self._tickets = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, channel: paramiko.Channel, deadline: float) -> int:
        with self._wake:
            ticket = next(self._tickets)
            self._channels[ticket] = channel
            heapq.heappush(self._due, (deadline, ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ssh-watchdog", daemon=True)
                self._thread.start()
            elif self._due[0][1] == ticket:  # due before everything else: the thread's wait must end sooner
                self._wake.notify()
        return ticket

    def release(self, *tickets: int) -> None:
        with self._wake:
            for ticket in tickets:
                self._channels.pop(ticket, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                expired = []
                while self._due and self._due[0][0] <= now:
                    expired.append(self._channels.pop(heapq.heappop(self._due)[1], None))
                if not expired:
                    self._wake.wait(self._due[0][0] - now if self._due else None)
                    continue
            for channel in expired:  # outside the lock: a close may block on the transport
                if channel is not None:
                    _close_quietly(channel)


_WATCHDOG = _Watchdog()


def _close_quietly(channel: paramiko.Channel) -> None:
    """The watchdog's close: the connection may be gone already (EOFError from paramiko's writer), which is
    fine — the point is that every wait on the channel ends; the caller reports the timeout."""
    try:
        channel.close()
    except (EOFError, OSError, paramiko.SSHException):
        pass


class NotAllowed(Exception):
    """A command outside the allowlist (not an OSError, unlike PermissionError: that would read "unreachable")."""


CommandTimeout = sshasync.CommandTimeout  # one class for both SSH clients (and WinRM)


# Windows console code pages whose Python codec name is not "cp<number>".
_CODECS = {65001: "utf-8", 20127: "ascii", 28591: "latin-1", 54936: "gb18030"}


def console_codec(code_page: int) -> str | None:
    """The Python codec of a Windows console code page (932 → cp932, 65001 → utf-8), None if unknown."""
    try:
        return codecs.lookup(_CODECS.get(code_page, f"cp{code_page}")).name
    except LookupError:
        return None


def _decode(data: bytes, codec: str | None, notes: list[str]) -> str:
    """Text in a Windows console's code page (bytes not valid in it become U+FFFD, and a note says so), or in
    UTF-8 for a host with no code page (Linux, ESXi), where bytes that are not UTF-8 are unexpected output: a
    replaced byte could be the one a build number or state is read from."""
    try:
        return data.decode(codec or "utf-8")
    except UnicodeDecodeError as err:
        if codec is None:
            raise UnexpectedOutput(f"output not valid UTF-8 ({err.reason} at byte {err.start})") from None
        notes.append(f"output not valid {codec} ({err.reason} at byte {err.start}), decoded with replacement")
        return data.decode(codec, errors="replace")


def _handshake_timed_out(err: BaseException) -> bool:
    """paramiko's two faces of a server that accepts TCP and never completes the SSH handshake in time:
    no banner within banner_timeout, or (when connect's own timeout ends first) "No existing session"."""
    if not isinstance(err, paramiko.SSHException):
        return False
    if str(err) == "No existing session":
        return True
    return str(err).startswith("Error reading SSH protocol banner") and any(
        isinstance(e, (socket.timeout, TimeoutError)) for e in chain(err))


def _classify(err: BaseException, stage: str, remote: RemoteAccess, command: str | None = None) -> tuple[str, str]:
    """(probe status, plain reason) of a failure at the connect or command stage."""
    name = type(err).__name__
    if isinstance(err, NotAllowed):
        return "error", str(err)
    if name == "InvalidCredentialsError":  # winrm.exceptions: the guest answered 401
        return "auth failed", f"authentication failed: {err}"
    if isinstance(err, paramiko.BadHostKeyException):
        return "host key rejected", f"the host key of {err.hostname} does not match known_hosts ({remote.known_hosts})"
    if isinstance(err, paramiko.AuthenticationException) and "timeout" not in str(err).lower():
        return "auth failed", f"authentication failed: {err}"
    if isinstance(err, paramiko.SSHException) and "not found in known_hosts" in str(err):
        return "host key rejected", f"{err} ({remote.known_hosts})"
    connect = f"no answer within {remote.connect_timeout_s:g} s"
    if isinstance(err, sshasync.HostKeyRejected):
        return "host key rejected", err.reason
    if isinstance(err, sshasync.HandshakeTimeout):
        return "timeout", f"{connect}: timed out during {err.stage}"
    if isinstance(err, sshasync.ConnectTimeout):
        return "timeout", f"{connect}: timed out during connect"
    if isinstance(err, asyncssh.PermissionDenied):
        return "auth failed", f"authentication failed: {err.reason or 'permission denied'}"
    if isinstance(err, asyncssh.Error):  # the server ended the handshake or the connection (reason in its words)
        where = "the SSH handshake failed" if stage == "connect" else "the SSH connection failed"
        return "error", f"{where}: {err.reason or type(err).__name__}"
    if _handshake_timed_out(err):
        return "timeout", f"{connect}: timed out during the SSH handshake"
    if isinstance(err, paramiko.AuthenticationException):
        return "timeout", f"{connect}: timed out during authentication"
    if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError) and err.errors:
        err = next(iter(err.errors.values()))  # paramiko keeps the socket errors per address tried
    reason = plain_reason(err)
    if name == "WinRMOperationTimeoutError" or reason.startswith("timed out"):
        if stage == "connect":
            return "timeout", f"{connect}: {reason if 'during' in reason else 'timed out during connect'}"
        if "during connect" in reason or "handshake" in reason:  # WinRM connects for each command
            return "timeout", f"{reason} (command {command})"
        return "timeout", f"no answer within {remote.command_timeout_s:g} s: timed out during read (command {command})"
    if reason.startswith(("certificate", "TLS")):
        return "tls rejected", f"TLS verification failed: {reason}"
    if stage == "connect" and isinstance(err, paramiko.SSHException):
        return "error", f"the SSH handshake failed: {err}"
    if isinstance(err, OSError):
        return "unreachable", f"cannot connect: {reason}"
    return "error", f"{name}: {err}"


BackendFactory = Callable[[str, RoleAccess, RemoteAccess, "str | None"], BaseBackend]
FACTORIES: dict[str, BackendFactory] = {"ssh": SshBackend, "winrm": winrm_backend}


def _begin(target: ProbeTarget, access: RoleAccess | None) -> HostProbe:
    """The host's record, already final (status not "ok") when it is not to be contacted."""
    result = HostProbe(role=target.role, key=target.key, name=target.name, address=target.address,
                       transport=access.transport if access else None, status="ok")
    if target.skip_reason is not None or target.address is None:
        result.status, result.reason = "not probed", target.skip_reason or "no address known"
    elif access is None:
        result.status, result.reason = "not configured", f"no remote.{target.role} access in the inventory"
    return result


def _checked_commands(target: ProbeTarget, nsx: str) -> tuple[str, ...]:
    commands = target.commands or commands_for(target.role, nsx)
    for command in commands:  # all checked before any runs
        if not is_allowed(command):
            raise NotAllowed(f"{command!r} is not an allowed read-only command")
    return commands


def _record(result: HostProbe, raw: list[Raw], nsx: str) -> None:
    """The outputs as text (a Windows guest's in its console code page, from its chcp), then validated."""
    notes: list[str] = []  # how output was decoded, when not as the host wrote it
    codec: str | None = None  # a Windows console's, from its chcp; None: the host writes UTF-8 (Linux, ESXi)
    try:
        for command, rc, stdout_bytes, stderr_bytes, seconds in raw:
            if command == "chcp":
                codec = _chcp_codec(stdout_bytes, notes)
            try:
                stdout, stderr = _decode(stdout_bytes, codec, notes), _decode(stderr_bytes, codec, notes)
            except UnexpectedOutput as err:
                raise UnexpectedOutput(f"{command}: {err}") from None
            result.outputs.append(CommandOutput(command=command, rc=rc, stdout=stdout, stderr=stderr,
                                                seconds=round(seconds, 3)))
            if rc < 0:  # both clients' "no exit-status came": the output may be cut, so it is not evidence
                raise UnexpectedOutput(f"{command}: no exit status (the command was killed on the host, or its "
                                       f"channel closed before it finished)")
        validate(result, nsx)
        result.reason = "; ".join(notes) or None
    except UnexpectedOutput as err:
        result.status, result.reason = "unexpected output", "; ".join([str(err), *notes])


def probe(target: ProbeTarget, access: RoleAccess | None, remote: RemoteAccess, nsx: str,
          password: str | None) -> HostProbe:
    """Run the role's allowlisted commands on one host; never raises."""
    result = _begin(target, access)
    if result.status != "ok" or access is None:
        return result  # not contacted: no connection, no event loop
    if access.transport == "ssh" and remote.ssh_client == "asyncssh":
        return sshasync.run(_AsyncProbes(remote, nsx).probe(target, access, password))
    started = time.monotonic()
    backend = None
    stage, command = "connect", None
    try:
        backend = FACTORIES[access.transport](target.address or "", access, remote, password)
        if isinstance(backend, SshBackend):
            _ = backend.client  # connect now, so a timeout is attributed to the right stage
        stage = "command"
        commands = _checked_commands(target, nsx)
        pending = []
        for command in commands:  # a loop, not a comprehension: `command` names the one that failed
            pending.append((command, _start(backend, command)))
        raw: list[Raw] = []
        for command, finish in pending:
            out, seconds = finish()
            raw.append((command, out.rc, out.stdout_bytes, out.stderr_bytes, seconds))
        _record(result, raw, nsx)
    except Exception as err:  # noqa: BLE001 - every failure becomes the recorded reason
        result.status, result.reason = _classify(err, stage, remote, command)
    finally:
        if isinstance(backend, SshBackend):
            backend.close()
        result.seconds = round(time.monotonic() - started, 3)
    return result


class _AsyncProbes:
    """SSH probes over asyncssh in one event loop (dsfleet.sshasync), same records as :func:`probe`."""

    def __init__(self, remote: RemoteAccess, nsx: str) -> None:
        self.remote, self.nsx = remote, nsx
        self.setup_error: Exception | None = None
        self.lookup: Any = None
        path = str(remote.known_hosts or "")
        try:
            known = (_known_blobs(path, os.path.getmtime(path) if os.path.isfile(path) else 0.0)
                     if remote.verify_host_keys else None)
            self.lookup = _ssh_config(str(remote.ssh_config)).lookup if remote.ssh_config else None
        except Exception as err:  # noqa: BLE001 - an unreadable known_hosts or ssh_config: every host says why
            known, self.setup_error = None, err
        self.ssh = sshasync.AsyncSsh(remote, known)

    async def probe(self, target: ProbeTarget, access: RoleAccess, password: str | None) -> HostProbe:
        result = _begin(target, access)
        if result.status != "ok":
            return result
        started = time.monotonic()
        command = None
        try:
            if self.setup_error is not None:
                raise self.setup_error  # recorded per host, as the paramiko path records it
            commands = _checked_commands(target, self.nsx)
            where = sshasync.endpoint(target.address or "", access, self.remote, self.lookup)
            _record(result, await self.ssh.run(where, password, commands), self.nsx)
        except sshasync.CommandFailed as err:
            result.status, result.reason = _classify(err.error, "command", self.remote, err.command)
        except Exception as err:  # noqa: BLE001 - every failure becomes the recorded reason
            result.status, result.reason = _classify(err, "connect", self.remote, command)
        result.seconds = round(time.monotonic() - started, 3)
        return result

    async def many(self, targets: list[ProbeTarget], passwords: dict[str, str | None], concurrency: int,
                   deadline: float | None, on_done: Callable[[int], None] | None) -> list[HostProbe]:
        bound = asyncio.Semaphore(concurrency)

        async def one(target: ProbeTarget) -> HostProbe:
            async with bound:
                if deadline is not None and time.monotonic() >= deadline:
                    return _not_contacted(target)
                result = await self.probe(target, self.remote.roles[target.role], passwords.get(target.role))
            if on_done is not None:
                on_done(1)
            return result

        return list(await asyncio.gather(*(one(t) for t in targets)))


def _not_contacted(target: ProbeTarget) -> HostProbe:
    return HostProbe(role=target.role, key=target.key, name=target.name, address=target.address, transport=None,
                     status="timeout", reason="not contacted: the gathering deadline (inventory deadline_s) passed")


def _start(backend: BaseBackend, command: str) -> Callable[[], tuple[CommandResult, float]]:
    """What returns the command's result and its seconds from start to answer. SSH: the command starts now,
    on its own channel. WinRM (a shell per command, over HTTP): it runs when its result is asked for."""
    if isinstance(backend, SshBackend):
        started = time.monotonic()
        return functools.partial(_timed, backend.start(command), started)
    run = functools.partial(testinfra.host.Host(backend).run, command)
    return lambda: _timed(run, time.monotonic())


def _timed(finish: Callable[[], CommandResult], started: float) -> tuple[CommandResult, float]:
    return finish(), time.monotonic() - started


def _chcp_codec(stdout: bytes, notes: list[str]) -> str:
    """The codec of the code page chcp names. Its label may be in that very code page ("現在のコード ページ"
    in CP932): the number is ASCII whatever the code page, so it is read before the text is decoded."""
    code_page = parse_chcp(stdout.decode("ascii", errors="replace"))
    codec = console_codec(code_page)
    if codec is None:
        notes.append(f"console code page {code_page} is not known here: output decoded as UTF-8 with replacement")
        return "utf-8"
    return codec


def validate(result: HostProbe, nsx: str) -> None:
    """Raise UnexpectedOutput unless every output parses (the checks parse again, from the snapshot)."""
    agent_running = True
    for out in result.outputs:
        cmd = out.command
        if cmd == "chcp":
            parse_chcp(out.stdout)
        elif cmd.startswith("sc query "):
            parse_sc_query(cmd.removeprefix("sc query "), out.stdout, out.rc)
        elif cmd == "service ds_agent status":
            agent_running = parse_service_status("ds_agent", out.stdout, out.rc)[0]
        elif cmd.startswith("/opt/ds_agent/dsa_query") and agent_running:
            parse_agent_state(out.stdout)  # with ds_agent stopped it cannot answer: the service state says it all
        elif cmd.startswith("rpm -q "):
            parse_rpm_query("ds_agent", out.stdout, out.rc)
        elif cmd.startswith("/etc/init.d/"):
            parse_init_status(MUX[nsx], out.stdout, out.rc)
        elif cmd == CERTUTIL_ROOT:
            parse_certutil_store(out.stdout, out.rc)
        elif cmd == HOTFIX:
            parse_hotfixes(out.stdout, out.rc)


TARGETS_PER_PROCESS = 250  # below this a second process costs more (start-up, imports) than it saves


# Threads for the hosts a thread pool probes (paramiko, WinRM), whatever remote.concurrency allows: measured
# with paramiko on 1,000 lab guests, 64 threads 16.9 s at 13.3 ms of client CPU per guest, 128: 18.5 s / 15.1 ms,
# 256: 30.0 s / 24.4 ms (more threads only contend for the GIL).
MAX_THREADS = 64


def processes_for(remote: RemoteAccess, count: int) -> int:
    """Worker processes for ``count`` targets: the inventory's number, or one per 250 up to the CPU count."""
    if remote.processes:
        return max(1, min(remote.processes, count))
    return max(1, min(os.cpu_count() or 1, count // TARGETS_PER_PROCESS))


def probe_all(targets: list[ProbeTarget], remote: RemoteAccess, nsx: str, passwords: dict[str, str | None],
              deadline_s: float | None = None, on_done: Callable[[int], None] | None = None) -> list[HostProbe]:
    """Probe every target with at most ``remote.concurrency`` hosts in flight in all; results in target order.

    SSH handshakes cost the client ~10 ms of CPU each, and the GIL keeps one process on one core, so large
    fleets are split round-robin across worker processes, each with its share of the concurrency bound.
    A host not started within ``deadline_s`` seconds is not contacted and ends as a timeout with that reason
    (each started probe is bounded by the connect and command timeouts). ``on_done(n)`` is told as hosts
    finish (one by one in-process; a share at a time from worker processes).
    """
    if not targets:
        return []
    workers = processes_for(remote, len(targets))
    if workers == 1:
        return _probe_threads(targets, remote, nsx, passwords, remote.concurrency, deadline_s, on_done)
    # Shares small enough to report progress by, each worker running one at a time with its part of the bound.
    per_share = max(TARGETS_PER_PROCESS // 2, len(targets) // (workers * 8))
    shares = [targets[i:i + per_share] for i in range(0, len(targets), per_share)]
    bound = max(1, remote.concurrency // workers)
    # spawn, not fork: the parent has threads (pyvmomi, requests pools) that a fork would copy mid-state.
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_probe_threads, share, remote, nsx, passwords, bound, deadline_s)
                       for share in shares]
            parts = []
            for future, share in zip(futures, shares):
                parts.append(future.result())
                if on_done is not None:
                    on_done(len(share))  # in submission order: close enough for a progress count
    except BrokenProcessPool:  # e.g. a host program whose __main__ cannot be re-imported: stay in-process
        return _probe_threads(targets, remote, nsx, passwords, remote.concurrency, deadline_s, on_done)
    found = {(p.role, p.key): p for part in parts for p in part}
    return [found[(t.role, t.key)] for t in targets]


def _probe_threads(targets: list[ProbeTarget], remote: RemoteAccess, nsx: str, passwords: dict[str, str | None],
                   concurrency: int, deadline_s: float | None = None,
                   on_done: Callable[[int], None] | None = None) -> list[HostProbe]:
    """One worker's share: SSH hosts (asyncssh) in an event loop on this thread, the others (WinRM, paramiko)
    in a thread pool beside it; the concurrency bound is split between the two by their number of hosts."""
    deadline = time.monotonic() + deadline_s if deadline_s is not None else None
    in_loop = [t for t in targets if _in_event_loop(t, remote)]
    threaded = [t for t in targets if not _in_event_loop(t, remote)]

    def one(target: ProbeTarget) -> HostProbe:
        if deadline is not None and time.monotonic() >= deadline:
            return _not_contacted(target)
        result = probe(target, remote.roles.get(target.role), remote, nsx, passwords.get(target.role))
        if on_done is not None:
            on_done(1)
        return result

    loop_bound = max(1, concurrency * len(in_loop) // len(targets)) if in_loop else 0
    found: dict[tuple[str, str], HostProbe] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency - loop_bound, len(threaded), MAX_THREADS)),
                            thread_name_prefix="probe") as pool:
        pending = pool.map(one, threaded)
        if in_loop:
            many = _AsyncProbes(remote, nsx).many(in_loop, passwords, loop_bound, deadline, on_done)
            found.update(((p.role, p.key), p) for p in sshasync.run(many))
        found.update(((p.role, p.key), p) for p in pending)
    return [found[(t.role, t.key)] for t in targets]


def _in_event_loop(target: ProbeTarget, remote: RemoteAccess) -> bool:
    """SSH over asyncssh, and contacted at all (the others' records need no connection)."""
    access = remote.roles.get(target.role)
    return (access is not None and access.transport == "ssh" and remote.ssh_client == "asyncssh"
            and target.skip_reason is None and target.address is not None)
