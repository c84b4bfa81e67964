"""Validation of user-supplied names, tags and text, before anything is stored.

Names become parts of URLs, file paths in the GitOps tree, Kubernetes object names and audit
subjects, so they are restricted to DNS-1123 labels; tag keys to a safe charset without `..` or
slashes at the ends; nothing may carry control characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from libs.errors.domain_errors import InvalidArgument

MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TEAM_NAME = MODEL_NAME
TAG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,126}[A-Za-z0-9_]$|^[A-Za-z0-9]$")
RESERVED_TAG_PREFIXES = ("causeway.", "mlflow.")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

MAX_TAGS = 50
MAX_TAG_VALUE = 5000
MAX_DESCRIPTION = 20_000
MAX_REASON = 2000


def model_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise InvalidArgument(
            f"{field} {name!r:.80} is not a valid model name: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def team_name(name: str) -> str:
    if not TEAM_NAME.match(name or ""):
        raise InvalidArgument(f"owner_team {name!r:.80} is not a valid team name (a DNS-1123 label)")
    return name


def version_number(version: int) -> int:
    if version < 1:
        raise InvalidArgument(f"version must be 1 or more, not {version}")
    return version


def text(value: str, field: str, limit: int, *, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidArgument(f"{field} is required")
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(f"{field} contains control characters")
    return value


def tag_key(key: str) -> str:
    if not TAG_KEY.match(key or "") or ".." in key or "//" in key:
        raise InvalidArgument(
            f"tag key {key!r:.80} is invalid: 1-128 of letters, digits, '_', '-', '.', '/', "
            "not starting or ending with a separator, no '..'"
        )
    if key.lower().startswith(RESERVED_TAG_PREFIXES):
        raise InvalidArgument(f"tag key {key!r} uses a reserved prefix ({', '.join(RESERVED_TAG_PREFIXES)})")
    return key


def tags(values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags, got {len(values)}")
    return {tag_key(k): text(v, f"tag {k!r} value", MAX_TAG_VALUE) for k, v in values.items()}
