"""Who is calling: the verified identity behind an RPC, and the roles the platform knows."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import enum


class Role(enum.Enum):
    RESEARCHER = "researcher"
    REVIEWER = "reviewer"
    QA_APPROVER = "qa-approver"
    RELEASE_MANAGER = "release-manager"
    PLATFORM_ADMIN = "platform-admin"
    SERVICE = "service"


@dataclasses.dataclass(frozen=True)
class Principal:
    """A verified caller. `subject` is the token's `sub`; `kind` is "user" or "service"."""

    subject: str
    roles: frozenset[str]
    issued_at: dt.datetime
    expires_at: dt.datetime
    name: str = ""
    email: str = ""
    kind: str = "user"
    token_id: str = ""
    teams: frozenset[str] = frozenset()

    def has_any_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def display(self) -> str:
        return self.name or self.subject

    def authenticated_within(self, minutes: float, now: dt.datetime | None = None) -> bool:
        """True if the token was issued no more than `minutes` ago (21 CFR 11 re-authentication)."""
        now = now or dt.datetime.now(dt.UTC)
        return now - self.issued_at <= dt.timedelta(minutes=minutes)


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("causeway_principal", default=None)


def current() -> Principal | None:
    """The caller of the RPC being handled on this thread, set by the auth interceptor."""
    return _current.get()


def activate(principal: Principal) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def deactivate(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)
