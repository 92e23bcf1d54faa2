"""The compact reports: ``summary.html`` (one self-contained file that reads fully without script; a small
inline script only adds filters) and ``summary.md`` (for CI job pages, under GITHUB_BUDGET bytes).

Order: the verdict banner (COMPLIANT / NOT COMPLIANT / EVIDENCE INCOMPLETE, counts by severity, the run's
scope), what could not be read, the change against the baseline, the trend, counts per check, the per-host
heatmap, waivers, then the findings: root causes before symptoms — checks by severity, then by how many
objects their findings explain; a case-B host is one row with the VMs it explains folded under it, and each
of those VMs' rows links back to it. Nothing is hidden: every non-passing result is in the page.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from .baseline import FAILING, Diff, load_doc
from .catalog import SEVERITIES, Language, language
from .errors import InputError
from .verdict import COUNTED, Verdict, judge

NOT_PASSING = ("error", "fail", "waived")
OUTCOMES = ("pass", "fail", "error", "waived", "skip")
# A root cause and the symptom check whose results it explains (the objects are in the cause's "explains").
SYMPTOMS = {"ISO-001": ("PRT-002",)}
# GitHub's job summary takes at most 1 MiB per step; summary.md stays under this many bytes.
GITHUB_BUDGET = 1_000_000
MD_CAPS = (20, 5, 1)  # objects listed per check, tried in order until the page fits the budget
MD_CLIP = 300  # characters of observed text per line in summary.md (summary.html has the whole text)
HISTORY_RUNS = 10
_URL = re.compile(r"(https://[^\s;,)]+)")
_CODE = re.compile(r"`([^`]+)`")

# HTML is escaped; Markdown is not (its cells are flattened and their pipes escaped by _md_cell instead).
_ENV = Environment(loader=PackageLoader("dsfleet", "templates"), autoescape=select_autoescape(["html.j2"]),
                   undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)


@dataclass
class Row:
    result: dict[str, Any]
    anchor: str
    folded: list[Row] = field(default_factory=list)
    cause: Row | None = None

    @property
    def weight(self) -> int:
        """How many objects this row accounts for: itself and every result folded under it."""
        return 1 + len(self.folded)


@dataclass
class Section:
    check: str
    title: str
    severity: str
    remediation: str
    source: str
    rows: list[Row]

    @property
    def weight(self) -> int:
        """How many objects this check's findings account for (folded ones included)."""
        return sum(r.weight for r in self.rows)


def link_causes(results: list[dict[str, Any]]) -> None:
    """Give each symptom result its root cause: ``cause = {check, object, case}`` (in place)."""
    by_key = {(r["check"], r["object"]): r for r in results}
    for cause in results:
        for symptom in SYMPTOMS.get(cause["check"], ()):
            for obj in cause.get("explains", []):
                r = by_key.get((symptom, obj))
                if r is not None and r["outcome"] in NOT_PASSING:
                    r["cause"] = {"check": cause["check"], "object": cause["object"], "case": cause.get("case", "")}


def new_failures(diff: Diff) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(new failures, newly waived): a waived result is never a new failure."""
    return diff.regressions(), diff.newly_waived()


def findings(results: list[dict[str, Any]]) -> list[Section]:
    """Non-passing results as sections per check, root causes first (see the module docstring)."""
    rows = {(r["check"], r["object"]): Row(r, f"f{i}")
            for i, r in enumerate(r for r in results if r["outcome"] in NOT_PASSING)}
    for row in rows.values():
        cause = row.result.get("cause")
        parent = rows.get((cause["check"], cause["object"])) if cause else None
        if parent is not None:
            row.cause = parent
            if cause and cause.get("case") == "B":
                parent.folded.append(row)
    by_check: dict[str, list[Row]] = defaultdict(list)
    for row in rows.values():
        if row.cause is None or row not in row.cause.folded:
            by_check[row.result["check"]].append(row)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    order = {o: i for i, o in enumerate(NOT_PASSING)}
    sections = []
    for cid, members in by_check.items():
        members.sort(key=lambda r: (order[r.result["outcome"]], -r.weight, r.result["object"]))
        first = members[0].result
        sections.append(Section(cid, first["title"], first["severity"], first.get("guidance") or first["remediation"],
                                first["source"], members))
    sections.sort(key=lambda s: (rank.get(s.severity, len(rank)), -s.weight, s.check))
    return sections


def failing_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    """Per check, the results that fail or error (waived ones are reported, not counted as failing)."""
    return dict(Counter(r["check"] for r in results if r["outcome"] in ("fail", "error")))


def load_history(folder: Path, skip: Path | None = None, limit: int = HISTORY_RUNS) -> list[tuple[str, dict[str, int]]]:
    """The last ``limit`` earlier runs under ``folder`` (each a run folder with results.json), oldest first,
    as (start time in UTC, failing counts per check). ``skip``: the current run's folder."""
    if not folder.is_dir():
        raise InputError(str(folder), "--history", "a folder of earlier run folders (each with results.json)",
                         "not a folder")
    seen, points = set(), []
    for file in sorted(folder.glob("*/results.json")):
        real = file.resolve()
        if real in seen or (skip is not None and real.parent == skip.resolve()):
            continue
        seen.add(real)
        doc, _ = load_doc(file)
        points.append((str(doc.get("started_utc") or file.parent.name), failing_counts(doc["results"])))
    return sorted(points)[-limit:]


