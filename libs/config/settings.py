"""Typed settings from environment variables; secrets only from files.

A service declares its settings as a frozen, keyword-only dataclass whose fields are made with
`setting(...)`, then calls `load(Settings, prefix="CAUSEWAY_REGISTRY_")` once at start. Every
problem is collected and raised together as one `ConfigError`, naming the variable, the bad value
and what was expected, so a misconfigured pod fails at start with a message an operator can act on.

Secrets (fields typed `Secret`) are read only from the file named by `<VAR>_FILE` (a mounted
Kubernetes secret or a local file): a secret in a plain environment variable is refused, because
environment variables leak into process listings, crash dumps and child processes.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_META_KEY = "causeway.setting"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """One or more settings are missing or invalid; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Secret:
    """A secret string whose repr and str never show the value. Use `.reveal()` where needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True)
class _Meta:
    name: str
    help: str
    minimum: float | None
    maximum: float | None


def setting(
    name: str,
    *,
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - reads naturally at the call site
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A settings field read from `<prefix><name>`; without `default` it is required."""
    meta = {_META_KEY: _Meta(name, help, minimum, maximum)}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or frozenset default, settings are immutable")
    return dataclasses.field(default=default, metadata=meta)


def _parse(kind: Any, raw: str) -> Any:
    """Convert `raw` to `kind`; raises ValueError with what was expected."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported setting type {kind}")
        return None if raw == "" else _parse(args[0], raw)
    if origin is tuple:
        (item, *_rest) = typing.get_args(kind)
        return tuple(_parse(item, part.strip()) for part in raw.split(",") if part.strip())
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")
    if kind is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
    if kind is float:
        try:
            return float(raw.strip())
        except ValueError:
            raise ValueError("expected a number") from None
    if kind is Path:
        if not raw.strip():
            raise ValueError("expected a path")
        return Path(raw.strip())
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        by_value = {str(m.value).lower(): m for m in kind}
        try:
            return by_value[raw.strip().lower()]
        except KeyError:
            raise ValueError("expected one of " + ", ".join(sorted(by_value))) from None
    if kind is str:
        return raw
    raise TypeError(f"unsupported setting type {kind}")


def _read_secret(var: str, environ: Mapping[str, str], problems: list[str]) -> Secret | None:
    if var in environ:
        problems.append(f"{var} is a secret and is only read from a file: write it to a file and set {var}_FILE")
        return None
    path = environ.get(f"{var}_FILE")
    if path is None:
        return None
    try:
        return Secret(Path(path).read_text().rstrip("\r\n"))
    except OSError as err:
        problems.append(f"{var}_FILE={path!r}: cannot read the secret file ({err.strerror})")
        return None


def load(cls: type[T], *, prefix: str = "", environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from the environment; raise ConfigError listing every problem at once."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    problems: list[str] = []
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        meta: _Meta | None = field.metadata.get(_META_KEY)
        if meta is None:
            continue
        var = prefix + meta.name
        kind = hints[field.name]
        has_default = field.default is not dataclasses.MISSING
        if kind is Secret or kind == (Secret | None):
            value = _read_secret(var, env, problems)
            if value is not None:
                values[field.name] = value
            elif not has_default and f"{var}_FILE" not in env and var not in env:
                problems.append(f"{var}_FILE is required: the path of a file holding {meta.help or 'the secret'}")
            continue
        raw = env.get(var)
        if raw is None:
            if not has_default:
                problems.append(f"{var} is required" + (f": {meta.help}" if meta.help else ""))
            continue
        try:
            value = _parse(kind, raw)
        except ValueError as err:
            problems.append(f"{var}={raw!r}: {err}")
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if meta.minimum is not None and value < meta.minimum:
                problems.append(f"{var}={raw!r}: must be at least {meta.minimum:g}")
                continue
            if meta.maximum is not None and value > meta.maximum:
                problems.append(f"{var}={raw!r}: must be at most {meta.maximum:g}")
                continue
        values[field.name] = value
    if problems:
        raise ConfigError(problems)
    return cls(**values)


def load_sections(
    sections: Mapping[str, type], *, prefix: str, environ: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Load several settings classes with one prefix; returns the loaded ones and every problem.

    A service's config is a few sections (its own, the server's, auth); collecting the problems of
    all of them lets it report every bad variable at once, then add its own cross-field checks.
    """
    parts: dict[str, Any] = {}
    problems: list[str] = []
    for name, cls in sections.items():
        try:
            parts[name] = load(cls, prefix=prefix, environ=environ)
        except ConfigError as err:
            problems += err.problems
    return parts, problems


def describe(cls: type, *, prefix: str = "") -> list[tuple[str, str, str]]:
    """(variable, default, help) for each setting, for READMEs and `--help` output."""
    rows = []
    for field in dataclasses.fields(cls):
        meta: _Meta | None = field.metadata.get(_META_KEY)
        if meta is None:
            continue
        hints = typing.get_type_hints(cls)
        var = prefix + meta.name + ("_FILE" if hints[field.name] in (Secret, Secret | None) else "")
        default = "required" if field.default is dataclasses.MISSING else repr(field.default)
        rows.append((var, default, meta.help))
    return rows
