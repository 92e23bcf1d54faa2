"""YAML for user files (inventory, waivers): safe, and dates stay text until a field asks for one.

PyYAML's safe loader turns anything shaped like ``2027-13-45`` into a ``datetime`` while parsing and raises a
bare ``ValueError`` on an impossible one, before any field validation could name the key. Here timestamps are
not resolved at all; the fields that hold dates parse them themselves and report file, field and expectation.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import InputError


class _TextDatesLoader(yaml.SafeLoader):
    pass


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(raw: bytes | str, file: str) -> Any:
    """Parse one YAML document; a syntax error is an :class:`InputError` naming the line."""
    try:
        return yaml.load(raw, Loader=_TextDatesLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise InputError(file, where, "valid YAML", str(getattr(err, "problem", None) or err)) from None
