"""Environment policies: what a version needs before it may be deployed to, or loaded in, dev/test/prod.

Policies are configuration as code: a YAML file reviewed under change control and loaded once at
start (`services/registry/policies/environments.yaml` is the built-in default; the file named by
`policies_file` replaces it as a whole). A bad file stops the registry at start with a message
naming the file and the line, because a half-understood release policy is worse than none.

Each policy's digest is the SHA-256 of its canonical JSON (`EnvironmentPolicy.canonical()`), so
changing the prod policy changes the prod digest only, and every gate decision names the exact
policy it applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from libs.audit.events import canonical_json
from libs.auth.rbac import APPROVALS_SIGN, ROLE_PERMISSIONS
from libs.config.settings import ConfigError
from libs.errors.domain_errors import InvalidArgument, NotFound
from services.registry.domain.records import ENVIRONMENTS

SUBMITTER_EXCLUDED, SUBMITTER_ALLOWED = "EXCLUDED", "ALLOWED"
# Only roles that may call CreateApproval at all make sense as approver roles; naming any other
# role (or a typo) would make an environment impossible to approve, so the file is refused.
SIGNING_ROLES = tuple(sorted(r for r, perms in ROLE_PERMISSIONS.items() if APPROVALS_SIGN in perms))
DEFAULT_FILE = Path(__file__).parent.parent / "policies" / "environments.yaml"


@dataclasses.dataclass(frozen=True)
class ApprovalRequirement:
    """Who may sign for an environment and how many APPROVED_FOR_RELEASE signatures it needs."""

    min_approvals: int = 0
    approver_roles: tuple[str, ...] = ()
    submitter_rule: str = SUBMITTER_EXCLUDED

    @property
    def submitter_excluded(self) -> bool:
        return self.submitter_rule != SUBMITTER_ALLOWED

    def eligible(self, roles: Iterable[str]) -> bool:
        """True if a signer holding `roles` may sign (no approver roles configured: anyone)."""
        return not self.approver_roles or bool(set(roles) & set(self.approver_roles))


@dataclasses.dataclass(frozen=True)
class EnvironmentPolicy:
    """One environment's gates. `validation_policy` "" means no validation is required."""

    environment: str
    validation_policy: str = ""
    approvals: ApprovalRequirement = dataclasses.field(default_factory=ApprovalRequirement)
    requires_environment: str = ""

    @property
    def approvals_required(self) -> bool:
        return self.approvals.min_approvals > 0

    def canonical(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "validation": {"policy_name": self.validation_policy} if self.validation_policy else None,
            "approvals": {
                "min_approvals": self.approvals.min_approvals,
                "approver_roles": sorted(self.approvals.approver_roles),
                "submitter_rule": self.approvals.submitter_rule,
            },
            "requires_environment": self.requires_environment or None,
        }

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of this policy."""
        return hashlib.sha256(canonical_json(self.canonical())).hexdigest()


class PolicySet:
    """The configured environments' policies, read-only after start."""

    def __init__(self, policies: Mapping[str, EnvironmentPolicy], source: str = "") -> None:
        self._policies = dict(policies)
        self.source = source

    def get(self, environment: str) -> EnvironmentPolicy:
        """The policy of `environment`; InvalidArgument if unknown, NotFound if not configured."""
        if environment not in ENVIRONMENTS:
            raise InvalidArgument(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        try:
            return self._policies[environment]
        except KeyError:
            raise NotFound(f"environment {environment} has no policy configured in this registry") from None

    def all(self) -> list[EnvironmentPolicy]:
        """Every configured policy in dev, test, prod order."""
        return [self._policies[e] for e in ENVIRONMENTS if e in self._policies]

    def __contains__(self, environment: object) -> bool:
        return environment in self._policies


class PolicyFileError(ConfigError):
    """The policy file is unreadable or invalid; each problem names the file and the line."""


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        self.items.append(f"{self.source}{line}: {message}")


def _mapping(node: yaml.Node, what: str, problems: _Problems) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, f"{what} must be a mapping")
        return {}
    result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            problems.add(key, f"keys of {what} must be plain names")
        elif key.value in result:
            problems.add(key, f"{what} has {key.value!r} twice")
        else:
            result[key.value] = (key, value)
    return result


def _unknown_keys(fields: dict, allowed: Iterable[str], what: str, problems: _Problems) -> None:
    for name, (key, _) in fields.items():
        if name not in allowed:
            problems.add(key, f"unknown key {name!r} in {what} (expected: {', '.join(allowed)})")


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _whole_number(node: yaml.Node) -> int | None:
    if not isinstance(node, yaml.ScalarNode) or not node.tag.endswith(":int"):
        return None
    try:
        return int(node.value.replace("_", ""), 10)
    except ValueError:
        return None  # YAML 1.1 hex/octal/sexagesimal forms: too clever for a release policy


def _string(node: yaml.Node, what: str, problems: _Problems) -> str:
    if not isinstance(node, yaml.ScalarNode) or not node.tag.endswith(":str") or not node.value.strip():
        problems.add(node, f"{what} must be a non-empty string")
        return ""
    return node.value.strip()


