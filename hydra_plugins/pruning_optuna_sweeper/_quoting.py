"""Values quoted for Hydra's override grammar and for a shell command line."""

from __future__ import annotations

import re
import shlex

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

# What the shell takes unquoted.
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_./:+@=-]+")


def hydra_quoted(text: str) -> str:
    """`text` as a quoted Hydra string, whatever characters it holds."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def shell_override(key: str, value: str) -> str:
    """`key=value` for a shell command line: quoted for Hydra unless Hydra reads
    it back as the same string (not `null`, `1e3`, `true`), then for the shell."""
    override = f"{key}={value}"
    if not (_SHELL_SAFE.fullmatch(override) and _reads_back_as(override, value)):
        override = f"{key}={hydra_quoted(value)}"
    if _SHELL_SAFE.fullmatch(override):
        return override
    return f'"{override}"' if not re.search(r'["$`\\!]', override) else shlex.quote(override)


def _reads_back_as(override: str, value: str) -> bool:
    try:
        [parsed] = OverridesParser.create().parse_overrides([override])
    except OverrideParseException:
        return False
    return parsed.value() == value and isinstance(parsed.value(), str)
