"""Moving aliases: dev/test/prod follow deployments, champion is the release manager's call.

Environment aliases are moved only by the deployer service, and only to a version that passes
that environment's gates, so "what is in prod" in the registry never disagrees with what the
gates allowed. CHAMPION (the version new candidates are compared against) is set by people with
role release-manager.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Protocol

from libs.auth.principal import Principal
from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.registry.domain import naming, tags
from services.registry.domain.catalog import ModelCatalog
from services.registry.domain.records import ALIASES, ARCHIVED, ENVIRONMENTS, ActorRecord


class GateChecker(Protocol):
    def require_gates(self, name: str, version: int, environment: str):
        """The gate check if ALLOWED; raises a FAILED_PRECONDITION error naming the failed gates."""


class AliasManager:
    def __init__(self, catalog: ModelCatalog, gates: GateChecker | None, deployer_subjects: frozenset[str]) -> None:
        self.catalog = catalog
        self.gates = gates
        self.deployer_subjects = deployer_subjects

    def _authorize(self, principal: Principal, alias: str) -> None:
        if alias in ENVIRONMENTS:
            if principal.kind != "service" or principal.subject not in self.deployer_subjects:
                raise PermissionDenied(
                    f"the {alias} alias follows deployments: only the deployer service moves it "
                    "(deploy, promote or roll back instead)"
                )
        elif not principal.has_any_role("release-manager", "platform-admin"):
            raise PermissionDenied(f"only a release-manager may move the {alias} alias")

    def set_alias(self, principal: Principal, name: str, alias: str, version: int, reason: str) -> int:
        """Point `alias` at `version`; returns the version it pointed at before (0 if none)."""
        if alias not in ALIASES:
            raise InvalidArgument(f"alias must be one of {', '.join(ALIASES)}")
        naming.text(reason, "reason", naming.MAX_REASON, required=True)
        self._authorize(principal, alias)
        record = self.catalog.get_version(name, version)
        if record.state == ARCHIVED:
            raise FailedPrecondition(f"{record.ref} is archived and can no longer be given an alias")
        if alias in ENVIRONMENTS:
            if self.gates is None:  # fail closed: never move an environment alias unchecked
                raise FailedPrecondition("environment gates are not configured on this registry")
            self.gates.require_gates(name, version, alias)
        with self.catalog._lock(name):
            previous = self.catalog._aliases_of(name).get(alias, 0)
            info = {
                "version": version,
                "assigned_by": ActorRecord.of(principal, self.catalog.issuer).to_dict(),
                "assign_time": dt.datetime.now(dt.UTC).isoformat(),
                "reason": reason,
            }
            self.catalog.mlflow.set_alias(name, alias, version)
            self.catalog.mlflow.set_model_tag(name, tags.ALIAS_PREFIX + alias, tags.dumps(info))
        self.catalog.auditor.record(
            principal,
            "model.alias.set",
            f"models/{name}",
            {"alias": alias, "version": version, "previous_version": previous, "reason": reason},
        )
        return previous

    def delete_alias(self, principal: Principal, name: str, alias: str, reason: str) -> int:
        if alias not in ALIASES:
            raise InvalidArgument(f"alias must be one of {', '.join(ALIASES)}")
        naming.text(reason, "reason", naming.MAX_REASON, required=True)
        self._authorize(principal, alias)
        with self.catalog._lock(name):
            previous = self.catalog._aliases_of(name).get(alias)
            if previous is None:
                raise NotFound(f"model {name} has no {alias} alias")
            self.catalog.mlflow.delete_alias(name, alias)
            with contextlib.suppress(NotFound):  # set before the registry recorded who set it
                self.catalog.mlflow.delete_model_tag(name, tags.ALIAS_PREFIX + alias)
        self.catalog.auditor.record(
            principal,
            "model.alias.delete",
            f"models/{name}",
            {"alias": alias, "previous_version": previous, "reason": reason},
        )
        return previous

    def version_by_alias(self, name: str, alias: str):
        if alias not in ALIASES:
            raise InvalidArgument(f"alias must be one of {', '.join(ALIASES)}")
        version = self.catalog._aliases_of(naming.model_name(name)).get(alias)
        if version is None:
            raise NotFound(f"model {name} has no {alias} alias")
        return self.catalog.get_version(name, version)
