"""Benchmark: client CPU per guest of each SSH client dsfleet could use, against one bare loopback server.

    .venv/bin/python -m lab.bench_ssh_clients [--guests 300] [--latency-ms 100]

Each guest is one connection running three commands at once (as a Windows guest's probe: chcp and two
``sc query``), each answered after the latency. The server is asyncssh in its own process, doing nothing else,
so the figures isolate the client: asyncssh with AES-GCM preferred (dsfleet's choice) and with its default
cipher order, pytest-testinfra's paramiko backend's library (paramiko, a thread per connection), and the
OpenSSH binary that testinfra's ``ssh`` backend runs once per command (plain, and with a ControlMaster per guest),
and last dsfleet.sshasync itself, as the probe runs it.
Prints CPU seconds per guest of the client (its own process and the ``ssh`` processes it starts), the server's,
wall time, and the CPU calibration loop. The choice is explained in the README ("The SSH client").
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import asyncssh
import paramiko

COMMANDS = ("chcp", "sc query vsepflt", "sc query vmci")
ANSWER = b"SERVICE_NAME: vsepflt\r\n        STATE              : 4  RUNNING\r\n"
GCM = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]


def calibration() -> float:
    started = time.perf_counter()
    sum(i * i for i in range(10**7))
    return time.perf_counter() - started


def _serve(port: int, folder: str, latency: float, ready: Any) -> None:
    async def main() -> None:
        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            await asyncio.sleep(latency)
            process.stdout.write(ANSWER)
            process.exit(0)

        class Server(asyncssh.SSHServer):
            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return password == "bench"

        await asyncssh.listen("127.0.0.1", port, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
                              authorized_client_keys=f"{folder}/client.pub", server_factory=Server,
                              process_factory=handle, encoding=None, backlog=512)
        ready.set()
        await asyncio.sleep(3600)

    asyncio.run(main())


def _asyncssh(port: int, guests: int, ciphers: list[str] | None) -> None:
    async def main() -> None:
        options = asyncssh.SSHClientConnectionOptions(
            username="bench", password="bench", known_hosts=None, client_keys=None, agent_path=None, config=(),
            **({"encryption_algs": ciphers} if ciphers else {}))
        bound = asyncio.Semaphore(64)

        async def one() -> None:
            async with bound, asyncssh.connect("127.0.0.1", port, options=options) as conn:
                await asyncio.gather(*(conn.run(c, encoding=None) for c in COMMANDS))

        await asyncio.gather(*(one() for _ in range(guests)))

    asyncio.run(main())


def _dsfleet(port: int, guests: int) -> None:
    """dsfleet.sshasync as the probe runs it (a channel per command, whole exit status, writes coalesced per
    loop turn, no ignore packets). Imported here, last: it changes asyncssh's logging for the whole process."""
    from dsfleet.inventory import RemoteAccess
    from dsfleet.sshasync import AsyncSsh, Endpoint

    remote = RemoteAccess(concurrency=64, processes=1, connect_timeout_s=30.0, command_timeout_s=30.0,
                          verify_host_keys=False, known_hosts=None, ssh_config=None, roles={})
    ssh = AsyncSsh(remote, None)
    where = Endpoint("127.0.0.1", port, "bench", None, None, f"[127.0.0.1]:{port}")

    async def main() -> None:
        bound = asyncio.Semaphore(64)

        async def one() -> None:
            async with bound:
                await ssh.run(where, "bench", COMMANDS)

        await asyncio.gather(*(one() for _ in range(guests)))

    asyncio.run(main())


def _paramiko(port: int, guests: int) -> None:
    def one(_: int) -> None:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", port, username="bench", password="bench", allow_agent=False,
                       look_for_keys=False)
        transport = client.get_transport()
        assert transport is not None
        channels = []
        for command in COMMANDS:
            channel = transport.open_session()
            channel.exec_command(command)
            channels.append(channel)
        for channel in channels:
            channel.makefile().read()
            channel.recv_exit_status()
        client.close()

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(one, range(guests)))


def _openssh(port: int, guests: int, folder: str, master: bool) -> None:
    base = ["ssh", "-i", f"{folder}/client", "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]

    def one(index: int) -> None:
        mux = ["-o", f"ControlPath={folder}/cm-{index}"] if master else []
        if master:  # the master first (authenticates, then backgrounds), the commands as its sessions
            subprocess.run([*base, *mux, "-o", "ControlMaster=yes", "-o", "ControlPersist=10", "-N", "-f",
                            "bench@127.0.0.1"], check=True)
        running = [subprocess.Popen([*base, *mux, "bench@127.0.0.1", c], stdout=subprocess.PIPE) for c in COMMANDS]
        for process in running:
            process.communicate()
        if master:
            subprocess.run([*base, *mux, "-O", "exit", "bench@127.0.0.1"], stderr=subprocess.DEVNULL, check=False)

    with ThreadPoolExecutor(16) as pool:  # a process per command: more in flight only thrashes 2 cores
        list(pool.map(one, range(guests)))


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guests", type=int, default=300)
    parser.add_argument("--latency-ms", type=int, default=100)
    args = parser.parse_args()
    print(f"CPU calibration: sum(i*i for i in range(10**7)) = {calibration():.2f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="dsfleet-ssh-") as folder:
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(f"{folder}/client")
        os.chmod(f"{folder}/client", 0o600)
        key.write_public_key(f"{folder}/client.pub")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ready = multiprocessing.Event()
        server = multiprocessing.Process(target=_serve, args=(port, folder, args.latency_ms / 1000, ready), daemon=True)
        server.start()
        ready.wait(30)
        clients: list[tuple[str, Callable[[], None]]] = [
            ("asyncssh, AES-GCM first (dsfleet)", lambda: _asyncssh(port, args.guests, GCM)),
            ("asyncssh, default ciphers", lambda: _asyncssh(port, args.guests, None)),
            ("paramiko (testinfra's paramiko backend)", lambda: _paramiko(port, args.guests)),
            ("OpenSSH binary per command (testinfra's ssh backend)",
             lambda: _openssh(port, args.guests, folder, False)),
            ("OpenSSH binary, ControlMaster per guest", lambda: _openssh(port, args.guests, folder, True)),
            ("dsfleet.sshasync (the probe's client)", lambda: _dsfleet(port, args.guests)),
        ]
        print(f"{args.guests} guests, {len(COMMANDS)} commands each, {args.latency_ms} ms per command")
        for label, run in clients:
            own0, kids0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
            server0, started = _cpu(server.pid or 0), time.perf_counter()
            run()
            wall = time.perf_counter() - started
            kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            client = time.process_time() - own0 + (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime)
            print(f"  {label:<55} client {client / args.guests * 1000:5.1f} ms/guest, server "
                  f"{(_cpu(server.pid or 0) - server0) / args.guests * 1000:4.1f} ms/guest, {wall:5.1f} s")
        server.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
