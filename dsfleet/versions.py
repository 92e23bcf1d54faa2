"""Deep Security build numbers.

The DSM reports agent builds dotted (``20.0.0.8453``) while the KB and download names use a hyphen
(``20.0.0-8453``): both parse to the same :class:`Build`, which orders numerically part by part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUILD = re.compile(r"^\s*(\d+)\.(\d+)\.(\d+)[.-](\d+)\s*$")


@dataclass(frozen=True, order=True)
class Build:
    major: int
    minor: int
    patch: int
    build: int

    @classmethod
    def parse(cls, text: str) -> "Build":
        """Parse ``20.0.0-4726`` or ``20.0.0.4726``; raise ValueError on anything else."""
        match = _BUILD.match(text)
        if not match:
            raise ValueError(f"not a Deep Security build number: {text!r}")
        return cls(*(int(part) for part in match.groups()))

    @property
    def line(self) -> str:
        """The release line the KB table is keyed by, e.g. ``20.0``."""
        return f"{self.major}.{self.minor}"

    @property
    def is_null(self) -> bool:
        """``0.0.0.0`` is what the DSM reports for a computer with no activated agent."""
        return self == Build(0, 0, 0, 0)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}-{self.build}"


def parse_release(text: str) -> tuple[int, int]:
    """The (major, minor) release of any version string: ``20.0.1022`` → (20, 0)."""
    match = re.match(r"^\s*(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return int(match.group(1)), int(match.group(2))
