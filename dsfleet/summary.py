"""The compact reports: ``summary.html`` (self-contained, no script, opens fast at 10,000 VMs) and
``summary.md`` (for CI job pages). Order: the change against the baseline, counts per check, a per-host
heatmap, waivers, then the findings grouped by check with each remediation written once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from html import escape
from pathlib import Path
from typing import Any

from .baseline import Diff

NOT_PASSING = ("fail", "error", "waived")
OUTCOMES = ("pass", "fail", "error", "waived", "skip")
CSS = """body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}.fail{color:#b00}.error{color:#a50}.waived{color:#666}.pass{color:#060}
.hm td{text-align:center;min-width:28px}.n0{background:#e8f5e9}.n1{background:#ffe0b2}.n2{background:#ffab91}.n3{background:#e57373;color:#fff}
details{margin:4px 0}summary{cursor:pointer}"""


def _group(results: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    by_check: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        by_check[r["check"]][r["outcome"]] += 1
    return by_check


def _heat(n: int) -> str:
    return "n0" if n == 0 else "n1" if n == 1 else "n2" if n < 5 else "n3"


def write(run_dir: Path, doc: dict[str, Any], diff: Diff | None) -> None:
    results: list[dict[str, Any]] = doc["results"]
    (run_dir / "summary.html").write_text(_html(doc, results, diff), encoding="utf-8")
    (run_dir / "summary.md").write_text(_markdown(doc, results, diff), encoding="utf-8")


def _html(doc: dict[str, Any], results: list[dict[str, Any]], diff: Diff | None) -> str:
    e = escape
    out = [f"<!doctype html><html lang=\"{e(doc.get('lang', 'en'))}\"><head><meta charset=\"utf-8\">"
           f"<title>dsfleet summary — {e(doc['inventory'])}</title><style>{CSS}</style></head><body>",
           f"<h1>dsfleet summary — {e(doc['inventory'])}</h1>",
           f"<p>Run {e(doc['started_utc'])} → {e(doc['finished_utc'])}; snapshot {e(doc['snapshot'])} "
           f"(sha256 {e(doc['snapshot_sha256'])}); full report: <a href=\"report.html\">report.html</a></p>",
           "<p>" + ", ".join(f"<span class=\"{o}\">{doc['counts'].get(o, 0)} {o}</span>" for o in OUTCOMES) + "</p>"]
    if diff is not None:
        out.append(f"<h2>Against the baseline</h2><p>{e(diff.baseline)}</p><p>"
                   + ", ".join(f"<b>{n}</b> {e(k)}" for k, n in diff.counts().items()) + "</p>")
        for title, rows in (("New failures", diff.new_failures), ("Fixed", diff.fixed),
                            ("Still failing", diff.still_failing), ("New passes", diff.new_passes)):
            if rows:
                out.append(f"<details{' open' if title == 'New failures' else ''}><summary>{title} ({len(rows)})"
                           "</summary><table><tr><th>Check</th><th>Object</th><th>Outcome</th><th>Observed</th></tr>"
                           + "".join(f"<tr><td>{e(r['check'])}</td><td>{e(r['object'])}</td>"
                                     f"<td class=\"{r['outcome']}\">{e(r['outcome'])}</td><td>{e(r['observed'])}</td></tr>"
                                     for r in rows) + "</table></details>")
        for title, keys in (("Appeared", diff.appeared), ("Disappeared", diff.disappeared)):
            if keys:
                out.append(f"<details><summary>{title} ({len(keys)})</summary><p>"
                           + "; ".join(f"{e(c)} {e(o)}" for c, o in keys) + "</p></details>")
    by_check = _group(results)
    titles = {r["check"]: (r["title"], r["severity"]) for r in results}
    out.append("<h2>Per check</h2><table><tr><th>Check</th><th>Severity</th><th>Title</th>"
               + "".join(f"<th>{o}</th>" for o in OUTCOMES) + "</tr>")
    for cid in sorted(by_check):
        c = by_check[cid]
        out.append(f"<tr><td>{e(cid)}</td><td>{e(titles[cid][1])}</td><td>{e(titles[cid][0])}</td>"
                   + "".join(f"<td class=\"{o}\">{c.get(o, 0) or ''}</td>" for o in OUTCOMES) + "</tr>")
    out.append("</table>")
    hosts: dict[str, Counter[str]] = defaultdict(Counter)
    host_checks = sorted({r["check"] for r in results if r.get("host")})
    for r in results:
        if r.get("host"):
            hosts[r["host"]][r["check"]] += r["outcome"] in ("fail", "error")
    if hosts:
        out.append("<h2>Per ESXi host (failing or erroring results)</h2><table class=\"hm\"><tr><th>Host</th>"
                   + "".join(f"<th>{e(c)}</th>" for c in host_checks) + "<th>total</th></tr>")
        for host in sorted(hosts):
            row = hosts[host]
            out.append(f"<tr><td style=\"text-align:left\">{e(host)}</td>"
                       + "".join(f"<td class=\"{_heat(row[c])}\">{row[c] or ''}</td>" for c in host_checks)
                       + f"<td class=\"{_heat(sum(row.values()))}\">{sum(row.values())}</td></tr>")
        out.append("</table>")
    if doc.get("waivers"):
        out.append("<h2>Waivers</h2><table><tr><th>#</th><th>Check</th><th>Object</th><th>Status</th><th>Approver</th>"
                   "<th>Ticket</th><th>Expires</th><th>Justification</th><th>Waived</th></tr>")
        for w in doc["waivers"]:
            out.append(f"<tr><td>{w['index']}</td><td>{e(w['check'])}</td><td>{e(w['object'])}</td>"
                       f"<td class=\"{'waived' if w['status'] == 'applied' else 'fail'}\">{e(w['status'])}</td>"
                       f"<td>{e(w['approver'])}</td><td>{e(w['ticket'])}</td><td>{e(w['expires'])}</td>"
                       f"<td>{e(w['justification'])}</td><td>{len(w['matched'])}</td></tr>")
        out.append("</table>")
    out.append("<h2>Findings</h2>")
    findings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r["outcome"] in NOT_PASSING:
            findings[r["check"]].append(r)
    if not findings:
        out.append("<p>None.</p>")
    for cid in sorted(findings):
        rows = findings[cid]
        first = rows[0]
        fixes = any(r.get("remedy") for r in rows)
        out.append(f"<h3>{e(cid)} — {e(first['title'])} ({len(rows)})</h3><p><b>Remediation:</b> "
                   f"{e(first.get('guidance') or first['remediation'])}<br><b>Source:</b> {e(first['source'])}</p>"
                   "<table><tr><th>Object</th><th>Host</th><th>Outcome</th><th>Observed</th><th>Required</th>"
                   + ("<th>Fix for this object</th>" if fixes else "") + "</tr>"
                   + "".join(f"<tr><td>{e(r['object'])}</td><td>{e(r.get('host', ''))}</td>"
                             f"<td class=\"{r['outcome']}\">{e(r['outcome'])}</td><td>{e(r['observed'])}</td>"
                             f"<td>{e(r['required'])}</td>" + (f"<td>{e(r.get('remedy', ''))}</td>" if fixes else "")
                             + "</tr>" for r in rows) + "</table>")
    out.append("</body></html>")
    return "\n".join(out)


def _markdown(doc: dict[str, Any], results: list[dict[str, Any]], diff: Diff | None, limit: int = 200) -> str:
    md = [f"# dsfleet summary — {doc['inventory']}", "",
          f"Run {doc['started_utc']} → {doc['finished_utc']}, snapshot sha256 `{doc['snapshot_sha256']}`", "",
          " · ".join(f"**{doc['counts'].get(o, 0)}** {o}" for o in OUTCOMES), ""]
    if diff is not None:
        md += ["## Against the baseline", "", f"`{diff.baseline}`: " +
               ", ".join(f"**{n}** {k}" for k, n in diff.counts().items()), ""]
        for title, rows in (("New failures", diff.new_failures), ("Fixed", diff.fixed)):
            if rows:
                md += [f"### {title}", ""] + [f"- {r['check']} `{r['object']}` ({r['outcome']}): {r['observed']}"
                                              for r in rows[:limit]]
                md += [f"- … {len(rows) - limit} more (summary.html)"] if len(rows) > limit else []
                md.append("")
    md += ["## Per check", "", "| check | severity | " + " | ".join(OUTCOMES) + " |",
           "|---|---|" + "---|" * len(OUTCOMES)]
    titles = {r["check"]: r["severity"] for r in results}
    for cid, c in sorted(_group(results).items()):
        md.append(f"| {cid} | {titles[cid]} | " + " | ".join(str(c.get(o, 0)) for o in OUTCOMES) + " |")
    waivers = [w for w in doc.get("waivers", []) if w["status"] != "applied"]
    if waivers:
        md += ["", "## Waivers needing attention", ""] + [
            f"- #{w['index']} {w['check']} `{w['object']}` ({w['ticket']}): **{w['status']}**" for w in waivers]
    rows = [r for r in results if r["outcome"] in NOT_PASSING]
    md += ["", f"## Findings ({len(rows)})", ""]
    md += [f"- **{r['check']}** `{r['object']}` — {r['outcome']}: {r['observed']}" for r in rows[:limit]]
    if len(rows) > limit:
        md.append(f"- … {len(rows) - limit} more in summary.html / results.json")
    return "\n".join(md) + "\n"
