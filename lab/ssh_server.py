"""SSH endpoints for the lab's ESXi hosts, DSVAs and Windows guests: one asyncssh process, one loopback
address per host, answering seed 000's commands in their real output formats from scenario state.

ESXi hosts and DSVAs accept the lab's client key; Windows guests (OpenSSH for Windows, cmd.exe) accept a
password from DSFLEET_LAB_GUEST_PASSWORD. An endpoint marked ``ssh: down`` is not listened on
(unreachable); ``ssh: stall`` accepts commands and never answers (a hung host).

Runtime faults: ``<lab dir>/faults.json`` key ``"ssh"`` maps an address to a mode, re-read when the file
changes (checked per connection and per command): ``silent`` accepts TCP and never sends the SSH banner;
``hang-command`` never finishes a command; ``no-exit-status`` answers in full, then closes the channel without
an exit status (a command killed on the host); ``garbled`` answers random text; ``ja-JP`` is a Japanese Windows
guest (console code page 932, every output in CP932, Japanese messages); ``de-DE-labels`` a language pack
that translates sc's labels and messages too (console code page 850). Every command, rejected ones
included, is appended to ``<lab dir>/commands-ssh.log`` as ``<address> <user> <command>``.

Relays run the suite's curl probe for real (validated against dsfleet.updatepath.CURL_COMMAND, no shell),
trusting the lab's ActiveUpdate CA as a relay trusts Trend Micro's, so the proxy and the source decide.

Run: ``python -m lab.ssh_server CONFIG.json``
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import shlex
import socket
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import asyncssh
from asyncssh.packet import UInt32

from dsfleet import sshasync
from dsfleet.sshasync import lean_connection
from dsfleet.updatepath import CURL_COMMAND

# The stand-in shares the benchmark machine's cores with the suite, so it spends no CPU a real host would
# spend on its own: curve25519 key exchange only (asyncssh's first choice, mlkem768x25519, costs both sides
# ≈ 0.3 ms more per guest; every client here and OpenSSH since 6.5 has curve25519); the login's SASLprep
# of the one user name and password worked out once instead of per login; no line editor (no client asks
# for a terminal); and no re-reading of its configuration per login: asyncssh rebuilds a connection's options
# (in a worker thread) when authentication begins, so that an sshd_config's Match blocks can apply to the
# user and client address, and the stand-in has no sshd_config (options config=()), so the rebuilt options
# would equal the ones the connection has.
KEX_ALGS = ["curve25519-sha256", "curve25519-sha256@libssh.org"]
_saslprep = functools.lru_cache(maxsize=256)(asyncssh.saslprep.saslprep)
setattr(asyncssh.connection, "saslprep", _saslprep)  # the name each module calls it by
setattr(asyncssh.auth, "saslprep", _saslprep)


async def _same_config(self: asyncssh.SSHServerConnection) -> None:
    return None


asyncssh.SSHServerConnection.reload_config = _same_config  # type: ignore[method-assign]

SC = {"vsepflt": "2  FILE_SYSTEM_DRIVER", "vmci": "1  KERNEL_DRIVER"}
MUX = {"nsx-v": "vShield-Endpoint-Mux", "nsx-t": "nsx-context-mux"}


@dataclass(frozen=True)
class Locale:
    """How a Windows guest's console speaks: its code page, chcp's line, sc's labels and 1060 message."""
    code_page: int
    codec: str
    chcp: str
    labels: tuple[str, ...]  # SERVICE_NAME TYPE STATE WIN32_EXIT_CODE SERVICE_EXIT_CODE CHECKPOINT WAIT_HINT
    failed: str
    missing: str


ENGLISH = ("SERVICE_NAME", "TYPE", "STATE", "WIN32_EXIT_CODE", "SERVICE_EXIT_CODE", "CHECKPOINT", "WAIT_HINT")
LOCALES = {
    None: Locale(437, "cp437", "Active code page: 437", ENGLISH, "FAILED",
                 "The specified service does not exist as an installed service."),
    # Japanese builds keep sc's English labels; the system message is Japanese (tests/samples/windows).
    "ja-JP": Locale(932, "cp932", "現在のコード ページ: 932", ENGLISH, "FAILED",
                    "指定されたサービスはインストールされたサービスとして存在しません。"),
    "de-DE-labels": Locale(850, "cp850", "Aktive Codepage: 850.",
                           ("DIENSTNAME", "TYP", "ZUSTAND", "WIN32_EXITCODE", "DIENST_EXITCODE", "PRÜFPUNKT",
                            "WARTEHINWEIS"), "FEHLER", "Der angegebene Dienst ist kein installierter Dienst."),
}