def trend_svg(points: list[tuple[str, dict[str, int]]], lang: Language, width: int = 560, height: int = 150) -> str:
    """A small inline SVG: one line per check that failed in any of the runs, the last run on the right."""
    checks = sorted({c for _, counts in points for c, n in counts.items() if n})
    if len(points) < 2 or not checks:
        return ""
    top = max(max(counts.get(c, 0) for c in checks) for _, counts in points) or 1
    left, right, pad = 36, 110, 14
    step = (width - left - right) / (len(points) - 1)

    def y(n: int) -> float:
        return pad + (height - 2 * pad) * (1 - n / top)

    colours = ("#c62828", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#4e342e", "#ad1457")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 28}" role="img" '
           f'aria-label="{escape(lang("h.trend"))}" font-size="11">',
           f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#999"/>',
           f'<text x="{left - 4}" y="{y(top) + 4:.1f}" text-anchor="end">{top}</text>',
           f'<text x="{left - 4}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>']
    for i, (label, _) in enumerate(points):
        if i in (0, len(points) - 1):
            out.append(f'<text x="{left + i * step:.1f}" y="{height + 10}" text-anchor="middle">'
                       f'{escape(label[:16])}</text>')
    for k, cid in enumerate(checks[:len(colours)]):
        colour = colours[k]
        coords = " ".join(f"{left + i * step:.1f},{y(c.get(cid, 0)):.1f}" for i, (_, c) in enumerate(points))
        last = points[-1][1].get(cid, 0)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        out.append(f'<text x="{width - right + 6}" y="{pad + 12 * k + 4}" fill="{colour}">{escape(cid)}: '
                   f'{last}</text>')
    out.append("</svg>")
    return "".join(out)


def _links(text: str) -> Markup:
    """Escaped text whose URLs are links and whose `code` spans are <code>."""
    html = str(escape(text))
    html = _URL.sub(r'<a href="\1">\1</a>', html)
    return Markup(_CODE.sub(r"<code>\1</code>", html))


def _clip(text: str, limit: int = MD_CLIP) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def write(run_dir: Path, doc: dict[str, Any], diff: Diff | None,
          history: list[tuple[str, dict[str, int]]] | None = None) -> None:
    view = build_view(doc, diff, history or [])
    (run_dir / "summary.html").write_text(_ENV.get_template("summary.html.j2").render(view), encoding="utf-8")
    (run_dir / "summary.md").write_text(markdown(view), encoding="utf-8")


def build_view(doc: dict[str, Any], diff: Diff | None, history: list[tuple[str, dict[str, int]]]) -> dict[str, Any]:
    """Everything both templates show, in the run's language."""
    results: list[dict[str, Any]] = doc["results"]
    lang = language(doc.get("lang", "en"))
    verdict = judge(results)
    by_check: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        by_check[r["check"]][r["outcome"]] += 1
    meta = {r["check"]: r for r in results}
    hosts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        if r.get("host"):
            hosts[r["host"]][r["check"]] += r["outcome"] in ("fail", "error")
    points = [*history, (lang("trend.this_run"), failing_counts(results))]
    new, newly_waived = new_failures(diff) if diff else ([], [])
    return {
        "t": lang, "lang": lang.code, "doc": doc, "verdict": verdict, "banner": banner_counts(verdict, lang),
        "scope_text": scope_line(doc.get("scope", {}), lang), "severities": SEVERITIES, "counted": COUNTED,
        "outcomes": OUTCOMES, "scope": doc.get("scope", {}), "gaps": doc.get("evidence_gaps", []),
        "diff": diff, "diff_lists": [(k, rows) for k, rows in (("h.new", new), ("h.new_waived", newly_waived),
                                                               ("h.fixed", diff.fixed if diff else []),
                                                               ("h.still", diff.still_failing if diff else []),
                                                               ("h.new_passes", diff.new_passes if diff else []))],
        "trend": Markup(trend_svg(points, lang)), "trend_points": points if len(points) > 1 else [],
        "per_check": [(cid, meta[cid], by_check[cid]) for cid in sorted(by_check)],
        "host_checks": sorted({r["check"] for r in results if r.get("host")}),
        "hosts": [(h, hosts[h]) for h in sorted(hosts)], "heat": _heat,
        "waivers": doc.get("waivers", []), "sections": findings(results),
        "filter_hosts": sorted({r["host"] for r in results if r.get("host") and r["outcome"] in NOT_PASSING}),
        "filter_checks": sorted({r["check"] for r in results if r["outcome"] in NOT_PASSING}),
        "links": _links, "x": lang.text,
    }


def _heat(n: int) -> str:
    return "n0" if n == 0 else "n1" if n == 1 else "n2" if n < 5 else "n3"


def banner_counts(verdict: Verdict, lang: Language) -> str:
    """'critical: 12 fail, 1 error · high: 3 fail' in the run's language."""
    return " · ".join(f"{lang('severity.' + s)}: " + ", ".join(
        f"{n} {lang('outcome.' + o)}" for o, n in verdict.by_severity[s].items())
        for s in SEVERITIES if s in verdict.by_severity) or lang("banner.no_findings")


def scope_line(scope: dict[str, Any], lang: Language) -> str:
    return lang("banner.scope", **{k: scope.get(k, "?") for k in
                                   ("inventory", "vcenters", "esx_hosts", "vms", "dsm_computers", "checks", "results")})


def markdown(view: dict[str, Any]) -> str:
    """summary.md: the same order as the page, each check's list capped so the page fits GITHUB_BUDGET."""
    for cap in MD_CAPS:
        text = _ENV.get_template("summary.md.j2").render(view, cap=cap, clip=_clip, cell=_md_cell,
                                                         budget=GITHUB_BUDGET)
        if len(text.encode("utf-8")) <= GITHUB_BUDGET:
            return text
    return text
