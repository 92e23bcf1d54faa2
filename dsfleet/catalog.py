"""The check catalog: id → title, severity, source, remediation. Loaded once, validated strictly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

SEVERITIES = ("critical", "high", "medium", "low")
_ID = re.compile(r"^[A-Z]{3}-\d{3}$")
_FIELDS = ("title", "severity", "source", "remediation")


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
        if spec["severity"] not in SEVERITIES:
            raise CatalogError(f"{origin}: checks.{cid}.severity: expected one of {', '.join(SEVERITIES)}")
        unknown = set(spec) - set(_FIELDS) - {"retired"}
        if unknown:
            raise CatalogError(f"{origin}: checks.{cid}.{sorted(unknown)[0]}: no such field")
        out[cid] = CheckInfo(id=cid, retired=bool(spec.get("retired", False)),
                             **{k: spec[k].strip() for k in _FIELDS})
    return out


def load() -> dict[str, CheckInfo]:
    text = resources.files("dsfleet").joinpath("data/catalog.yml").read_text(encoding="utf-8")
    return parse(yaml.safe_load(text))


def translations(lang: str) -> dict[str, dict[str, str]]:
    """Per check id, the title and remediation in ``lang`` (``data/catalog.<lang>.yml``); English has none."""
    if lang == "en":
        return {}
    text = resources.files("dsfleet").joinpath(f"data/catalog.{lang}.yml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    out: dict[str, dict[str, str]] = {}
    for cid, spec in (data.get("checks") or {}).items():
        out[cid] = {k: str(v).strip() for k, v in spec.items() if k in ("title", "remediation")}
    return out