def sc_query(name: str, state: str, locale: Locale = LOCALES[None]) -> tuple[str, int]:
    if state == "missing":
        return (f"[SC] EnumQueryServicesStatus:OpenService {locale.failed} 1060:\r\n\r\n"
                f"{locale.missing}\r\n\r\n"), 1060
    code, word, flags = ((4, "RUNNING", "STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN") if state == "running"
                         else (1, "STOPPED", "NOT_STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN"))
    label = [f"{x:<19}" for x in locale.labels]
    lines = ["", f"{locale.labels[0]}: {name}", f"        {label[1]}: {SC[name]}",
             f"        {label[2]}: {code}  {word}", f"                                ({flags})",
             f"        {label[3]}: 0  (0x0)", f"        {label[4]}: 0  (0x0)",
             f"        {label[5]}: 0x0", f"        {label[6]}: 0x0", ""]
    return "\r\n".join(lines), 0


class Faults:
    """The "ssh" key of <lab dir>/faults.json (address → mode), re-read when the file's mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = 0.0
        self.modes: dict[str, str] = {}

    def mode(self, address: str) -> str | None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self.mtime, self.modes = 0.0, {}
            return None
        if mtime != self.mtime:
            try:
                self.modes = json.loads(self.path.read_text()).get("ssh") or {}
                self.mtime = mtime
            except (OSError, ValueError):
                return self.modes.get(address)  # caught mid-write: keep the last complete version
        return self.modes.get(address)


# Windows agents and relays (WIN-001): root certificates as certutil lists them (sha1, serial, subject, dates).
ROOTS = {
    "ms-2011": ("8f43288ad272f3103b6fb1428485ea3014c0bcfe", "3f8bc8b5fc9fb29643b569d66c42e144",
                "CN=Microsoft Root Certificate Authority 2011, O=Microsoft Corporation, L=Redmond, S=Washington, C=US",
                "3/22/2011 3:05 PM", "3/22/2036 3:13 PM"),
    "digicert-assured": ("0563b8630d62d75abbc8ab1e4bdfb5a899b24d43", "0ce7e0e517d846fe8fe560fc1bf03039",
                         "CN=DigiCert Assured ID Root CA, OU=www.digicert.com, O=DigiCert Inc, C=US",
                         "11/10/2006 9:00 AM", "11/10/2031 9:00 AM"),
    "digicert-g2": ("df3c24f9bfd666761b268073fe06d1cc8d4f82a4", "033af1e6a711a9a0bb2864b11d09fae5",
                    "CN=DigiCert Global Root G2, OU=www.digicert.com, O=DigiCert Inc, C=US",
                    "8/1/2013 9:00 PM", "1/15/2038 9:00 PM"),
    "digicert-g3": ("7e04de896a3e666d00e687d33ffad93be83d349e", "055556bcf25ea43535c3a40fd5ab4572",
                    "CN=DigiCert Global Root G3, OU=www.digicert.com, O=DigiCert Inc, C=US",
                    "8/1/2013 9:00 PM", "1/15/2038 9:00 PM"),
    "digicert-g4": ("ddfb16cd4931c973a2037d3fc83a4d7d775d05e4", "059b1b579e8e2132e23907bda777755c",
                    "CN=DigiCert Trusted Root G4, OU=www.digicert.com, O=DigiCert Inc, C=US",
                    "8/1/2013 9:00 PM", "1/15/2038 9:00 PM"),
    "ms-identity-2020": ("f40042e2e5f7e8ef8189fed15519aece42c3bfa2", "5498d2d1d45b1995481379c811c08799",
                         "CN=Microsoft Identity Verification Root Certificate Authority 2020, O=Microsoft Corporation, "
                         "C=US", "4/16/2020 1:36 PM", "4/16/2045 1:44 PM"),
}
# Scenario presets: every root; the ACS root missing; a set imported by hand years ago (older Windows, whose
# certutil writes the hash as spaced byte pairs).
ROOT_SETS = {"all-present": (tuple(ROOTS), False), "acs-root-missing": (tuple(r for r in ROOTS if r !=
                                                                               "ms-identity-2020"), False),
             "old-manual-import": (("ms-2011", "digicert-assured"), True)}
AGENT_COMMANDS = ("certutil -store Root", "powershell -NoProfile -NonInteractive -Command Get-HotFix")


def certutil_store(preset: str) -> tuple[str, int]:
    names, spaced = ROOT_SETS[preset]
    lines = ['Root "Trusted Root Certification Authorities"']
    for n, name in enumerate(names):
        sha1, serial, subject, before, after = ROOTS[name]
        shown = " ".join(sha1[i:i + 2] for i in range(0, 40, 2)) if spaced else sha1
        lines += [f"================ Certificate {n} ================", f"Serial Number: {serial}",
                  f"Issuer: {subject}", f" NotBefore: {before}", f" NotAfter: {after}", f"Subject: {subject}",
                  "Signature matches Public Key", "Root Certificate: Subject matches Issuer",
                  f"Cert Hash(sha1): {shown}", "No key provider information",
                  "Cannot find the certificate and private key for decryption.", ""]
    lines.append("CertUtil: -store command completed successfully.")
    return "\r\n".join(lines) + "\r\n", 0


def get_hotfix(host: str, kbs: list[str]) -> tuple[str, int]:
    system = "NT AUTHORITY\\SYSTEM"
    rows = [f"{host[:13]:<14}{'Security Update':<17}{kb:<14}{system:<21}9/14/2021 12:00:00 AM" for kb in kbs]
    head = ["", "Source        Description      HotFixID      InstalledBy          InstalledOn",
            "------        -----------      --------      -----------          -----------"]
    return "\r\n".join(head + rows + ["", ""]), 0


def log_line(address: str, user: str, command: str) -> str:
    return f"{address} {user} {' '.join(command.split())}\n"


def log_command(path: Path, address: str, user: str, command: str) -> None:
    """One line per command, rejected ones included (O_APPEND keeps concurrent lines whole)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(log_line(address, user, command))


