"""The per-request context (request id, W3C trace id, caller) shared by logs, metrics and audit.

Held in a contextvar so that domain code can log with the request id without being passed it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclasses.dataclass
class RequestContext:
    """Per-RPC facts; `actor` is filled in by the auth interceptor once the caller is verified."""

    request_id: str
    trace_id: str
    method: str = ""
    actor: str = ""


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "causeway_request_context", default=None
)


def current() -> RequestContext | None:
    return _current.get()


def activate(ctx: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)


def deactivate(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def new_id() -> str:
    return secrets.token_hex(16)


def trace_id_from_traceparent(header: str | None) -> str | None:
    """The trace id of a valid W3C `traceparent` header, else None."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if not match or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def sanitize_request_id(value: str | None) -> str | None:
    """A caller-supplied request id if it is short and printable, else None (we mint one)."""
    if value and _SAFE_ID.match(value):
        return value
    return None
