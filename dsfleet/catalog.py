"""The check catalog: id → title, severity, source, remediation. Loaded once, validated strictly.

Every source is public — a Trend Micro KB number with its URL, a vendor documentation URL — or says plainly
"field practice: ..." where no public page exists. The English catalog holds no other script than Latin, so
an English report never carries raw Japanese.

The same files hold the report's words (``labels``) and, per language, the phrases that turn the checks'
English observed / required / fix texts into that language (``phrases``: regular expression → template).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

SEVERITIES = ("critical", "high", "medium", "low")
LANGUAGES = ("en", "ja")
_ID = re.compile(r"^[A-Z]{3}-\d{3}$")
_FIELDS = ("title", "severity", "source", "remediation")
_PUBLIC = re.compile(r"https://\S+")
FIELD_PRACTICE = "field practice: "
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


@dataclass(frozen=True)
class CheckInfo:
    id: str
    title: str
    severity: str
    source: str
    remediation: str
    retired: bool = False


class CatalogError(ValueError):
    pass


def parse(data: Any, origin: str = "dsfleet/data/catalog.yml") -> dict[str, CheckInfo]:
    if not isinstance(data, dict) or not isinstance(data.get("checks"), dict):
        raise CatalogError(f"{origin}: checks: expected a mapping of check ids")
    out = {}
    for cid, spec in data["checks"].items():
        if not isinstance(cid, str) or not _ID.match(cid):
            raise CatalogError(f"{origin}: checks.{cid}: expected an id like ABC-001")
        if not isinstance(spec, dict):
            raise CatalogError(f"{origin}: checks.{cid}: expected a mapping")
        for name in _FIELDS:
            if not isinstance(spec.get(name), str) or not spec[name].strip():
                raise CatalogError(f"{origin}: checks.{cid}.{name}: expected non-empty text")
            if _CJK.search(spec[name]):
                raise CatalogError(f"{origin}: checks.{cid}.{name}: expected English text (translations go to "
                                   f"catalog.<lang>.yml)")
        if spec["severity"] not in SEVERITIES:
            raise CatalogError(f"{origin}: checks.{cid}.severity: expected one of {', '.join(SEVERITIES)}")
        if not (_PUBLIC.search(spec["source"]) or spec["source"].startswith(FIELD_PRACTICE)):
            raise CatalogError(f"{origin}: checks.{cid}.source: expected a public URL (https://...) or text "
                               f"starting with {FIELD_PRACTICE!r}")
        unknown = set(spec) - set(_FIELDS) - {"retired"}
        if unknown:
            raise CatalogError(f"{origin}: checks.{cid}.{sorted(unknown)[0]}: no such field")
        out[cid] = CheckInfo(id=cid, retired=bool(spec.get("retired", False)),
                             **{k: spec[k].strip() for k in _FIELDS})
    return out


def _data(name: str) -> Any:
    return yaml.safe_load(resources.files("dsfleet").joinpath(f"data/{name}").read_text(encoding="utf-8"))


def load() -> dict[str, CheckInfo]:
    return parse(_data("catalog.yml"))


def translations(lang: str) -> dict[str, dict[str, str]]:
    """Per check id, the title, remediation and source in ``lang`` (``data/catalog.<lang>.yml``); English has
    none."""
    if lang == "en":
        return {}
    data = _data(f"catalog.{lang}.yml")
    out: dict[str, dict[str, str]] = {}
    for cid, spec in (data.get("checks") or {}).items():
        out[cid] = {k: str(v).strip() for k, v in spec.items() if k in ("title", "remediation", "source")}
    return out


@dataclass(frozen=True)
class Language:
    """The words of a report in one language: labels by key, and phrases for the checks' own texts."""

    code: str
    labels: dict[str, str]
    phrases: tuple[tuple[re.Pattern[str], str], ...] = ()

    def __call__(self, key: str, **values: Any) -> str:
        return self.labels[key].format(**values)

    def text(self, english: str) -> str:
        """A check's observed / required / fix text in this language (English: unchanged)."""
        for pattern, template in self.phrases:
            english = pattern.sub(template, english)
        return english


@functools.cache  # read by the summary, HTML and terminal hooks alike: parse each file once per process
def language(code: str) -> Language:
    """The labels of ``code`` (every English key must be translated) and its phrases, in file order."""
    base = _data("catalog.yml").get("labels") or {}
    if code == "en":
        return Language("en", {k: str(v) for k, v in base.items()})
    origin = f"dsfleet/data/catalog.{code}.yml"
    data = _data(f"catalog.{code}.yml")
    labels = {k: str(v) for k, v in (data.get("labels") or {}).items()}
    missing = sorted(set(base) - set(labels))
    if missing:
        raise CatalogError(f"{origin}: labels.{missing[0]}: expected a translation of every English label")
    phrases = []
    for i, pair in enumerate(data.get("phrases") or []):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise CatalogError(f"{origin}: phrases[{i}]: expected [regular expression, template]")
        try:
            phrases.append((re.compile(pair[0]), pair[1]))
        except re.error as err:
            raise CatalogError(f"{origin}: phrases[{i}]: {err}") from None
    return Language(code, labels, tuple(phrases))
