"""The pytest entry point of dsfleet: options, the ``check`` marker, and the verdict helpers checks use.

This is the only library module that imports pytest. Session fixtures, fan-out and report hooks live in
the project's ``fixtures/`` package, registered by its top-level ``conftest.py``.
"""

from __future__ import annotations

import contextvars
from typing import Any, NoReturn

import pytest

from .buildpolicy import BuildPolicy, Status, Verdict, platform_column
from .snapshot import DsmComputer
from .versions import Build

# The run's glue (session fixtures, fan-out, report hooks): registered with this plugin, so an installed dsfleet
# works from any folder (pytest --pyargs dsfleet.checks --inventory FILE).
pytest_plugins = ["dsfleet.fixtures.session", "dsfleet.fixtures.report", "dsfleet.fixtures.rows",
                  "dsfleet.fixtures.junit"]

# Where expect() and no_evidence() write the observed and required texts of the object being judged: dsfleet's
# row runner sets a fresh dict per object (fixtures/rows.py).
evidence_sink: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("dsfleet_evidence", default=None)


class CheckFailure(AssertionError):
    """The fleet is out of compliance; carries what was observed and what is required."""

    def __init__(self, observed: str, required: str) -> None:
        super().__init__(f"observed: {observed} | required: {required}")
        self.observed, self.required = observed, required


class NoEvidence(CheckFailure):
    """The fact a check needs is missing for this object: reported as an error (evidence incomplete), not a fail."""


# Settings a site may keep in its pytest.ini / pyproject.toml / tox.ini ([pytest] dsfleet_inventory = ...);
# the command line wins. Paths in an ini file are relative to that file.
SETTINGS = {
    "inventory": ("inventory YAML (default: the lab inventory, reports/lab/inventory.yml)", None, True),
    "run_dir": ("where to write snapshot, reports and results (default: reports/<UTC time> under the working "
                "folder)", None, True),
    "lang": ("language of the reports: en or ja (default: en)", "en", False),
    "since": ("start of the events window: 90m, 24h, 7d or an ISO 8601 time (default: 24h)", "24h", False),
    "waivers": ("YAML of accepted exceptions (check, object, justification, approver, ticket, expiry)", None, True),
    "shard": ("judge only part of the fleet: vcenter:NAME, cluster:NAME or hash:K/N; merge the shards' run folders "
              "with dsfleet merge", None, False),
}
SEVERITIES = ("critical", "high", "medium", "low")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dsfleet", "Deep Security agentless fleet compliance")
    group.addoption("--inventory", metavar="FILE", help=SETTINGS["inventory"][0])
    group.addoption("--snapshot", metavar="FILE",
                    help="re-run the checks offline from a snapshot.json written by an earlier run")
    group.addoption("--since", metavar="WHEN", help=SETTINGS["since"][0])
    group.addoption("--baseline", metavar="RUN",
                    help="an earlier run folder (or its results.json): classify every result against it")
    group.addoption("--fail-on", choices=("any", "new"), default="any",
                    help="exit non-zero on any failure (default) or only on new ones (needs --baseline)")
    group.addoption("--waivers", metavar="FILE", help=SETTINGS["waivers"][0])
    group.addoption("--lang", choices=("en", "ja"), help=SETTINGS["lang"][0])
    group.addoption("--run-dir", metavar="DIR", help=SETTINGS["run_dir"][0])
    group.addoption("--shard", metavar="SPEC", help=SETTINGS["shard"][0])
    for name, (text, _default, _is_path) in SETTINGS.items():
        parser.addini(f"dsfleet_{name}", f"dsfleet: {text}; --{name.replace('_', '-')} overrides it")


def setting(config: pytest.Config, name: str) -> str | None:
    """A dsfleet setting: the command line's, else the ini file's (paths relative to it), else the default."""
    _text, default, is_path = SETTINGS[name]
    value = config.getoption(name)
    if value is not None:
        return str(value)
    ini = str(config.getini(f"dsfleet_{name}") or "").strip()
    if not ini:
        return default
    if name == "lang" and ini not in ("en", "ja"):
        raise pytest.UsageError(f"{config.inipath}: dsfleet_lang: expected en or ja, got {ini!r}")
    if is_path and config.inipath is not None:
        return str(config.inipath.parent / ini)
    return ini


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): a fleet compliance check with its catalog id (e.g. BLD-001)")
    for severity in SEVERITIES:
        config.addinivalue_line("markers", f"{severity}: a check of {severity} severity (select with -m {severity})")


def _record(observed: str, required: str, remedy: str = "") -> None:
    sink = evidence_sink.get()
    if sink is not None:
        sink.update(observed=observed, required=required, remedy=remedy)


def expect(condition: bool, *, observed: str, required: str, remedy: str = "") -> None:
    """Pass when ``condition`` holds; the observed and required texts go into every report either way.

    ``remedy`` is this object's own fix (e.g. the ordered commands for its host); it is shown before the
    catalog's general remediation.
    """
    __tracebackhide__ = True
    _record(observed, required, remedy)
    if not condition:
        raise CheckFailure(observed, required)


def no_evidence(reason: str, required: str = "evidence for this check") -> NoReturn:
    """Fail closed: the fact this check needs is missing for this object."""
    __tracebackhide__ = True
    _record(f"no evidence: {reason}", required)
    raise NoEvidence(f"no evidence: {reason}", required)


def not_applicable(reason: str) -> NoReturn:
    pytest.skip(f"not applicable: {reason}")


def agent_build_of(computer: DsmComputer, what: str) -> Build:
    """The computer's agent build, failing closed when the DSM reports none or an unreadable one."""
    __tracebackhide__ = True
    if not computer.agent_version:
        no_evidence(f"the DSM reports no agentVersion for this {what}", "a reported agent build")
    try:
        build = Build.parse(computer.agent_version)
    except ValueError:
        no_evidence(f"agentVersion {computer.agent_version!r} is not a build number", "a reported agent build")
    if build.is_null:
        no_evidence(f"agentVersion is 0.0.0.0: no activated agent on this {what}", "an activated agent")
    return build


def classify_computer(policy: BuildPolicy, computer: DsmComputer, what: str) -> Verdict:
    """The KB verdict for an agent or relay, by the column its platform string maps to."""
    __tracebackhide__ = True
    build = agent_build_of(computer, what)
    column = platform_column(computer.platform)
    if column is None:
        no_evidence(f"platform {computer.platform!r} does not map to a KB column (Windows/Linux/Unix/macOS)",
                    "a platform the KB lists")
    return policy.classify(build, column)


def classify_agent(policy: BuildPolicy, computer: DsmComputer, is_dsva: bool) -> Verdict:
    """The KB verdict for a DSVA (Linux column and the DSVA range), a relay or an agent."""
    __tracebackhide__ = True
    if is_dsva:
        return policy.classify_dsva(agent_build_of(computer, "DSVA"))
    return classify_computer(policy, computer, "relay" if computer.is_relay else "agent")


def judge_build(verdict: Verdict) -> None:
    """Turn a KB verdict into an outcome: compliant passes, 10.0 is a manual-review skip, the rest fail."""
    __tracebackhide__ = True
    if verdict.status is Status.MANUAL:
        _record(verdict.detail, verdict.required)
        pytest.skip(f"manual review: {verdict.detail}; {verdict.required}")
    expect(verdict.status.compliant, observed=f"{verdict.detail} [{verdict.status.value}]", required=verdict.required)