class CommandLog:
    """log_command for an event loop: the lines of one loop turn appended together, at the end of that turn.

    An open and a write per command were ≈ 0.3 ms of the stand-in's CPU per guest. A line is still on disk
    before its command's answer leaves (the handler flushes before it answers; after the injected latency
    that is a no-op), so a test that reads the log after its probe sees every command. The file is opened
    per turn, so a test may truncate or replace it between runs, and every process of the stand-in appends
    whole lines with one O_APPEND write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[str] = []

    def add(self, address: str, user: str, command: str) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append(log_line(address, user, command))

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = "".join(self.pending), []
        with open(self.path, "ab", buffering=0) as f:
            f.write(lines.encode())


def garbled() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits + "    \r\n", k=random.randint(20, 200)))


def encode(endpoint: dict[str, Any], mode: str | None, text: str) -> bytes:
    """A Windows guest writes in its console code page; the Linux hosts in UTF-8."""
    if endpoint["role"] != "windows" and "windows_agent" not in endpoint:
        return text.encode()
    return text.encode(LOCALES.get(mode, LOCALES[None]).codec, errors="replace")


def ds_agent_status(running: bool) -> tuple[str, int]:
    active = ("active (running) since Mon 2025-09-29 10:12:01 JST; 7 weeks 5 days ago" if running
              else "inactive (dead) since Fri 2026-11-20 02:41:17 JST; 21h ago")
    text = ("Redirecting to /bin/systemctl status ds_agent.service\n"
            "● ds_agent.service - Trend Micro Deep Security Agent\n"
            "   Loaded: loaded (/usr/lib/systemd/system/ds_agent.service; enabled; vendor preset: disabled)\n"
            f"   Active: {active}\n" + (" Main PID: 1187 (ds_agent)\n" if running else ""))
    return text, 0 if running else 3


def answer(endpoint: dict[str, Any], command: str, nsx: str, mode: str | None = None) -> tuple[str, int]:
    role = endpoint["role"]
    if mode == "garbled":
        return garbled(), 0
    agent = endpoint.get("windows_agent")  # a Windows agent or relay (WIN-001), also on a relay's endpoint
    if agent is not None and (command in AGENT_COMMANDS or command == "chcp"):
        if command == "chcp":
            return LOCALES.get(mode, LOCALES[None]).chcp + "\r\n", 0
        if command == AGENT_COMMANDS[0]:
            return certutil_store(agent.get("roots", "all-present"))
        return get_hotfix(endpoint["name"].upper(), agent["hotfixes"])
    if role == "windows":
        locale = LOCALES.get(mode, LOCALES[None])
        if command == "chcp":
            return locale.chcp + "\r\n", 0
        for name in SC:
            if command == f"sc query {name}":
                return sc_query(name, endpoint.get(name, "running"), locale)
        return f"'{command.split()[0]}' is not recognized as an internal or external command,\r\n", 1
    if role == "dsva":
        running = endpoint.get("agent", "running") == "running"
        if command == "service ds_agent status":
            return ds_agent_status(running)
        if command == "/opt/ds_agent/dsa_query -c GetAgentStatus":
            if not running:
                return "Failed to connect to the agent: the agent is not running\n", 1
            return ("AgentStatus.agentState: green\nAgentStatus.dwellTime: 0\n"
                    "AgentStatus.lastCommunication: 1763700000\n"), 0
        if command == "rpm -q ds_agent":
            return f"ds_agent-{endpoint['build']}.el7.x86_64\n", 0
    if role == "esxi":
        mux = MUX[nsx]
        if command == f"/etc/init.d/{mux} status":
            running = endpoint.get("mux", "running") == "running"
            return (f"{mux} is running\n", 0) if running else (f"{mux} is not running\n", 3)
        if command.startswith("/etc/init.d/"):
            return f"sh: {command.split()[0]}: not found\n", 127
    return f"sh: {(command.split() or [''])[0]}: command not found\n", 127


async def run_curl(command: str, lab_dir: Path) -> tuple[bytes, bytes, int]:
    """The relay's curl probe, run for real: only the suite's exact command shape, argv without a shell."""
    if not CURL_COMMAND.match(command):
        return b"", b"sh: refused: not the suite's curl probe\n", 126
    argv = shlex.split(command)
    limit = int(argv[argv.index("--max-time") + 1]) + 5
    env = dict(os.environ, CURL_CA_BUNDLE=str(lab_dir / "au-ca.pem"))
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return b"", f"curl: killed after {limit} s\n".encode(), 28
    return out, err, proc.returncode or 0


class Mute:
    """A "silent" host's transport: it accepts TCP and never sends anything, the SSH banner included (what
    the connection reads is still dropped by asyncssh's handshake, which waits in vain for the client's)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def server_class(endpoints: dict[str, dict[str, Any]], password: str,
                 session: Callable[[dict[str, Any]], asyncssh.SSHServerSession[bytes]],
                 silent: Callable[[str], bool]) -> type[asyncssh.SSHServer]:
    """One class for every endpoint of the process; a connection's endpoint is the address it was accepted on."""

    class Server(asyncssh.SSHServer):
        endpoint: dict[str, Any] = {}
        windows = False  # password logins, as OpenSSH on Windows

        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            self.endpoint = endpoints[conn.get_extra_info("sockname")[0]]
            self.windows = self.endpoint["role"] == "windows" or "windows_agent" in self.endpoint
            # Called before asyncssh sends its banner: a "silent" fault (checked per connection) mutes it.
            if silent(self.endpoint["address"]):
                setattr(conn, "_transport", Mute(getattr(conn, "_transport")))
            else:
                lean_connection(conn)  # the client's packet savings on this side too (sends per loop turn)

        def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
            return session(self.endpoint)

        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return self.windows

        def validate_password(self, username: str, pw: str) -> bool:
            return self.windows and username == "Administrator" and pw == password

        def public_key_auth_supported(self) -> bool:
            # A Windows relay also takes the relay key.
            return self.endpoint["role"] not in ("windows", "windows_agent")

    return Server


