"""Validation policies from YAML files, one per environment, checked strictly at start.

Policies are configuration as code (services/validator/policies/{dev,test,prod}.yaml, reviewed
like code). A bad file stops the validator at start with every problem listed as
`<file>:<line>: <what is wrong>`, taken from the YAML node marks: a half-understood validation
policy is worse than none. A policy's digest is the SHA-256 of its file's bytes, recorded in every
report produced under it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from libs.config.settings import ConfigError
from libs.errors.domain_errors import NotFound
from services.validator.domain import policy_model as pm

DEFAULT_DIR = Path(__file__).parent.parent / "policies"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
CHECK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|kB|MB|GB|TB)?$")
SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
SIZE_UNITS |= {"kB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
COMPARATORS = {">=": pm.GE, "<=": pm.LE, "greater_or_equal": pm.GE, "less_or_equal": pm.LE}


class PolicyError(ConfigError):
    """One or more policy files are invalid; each problem names the file and the line."""


class _Reader:
    """Walks YAML nodes, collecting every problem with its file and line instead of stopping."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, node: yaml.Node | None, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        self.problems.append(f"{self.source}{line}: {message}")

    def mapping(self, node: yaml.Node, what: str, allowed: Iterable[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping")
            return {}
        allowed = set(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is None:
                self.fail(key, f"{what}: keys must be plain names")
            elif name in out:
                self.fail(key, f"{what}: duplicate key {name!r}")
            elif name not in allowed:
                self.fail(key, f"{what}: unknown key {name!r} (allowed: {', '.join(sorted(allowed))})")
            else:
                out[name] = (key, value)
        return out

    def scalar(self, node: yaml.Node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{what} must be a single value")
            return None
        try:
            return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
        except yaml.YAMLError as err:
            self.fail(node, f"{what}: {err}")
            return None

    def text(self, node: yaml.Node, what: str, pattern: re.Pattern | None = None) -> str | None:
        value = self.scalar(node, what)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(node, f"{what} must be text")
            return None
        if pattern is not None and not pattern.match(value):
            self.fail(node, f"{what} {value!r} must match {pattern.pattern}")
            return None
        return value

    def number(
        self, node: yaml.Node, what: str, kind: type = float, lo: float = float("-inf"), hi: float = float("inf")
    ):
        value = self.scalar(node, what)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (kind is int and not isinstance(value, int))
        ):
            self.fail(node, f"{what} must be {'an integer' if kind is int else 'a number'}")
            return None
        if not lo <= value <= hi:
            self.fail(node, f"{what} {value} must be between {lo:g} and {hi:g}")
            return None
        return kind(value)

    def duration(self, node: yaml.Node, what: str, hi: float) -> float | None:
        value = self.scalar(node, what)
        seconds = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := DURATION.match(value.strip())):
            seconds = float(m.group(1)) * DURATION_UNITS[m.group(2)]
        if seconds is None:
            self.fail(node, f"{what} must be a duration such as 90s, 10m or 1h")
        elif not 0 < seconds <= hi:
            self.fail(node, f"{what} must be more than 0 and at most {hi:g} s")
            seconds = None
        return seconds

    def size(self, node: yaml.Node, what: str, lo: int) -> int | None:
        value = self.scalar(node, what)
        size = None
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str) and (m := SIZE.match(value.strip())):
            size = int(float(m.group(1)) * SIZE_UNITS[m.group(2) or "B"])
        if size is None:
            self.fail(node, f"{what} must be a size such as 4GiB or 512MiB")
        elif size < lo:
            self.fail(node, f"{what} must be at least {lo} bytes")
            size = None
        return size

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list")
            return []
        return list(node.value)


def _threshold(r: _Reader, node: yaml.Node, check_type: str, where: str) -> pm.Threshold | None:
    fields = r.mapping(node, where, ("metric", "comparator", "absolute", "max_relative_degradation"))
    known = pm.METRICS_BY_TYPE.get(check_type, ())
    metric = r.text(fields["metric"][1], f"{where}.metric") if "metric" in fields else None
    if "metric" not in fields:
        r.fail(node, f"{where}: metric is required")
    elif metric is not None and metric not in known:
        r.fail(
            fields["metric"][1], f"{where}: {check_type} does not measure {metric!r} (it measures {', '.join(known)})"
        )
        metric = None
    comparator = None
    if "comparator" not in fields:
        r.fail(node, f"{where}: comparator is required ('>=' when higher is better, '<=' when lower is)")
    else:
        raw = r.text(fields["comparator"][1], f"{where}.comparator")
        comparator = COMPARATORS.get(raw or "")
        if raw is not None and comparator is None:
            r.fail(fields["comparator"][1], f"{where}.comparator must be '>=' or '<='")
    bounds = [k for k in ("absolute", "max_relative_degradation") if k in fields]
    if len(bounds) != 1:
        r.fail(node, f"{where}: exactly one of absolute / max_relative_degradation is required")
        return None
    if bounds[0] == "max_relative_degradation" and check_type != pm.METRIC_GATE:
        r.fail(fields[bounds[0]][0], f"{where}: only METRIC_GATE compares against the champion")
        return None
    if bounds[0] == "absolute":
        value = r.number(fields["absolute"][1], f"{where}.absolute")
        bound = {"absolute": value}
    else:
        value = r.number(fields[bounds[0]][1], f"{where}.max_relative_degradation", float, 0.0, 1.0)
        bound = {"max_relative_degradation": value}
    if metric is None or comparator is None or value is None:
        return None
    return pm.Threshold(metric=metric, comparator=comparator, **bound)


CHECK_KEYS = ("name", "type", "severity", "parameters", "thresholds")


def _check(r: _Reader, node: yaml.Node, index: int) -> pm.CheckSpec | None:
    where = f"checks[{index}]"
    fields = r.mapping(node, where, CHECK_KEYS)
    name = r.text(fields["name"][1], f"{where}.name", CHECK_NAME) if "name" in fields else None
    if "name" not in fields:
        r.fail(node, f"{where}: name is required")
    check_type = None
    if "type" not in fields:
        r.fail(node, f"{where}: type is required")
    else:
        raw = (r.text(fields["type"][1], f"{where}.type") or "").upper()
        if raw in pm.CHECK_TYPES:
            check_type = raw
        else:
            r.fail(fields["type"][1], f"{where}.type must be one of {', '.join(t.lower() for t in pm.CHECK_TYPES)}")
    severity = pm.REQUIRED
    if "severity" in fields:
        raw = (r.text(fields["severity"][1], f"{where}.severity") or "").upper()
        if raw not in (pm.REQUIRED, pm.ADVISORY):
            r.fail(fields["severity"][1], f"{where}.severity must be required or advisory")
        severity = raw
    if check_type is None or name is None:
        return None
    allowed = pm.PARAMETERS.get(check_type, {})
    parameters: dict[str, Any] = {}
    if "parameters" in fields:
        for key, (_key_node, v_node) in r.mapping(fields["parameters"][1], f"{where}.parameters", allowed).items():
            kind, lo, hi = allowed[key]
            value = r.number(v_node, f"{where}.parameters.{key}", kind, lo, hi)
            if value is not None:
                parameters[key] = value
    thresholds: list[pm.Threshold] = []
    if "thresholds" in fields:
        if check_type not in pm.METRICS_BY_TYPE:
            r.fail(fields["thresholds"][0], f"{where}: {check_type} takes no thresholds")
        else:
            for i, t_node in enumerate(r.sequence(fields["thresholds"][1], f"{where}.thresholds")):
                threshold = _threshold(r, t_node, check_type, f"{where}.thresholds[{i}]")
                if threshold is not None:
                    thresholds.append(threshold)
    needs_thresholds = (pm.METRIC_GATE, pm.LATENCY_BUDGET, pm.MEMORY_BUDGET, pm.FEATURE_CONSISTENCY)
    if check_type in needs_thresholds and "thresholds" not in fields:
        r.fail(node, f"{where}: {check_type} needs at least one threshold")
    return pm.CheckSpec(name, check_type, severity, parameters, tuple(thresholds))


TOP_KEYS = ("name", "environment", "description", "timeout", "allowed_formats", "sandbox", "checks")
SANDBOX_KEYS = ("memory_bytes", "cpu_time_limit", "max_file_bytes", "wall_time_limit")


def _rules(r: _Reader, root: yaml.Node, policy: pm.Policy, check_nodes: list[yaml.Node]) -> None:
    """Cross-field rules that keep a policy from loading a model it has not vetted."""
    names = [c.name for c in policy.checks]
    for i, name in enumerate(names):
        if name in names[:i]:
            r.fail(check_nodes[i], f"check name {name!r} is used twice")
    types = [c.type for c in policy.checks]
    scan_at = types.index(pm.ARTIFACT_SCAN) if pm.ARTIFACT_SCAN in types else None
    first_model = next((i for i, t in enumerate(types) if t in pm.MODEL_CHECKS), None)
    if scan_at is not None and first_model is not None and scan_at > first_model:
        r.fail(check_nodes[scan_at], "artifact_scan must come before any check that loads the model")
    for check_type in (pm.SIGNATURE_MATCH, pm.LATENCY_BUDGET, pm.DETERMINISM, pm.FEATURE_CONSISTENCY):
        specs = [(i, c) for i, c in enumerate(policy.checks) if c.type == check_type]
        if len({tuple(sorted(c.parameters.items())) for _, c in specs}) > 1:
            r.fail(check_nodes[specs[1][0]], f"all {check_type} checks must use the same parameters (one measurement)")
    if "mlflow_model" in policy.allowed_formats:
        r.fail(root, "allowed_formats: mlflow_model has no safe loader in the validator")
    env = policy.environment
    if env:
        extra = set(policy.allowed_formats) - pm.ENVIRONMENT_FORMATS[env]
        if extra:
            r.fail(root, f"allowed_formats: {', '.join(sorted(extra))} may not be allowed in {env}")
        for check_type in (pm.DIGEST_MATCH, pm.ARTIFACT_SCAN, pm.FORMAT_ALLOWLIST, pm.SAFE_LOAD):
            spec = policy.first(check_type)
            if spec is None or not spec.required:
                r.fail(root, f"an environment's policy must run {check_type.lower()} as a required check")


def parse_policy(data: bytes, source: str) -> tuple[pm.Policy | None, list[str]]:
    """Parse one policy file; (policy, []) or (None, problems)."""
    r = _Reader(source)
    try:
        root = yaml.compose(data.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        return None, [f"{source}{line}: not valid YAML: {getattr(err, 'problem', None) or err}"]
    if root is None:
        return None, [f"{source}: empty policy file"]
    fields = r.mapping(root, "policy", TOP_KEYS)
    for key in ("name", "timeout", "allowed_formats", "sandbox", "checks"):
        if key not in fields and isinstance(root, yaml.MappingNode):
            r.fail(root, f"{key} is required")
    name = r.text(fields["name"][1], "name", NAME) if "name" in fields else None
    env = r.text(fields["environment"][1], "environment") if "environment" in fields else ""
    if env and env not in pm.ENVIRONMENTS:
        r.fail(fields["environment"][1], f"environment must be one of {', '.join(pm.ENVIRONMENTS)}")
        env = None
    description = r.text(fields["description"][1], "description") if "description" in fields else ""
    timeout = r.duration(fields["timeout"][1], "timeout", 24 * 3600) if "timeout" in fields else None
    formats: list[str] = []
    if "allowed_formats" in fields:
        for f_node in r.sequence(fields["allowed_formats"][1], "allowed_formats"):
            fmt = r.text(f_node, "allowed_formats[]")
            if fmt is not None and fmt not in pm.FORMATS:
                r.fail(f_node, f"unknown format {fmt!r} (known: {', '.join(pm.FORMATS)})")
            elif fmt in formats:
                r.fail(f_node, f"format {fmt!r} is listed twice")
            elif fmt is not None:
                formats.append(fmt)
        if not formats:
            r.fail(fields["allowed_formats"][1], "allowed_formats must list at least one format")
    sandbox = None
    if "sandbox" in fields:
        s = r.mapping(fields["sandbox"][1], "sandbox", SANDBOX_KEYS)
        for key in SANDBOX_KEYS:
            if key not in s:
                r.fail(fields["sandbox"][1], f"sandbox.{key} is required")
        if len(s) == len(SANDBOX_KEYS):
            memory = r.size(s["memory_bytes"][1], "sandbox.memory_bytes", 256 * 1024**2)
            cpu = r.duration(s["cpu_time_limit"][1], "sandbox.cpu_time_limit", 24 * 3600)
            fsize = r.size(s["max_file_bytes"][1], "sandbox.max_file_bytes", 1024**2)
            wall = r.duration(s["wall_time_limit"][1], "sandbox.wall_time_limit", 24 * 3600)
            if memory is not None and cpu is not None and fsize is not None and wall is not None:
                sandbox = pm.SandboxLimits(memory, max(1, int(cpu)), fsize, wall)
    checks: list[pm.CheckSpec] = []
    check_nodes = r.sequence(fields["checks"][1], "checks") if "checks" in fields else []
    if "checks" in fields and not check_nodes:
        r.fail(fields["checks"][1], "checks must list at least one check")
    for i, node in enumerate(check_nodes):
        spec = _check(r, node, i)
        if spec is not None:
            checks.append(spec)
    if r.problems or name is None or env is None or timeout is None or sandbox is None:
        return None, r.problems or [f"{source}: invalid policy"]
    policy = pm.Policy(
        name=name,
        description=description or "",
        environment=env or "",
        digest=hashlib.sha256(data).hexdigest(),
        source=source,
        checks=tuple(checks),
        allowed_formats=tuple(formats),
        timeout_seconds=timeout,
        sandbox=sandbox,
    )
    _rules(r, root, policy, check_nodes)
    return (None, r.problems) if r.problems else (policy, [])


class PolicySet:
    """The loaded policies by name; read-only after start."""

    def __init__(self, policies: Iterable[pm.Policy]) -> None:
        self._by_name = {p.name: p for p in policies}

    def get(self, name: str) -> pm.Policy:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(
                f"no validation policy named {name!r} is loaded (known: {', '.join(self.names())})"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def all(self) -> list[pm.Policy]:
        return [self._by_name[n] for n in self.names()]


def load_policies(directory: Path) -> PolicySet:
    """Every *.yaml in `directory`; PolicyError listing every problem of every file."""
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise PolicyError([f"{directory}: no policy files (*.yaml)"])
    problems: list[str] = []
    policies: dict[str, pm.Policy] = {}
    for file in files:
        policy, errs = parse_policy(file.read_bytes(), str(file))
        problems += errs
        if policy is not None:
            if policy.name in policies:
                problems.append(
                    f"{file}: policy name {policy.name!r} is already used by {policies[policy.name].source}"
                )
            policies[policy.name] = policy
    if problems:
        raise PolicyError(problems)
    return PolicySet(policies.values())