def _parse_approvals(node: yaml.Node, env: str, problems: _Problems) -> ApprovalRequirement:
    what = f"environments.{env}.approvals"
    if _is_null(node):
        return ApprovalRequirement()
    fields = _mapping(node, what, problems)
    _unknown_keys(fields, ("min_approvals", "approver_roles", "submitter_rule"), what, problems)
    minimum = 0
    if "min_approvals" in fields:
        value = fields["min_approvals"][1]
        number = _whole_number(value)
        if number is None or number < 0:
            problems.add(value, f"{what}.min_approvals must be a whole number, 0 or more")
        else:
            minimum = number
    roles: list[str] = []
    if "approver_roles" in fields:
        value = fields["approver_roles"][1]
        if not isinstance(value, yaml.SequenceNode):
            problems.add(value, f"{what}.approver_roles must be a list of role names")
        else:
            for item in value.value:
                role = _string(item, f"{what}.approver_roles[]", problems)
                if role and role not in SIGNING_ROLES:
                    problems.add(item, f"role {role!r} cannot sign approvals; use one of: {', '.join(SIGNING_ROLES)}")
                elif role:
                    roles.append(role)
    rule = SUBMITTER_EXCLUDED
    if "submitter_rule" in fields:
        value = fields["submitter_rule"][1]
        text = _string(value, f"{what}.submitter_rule", problems).upper()
        if text and text not in (SUBMITTER_EXCLUDED, SUBMITTER_ALLOWED):
            problems.add(value, f"{what}.submitter_rule must be 'excluded' or 'allowed'")
        elif text:
            rule = text
    return ApprovalRequirement(minimum, tuple(sorted(set(roles))), rule)


def _parse_environment(env: str, node: yaml.Node, problems: _Problems) -> tuple[EnvironmentPolicy, yaml.Node | None]:
    what = f"environments.{env}"
    fields = _mapping(node, what, problems)
    _unknown_keys(fields, ("validation", "approvals", "requires_environment"), what, problems)
    validation = ""
    if "validation" in fields and not _is_null(fields["validation"][1]):
        vfields = _mapping(fields["validation"][1], f"{what}.validation", problems)
        _unknown_keys(vfields, ("policy",), f"{what}.validation", problems)
        if "policy" not in vfields:
            problems.add(fields["validation"][1], f"{what}.validation needs 'policy' (the validator policy name)")
        else:
            validation = _string(vfields["policy"][1], f"{what}.validation.policy", problems)
    approvals = _parse_approvals(fields["approvals"][1], env, problems) if "approvals" in fields else None
    requires, requires_node = "", None
    if "requires_environment" in fields and not _is_null(fields["requires_environment"][1]):
        requires_node = fields["requires_environment"][1]
        requires = _string(requires_node, f"{what}.requires_environment", problems)
    policy = EnvironmentPolicy(env, validation, approvals or ApprovalRequirement(), requires)
    return policy, requires_node


def _check_order(policies: dict[str, EnvironmentPolicy], nodes: dict[str, yaml.Node], problems: _Problems) -> None:
    for env, policy in policies.items():
        required = policy.requires_environment
        if not required:
            continue
        if required not in policies:
            problems.add(nodes[env], f"environments.{env}.requires_environment {required!r} is not configured")
            continue
        seen, current = [env], required
        while current:
            if current in seen:
                problems.add(nodes[env], "requires_environment forms a cycle: " + " -> ".join([*seen, current]))
                break
            seen.append(current)
            current = policies[current].requires_environment if current in policies else ""


def parse_policies(text: str, source: str) -> PolicySet:
    """Parse policy YAML; raises PolicyFileError listing every problem with `source:line`."""
    problems = _Problems(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise PolicyFileError([f"{source}{line}: not valid YAML: {err.problem or err}"]) from None
    except yaml.YAMLError as err:
        raise PolicyFileError([f"{source}: not valid YAML: {err}"]) from None
    if root is None:
        raise PolicyFileError([f"{source}: the file is empty; it needs an 'environments' mapping"])
    top = _mapping(root, "the file", problems)
    _unknown_keys(top, ("environments",), "the file", problems)
    policies: dict[str, EnvironmentPolicy] = {}
    requires_nodes: dict[str, yaml.Node] = {}
    if "environments" not in top:
        problems.add(root, "the file needs an 'environments' mapping (dev, test, prod)")
    else:
        envs = _mapping(top["environments"][1], "environments", problems)
        if not envs and isinstance(top["environments"][1], yaml.MappingNode):
            problems.add(top["environments"][1], "environments is empty: configure at least one environment")
        for env, (key, node) in envs.items():
            if env not in ENVIRONMENTS:
                problems.add(key, f"unknown environment {env!r} (expected: {', '.join(ENVIRONMENTS)})")
                continue
            policy, requires_node = _parse_environment(env, node, problems)
            policies[env] = policy
            requires_nodes[env] = requires_node or key
    if not problems.items:
        _check_order(policies, requires_nodes, problems)
    if problems.items:
        raise PolicyFileError(problems.items)
    return PolicySet(policies, source)


def load_policies(path: Path | None = None) -> PolicySet:
    """The policies in `path`, or the built-in default; PolicyFileError if unreadable or invalid."""
    file = Path(path) if path is not None else DEFAULT_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyFileError([f"{file}: cannot read the policy file ({err})"]) from None
    return parse_policies(text, str(file))
