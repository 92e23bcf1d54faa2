"""Parsers for the read-only commands of seed 000's triage flow, on their real output formats.

Each returns a small typed result or raises :class:`UnexpectedOutput`; a parser never guesses, so an
output it does not recognise becomes evidence that could not be read (an error), never a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .versions import Build


class UnexpectedOutput(ValueError):
    """The command answered, but not in a format we know; the message quotes what came back."""


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 120 else flat[:120] + "..."


# -- Windows: sc query, chcp ---------------------------------------------------------------------------
# Language packs translate sc's labels ("SERVICE_NAME", "STATE") and messages ("FAILED", the text after the
# code), not the numbers nor the state words: lines are found by their shape, never by a label.

SC_STATES = {1: "STOPPED", 2: "START_PENDING", 3: "STOP_PENDING", 4: "RUNNING", 5: "CONTINUE_PENDING",
             6: "PAUSE_PENDING", 7: "PAUSED"}
SC_NOT_INSTALLED = 1060  # ERROR_SERVICE_DOES_NOT_EXIST: sc's message code and its exit status
# "[SC] EnumQueryServicesStatus:OpenService FAILED 1060:" ("失败 1060:", "ERROR 1060:", "échec(s) 1060" ...)
_SC_FAILED = re.compile(r"^\[SC\][^\r\n]*?\s(\d+):?[ \t]*\r?$", re.M)
# The service's first line, unindented: "SERVICE_NAME: vsepflt", "Имя_службы: postgresql-9.4"
_SC_NAME = re.compile(r"^[^\s:][^:\r\n]*?[ \t]*:[ \t]*(\S+)[ \t]*\r?$", re.M)
# The state line, indented: "<label> : <number>  <WORD>", WORD one of SC_STATES' (sc does not translate them;
# TYPE's "2  FILE_SYSTEM_DRIVER" has the same shape with another word).
# (The label holds no colon, so it is matched greedily: a lazy label with optional blanks before the colon
# backtracked at every position of every line, 170 µs a call, 3 s at 10,000 guests.)
_SC_STATE = re.compile(r"^[ \t]+[^:\r\n]+:[ \t]*(\d+)[ \t]+(%s)[ \t]*\r?$" % "|".join(SC_STATES.values()), re.M)
_SC_BLOCK_END = re.compile(r"\n[ \t]*\r?\n")  # a blank line ends a service's block
_CHCP = re.compile(r":[ \t]*(\d+)\.?[ \t]*\r?$", re.M)


@dataclass(frozen=True)
class ServiceState:
    name: str
    installed: bool
    state: str | None  # RUNNING, STOPPED, ... (None when not installed)

    @property
    def running(self) -> bool:
        return self.installed and self.state == "RUNNING"

    def describe(self) -> str:
        return f"{self.name}: {self.state}" if self.installed else f"{self.name}: not installed (FAILED 1060)"


def parse_sc_query(name: str, stdout: str, rc: int | None) -> ServiceState:
    """``sc query <name>`` in any display language: the state by its number, or error 1060 (not installed)."""
    failed = _SC_FAILED.search(stdout)
    found = _SC_NAME.search(stdout)
    if failed is None and found is None and rc == SC_NOT_INSTALLED:
        return ServiceState(name, installed=False, state=None)  # the exit status says it, whatever the text
    if failed is not None:
        if int(failed.group(1)) == SC_NOT_INSTALLED:
            return ServiceState(name, installed=False, state=None)
        raise UnexpectedOutput(f"sc query {name} failed with Windows error {failed.group(1)} (rc {rc}): "
                               f"{_quote(stdout)}")
    if found is None:
        raise UnexpectedOutput(f"sc query {name} (rc {rc}): {_quote(stdout) or 'no output'}")
    if found.group(1).lower() != name.lower():
        raise UnexpectedOutput(f"sc query {name} answered for service {found.group(1)}")
    rest = stdout[found.end():]
    end = _SC_BLOCK_END.search(rest)
    states = _SC_STATE.findall(rest[:end.start()] if end else rest)
    if len(states) != 1:
        raise UnexpectedOutput(f"sc query {name} (rc {rc}): {len(states)} state lines in {_quote(stdout)}")
    code, word = int(states[0][0]), states[0][1]
    if SC_STATES.get(code) != word:  # the number is what the SCM reports: a word that disagrees is not sc
        raise UnexpectedOutput(f"sc query {name}: state {code} printed as {word}")
    return ServiceState(name, installed=True, state=word)


def parse_chcp(stdout: str) -> int:
    """``chcp`` → the console code page: "Active code page: 437", "現在のコード ページ: 932",
    "Aktive Codepage: 850.", "Page de codes active : 850". The last such line counts (an AutoRun may print first)."""
    found = _CHCP.findall(stdout)
    if not found:
        raise UnexpectedOutput(f"chcp: no code page in {_quote(stdout) or 'no output'}")
    return int(found[-1])


# -- DSVA: ds_agent ------------------------------------------------------------------------------------

_SYSTEMD_ACTIVE = re.compile(r"^\s*Active:\s*(\S+)\s*\(([^)]*)\)", re.M)


def parse_service_status(name: str, stdout: str, rc: int | None) -> tuple[bool, str]:
    """``service <name> status`` on SysV init ("is running"/"is stopped") or systemd ("Active: ...").

    Returns (running, the state as printed).
    """
    active = _SYSTEMD_ACTIVE.search(stdout)
    if active:
        state = f"{active.group(1)} ({active.group(2)})"
        return active.group(1) == "active" and active.group(2) == "running", state
    text = stdout.strip()
    if re.search(rf"\b{re.escape(name)}\b.*\bis running\b", text):
        return True, "running"
    if re.search(rf"\b{re.escape(name)}\b.*\b(is stopped|is not running|dead)\b", text):
        return False, "stopped"
    if "unrecognized service" in text or "could not be found" in text:
        return False, "not installed"
    raise UnexpectedOutput(f"service {name} status (rc {rc}): {_quote(stdout) or 'no output'}")


def parse_agent_state(stdout: str) -> str:
    """``/opt/ds_agent/dsa_query -c GetAgentStatus`` → the value of ``AgentStatus.agentState`` (green is healthy)."""
    match = re.search(r"^\s*AgentStatus\.agentState:\s*(\S+)\s*$", stdout, re.M)
    if not match:
        raise UnexpectedOutput(f"dsa_query -c GetAgentStatus: no AgentStatus.agentState in {_quote(stdout)!r}")
    return match.group(1).lower()


def parse_rpm_query(package: str, stdout: str, rc: int | None) -> Build | None:
    """``rpm -q ds_agent`` → the installed build (``ds_agent-20.0.0-8438.el7.x86_64``), None if not installed."""
    text = stdout.strip()
    if f"package {package} is not installed" in text:
        return None
    match = re.match(rf"^{re.escape(package)}-(\d+\.\d+\.\d+-\d+)\b", text)
    if not match:
        raise UnexpectedOutput(f"rpm -q {package} (rc {rc}): {_quote(stdout) or 'no output'}")
    return Build.parse(match.group(1))


# -- ESXi: endpoint MUX --------------------------------------------------------------------------------


def parse_init_status(name: str, stdout: str, rc: int | None) -> bool:
    """``/etc/init.d/<name> status`` on ESXi: "<name> is running" / "<name> is not running"."""
    text = stdout.strip()
    if re.search(rf"\b{re.escape(name)} is running\b", text):
        return True
    if re.search(rf"\b{re.escape(name)} is not running\b", text) or re.search(r"\bnot running\b", text):
        return False
    if rc == 127 or "not found" in text:
        raise UnexpectedOutput(f"/etc/init.d/{name} does not exist on this host (wrong NSX flavour in the inventory?)")
    raise UnexpectedOutput(f"/etc/init.d/{name} status (rc {rc}): {_quote(stdout) or 'no output'}")