def listen(address: str, port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(256)
    listener.setblocking(False)
    return listener


async def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    lab_dir = config_path.parent
    faults = Faults(lab_dir / "faults.json")
    command_log = CommandLog(lab_dir / "commands-ssh.log")
    password = os.environ.get("DSFLEET_LAB_GUEST_PASSWORD", "")
    latency = config.get("latency_ms", 0) / 1000
    host_key = asyncssh.read_private_key(config["host_key"])
    authorized = asyncssh.read_authorized_keys(config["authorized_keys"])
    nsx = config["nsx"]

    class Command(asyncssh.SSHServerSession):  # type: ignore[type-arg]
        """One exec channel: its command logged, then answered after the latency (or never, for a hung
        host). A plain session with a timer, not an asyncssh "process" (a task, a sleep and stdin/stdout
        streams per command): the stand-in's CPU is the benchmark's, which a real host's is not."""

        def __init__(self, endpoint: dict[str, Any]) -> None:
            self.endpoint = endpoint
            self.chan: Any = None
            self.command = ""
            self.timer: asyncio.TimerHandle | None = None

        def connection_made(self, chan: Any) -> None:
            self.chan = chan

        def exec_requested(self, command: str) -> bool:
            self.command = command
            return True

        def eof_received(self) -> bool:
            return True  # the client is done sending (nothing is read): the answer still comes

        def session_started(self) -> None:
            command, address = self.command, self.endpoint["address"]
            command_log.add(address, self.chan.get_extra_info("username") or "-", command)
            mode = faults.mode(address)
            if self.endpoint.get("ssh") == "stall" or mode == "hang-command":
                return  # a hung host: never answers, the client's command timeout must fire
            if self.endpoint["role"] == "relay" and command.startswith("curl ") and mode != "garbled":
                task = asyncio.create_task(self.curl(command, mode))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                return
            self.timer = asyncio.get_running_loop().call_later(latency, self.reply, command, mode)

        async def curl(self, command: str, mode: str | None) -> None:
            await asyncio.sleep(latency)
            stdout, stderr, rc = await run_curl(command, lab_dir)
            if not self.chan.is_closing():
                self.answer(stdout, stderr, rc, mode)

        def reply(self, command: str, mode: str | None) -> None:
            text, rc = answer(self.endpoint, command, nsx, mode)
            self.answer(encode(self.endpoint, mode, text), b"", rc, mode)

        def answer(self, stdout: bytes, stderr: bytes, rc: int, mode: str | None) -> None:
            command_log.flush()  # its line on disk before its answer leaves (done already after a latency)
            self.chan.write(stdout)
            if stderr:
                self.chan.write_stderr(stderr)
            if mode == "no-exit-status":  # the whole answer, then the channel closes with no status (killed)
                self.chan.close()
            elif rc > 0xFF:  # OpenSSH for Windows reports 32-bit exit codes (sc's 1060); asyncssh's exit() keeps 8 bits
                self.chan._send_request(b"exit-status", UInt32(rc))
                self.chan.close()
            else:
                self.chan.exit(rc)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.timer is not None:
                self.timer.cancel()  # the client gave up (or went away) first

    # One options object for the process, built once: asyncssh.listen() and run_server() would rebuild it
    # (in a worker thread) per endpoint or per connection: ≈ 0.3 ms of the stand-in's CPU per guest
    # and, at 10,000 endpoints, seconds of start-up. Each endpoint's socket gets the connection factory
    # asyncssh.listen() itself uses.
    serving = {e["address"]: e for e in config["endpoints"] if e.get("ssh") != "down"}
    options = asyncssh.SSHServerConnectionOptions(
        server_factory=server_class(serving, password, Command, lambda address: faults.mode(address) == "silent"),
        server_host_keys=[host_key], authorized_client_keys=authorized, encoding=None, kex_algs=KEX_ALGS,
        encryption_algs=sshasync.cipher_algs(),
        line_editor=False, config=())
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()  # relays' curl probes: a reference until each ends
    servers = [await loop.create_server(lambda: asyncssh.SSHServerConnection(loop, options),
                                        sock=listen(address, config["port"]), backlog=256)
               for address in serving]
    ready = Path(config["ready_file"])
    ready.with_suffix(".tmp").write_text("listening\n")
    ready.with_suffix(".tmp").rename(ready)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def serve_in_processes(config_path: Path) -> None:
    """``"processes": N`` in the config: N processes (forked before any event loop or thread exists), each
    serving every N-th endpoint. One asyncio process is one core; at 10,000 guests the stand-in's handshakes
    would otherwise be the benchmark's bottleneck, which a real fleet (a CPU per guest) never has.
    They share the process group, so the lab's stop ends them all."""
    config = json.loads(config_path.read_text())
    count = max(1, int(config.get("processes", 1)))
    if count == 1:
        sshasync.run(main(config_path))  # uvloop where installed, as the suite's client
        return
    ready = Path(config["ready_file"])
    for index in range(count):
        part = config_path.with_name(f"{config_path.stem}-{index}.json")
        part.write_text(json.dumps({**config, "endpoints": config["endpoints"][index::count],
                                    "ready_file": str(ready.with_name(f"{ready.stem}-{index}.ready"))}))
        if index < count - 1 and os.fork() == 0:
            sshasync.run(main(part))
            os._exit(0)
    # The last part in this process; the lab's ready file once every part listens.

    async def announce() -> None:
        while not all(ready.with_name(f"{ready.stem}-{i}.ready").exists() for i in range(count)):
            await asyncio.sleep(0.05)
        ready.with_suffix(".tmp").write_text("listening\n")
        ready.with_suffix(".tmp").rename(ready)

    async def run_last() -> None:
        await asyncio.gather(main(config_path.with_name(f"{config_path.stem}-{count - 1}.json")), announce())

    sshasync.run(run_last())


if __name__ == "__main__":
    serve_in_processes(Path(sys.argv[1]))
