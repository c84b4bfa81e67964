"""Pod policy: the rules every workload in gitops/ must meet, one function per rule.

Each rule takes a pod template (with where it came from) and returns violations as strings, so a
test per rule can state it and show every offender at once. The rules are docs/STYLE.md's: non-root,
read-only root filesystem, all capabilities dropped, no privilege escalation, requests and limits,
gRPC readiness and liveness probes, a ServiceAccount of its own, images pinned by digest.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

DIGEST_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class PodTemplate:
    """A pod spec found in a rendered object: `where` names the object for messages."""

    where: str
    spec: dict[str, Any]

    def containers(self) -> Iterator[dict[str, Any]]:
        yield from self.spec.get("initContainers", []) or []
        yield from self.spec.get("containers", []) or []


def pod_templates(objects: Iterable[dict[str, Any]]) -> list[PodTemplate]:
    """Every pod spec in the objects: Pods, workload templates, CronJob job templates, Rollouts."""
    found = []
    for obj in objects:
        kind = obj.get("kind")
        where = f"{kind}/{obj.get('metadata', {}).get('namespace', '')}/{obj.get('metadata', {}).get('name')}"
        spec = obj.get("spec") or {}
        if kind == "Pod":
            found.append(PodTemplate(where, spec))
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Rollout"):
            if "template" in spec:  # a Rollout may reference a Deployment's template instead
                found.append(PodTemplate(where, spec["template"].get("spec", {})))
        elif kind == "CronJob":
            found.append(PodTemplate(where, spec["jobTemplate"]["spec"]["template"].get("spec", {})))
    return found


def _container_ctx(pod: PodTemplate, container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def non_root(pod: PodTemplate) -> list[str]:
    """runAsNonRoot is true (pod or container) and no uid 0 is requested."""
    out = []
    pod_ctx = pod.spec.get("securityContext") or {}
    for c in pod.containers():
        ctx = _container_ctx(pod, c)
        non_root_set = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
        uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        if not non_root_set or uid == 0:
            out.append(f"{pod.where} container {c['name']}: must run as non-root (runAsNonRoot: true, uid != 0)")
    return out


def read_only_root_filesystem(pod: PodTemplate) -> list[str]:
    return [
        f"{pod.where} container {c['name']}: readOnlyRootFilesystem must be true"
        for c in pod.containers()
        if _container_ctx(pod, c).get("readOnlyRootFilesystem") is not True
    ]


def no_privilege_escalation(pod: PodTemplate) -> list[str]:
    """allowPrivilegeEscalation explicitly false, never privileged, no host namespaces."""
    out = []
    for c in pod.containers():
        ctx = _container_ctx(pod, c)
        if ctx.get("allowPrivilegeEscalation") is not False or ctx.get("privileged"):
            out.append(f"{pod.where} container {c['name']}: allowPrivilegeEscalation must be false, never privileged")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.spec.get(field):
            out.append(f"{pod.where}: {field} is not allowed")
    return out


def capabilities_dropped(pod: PodTemplate) -> list[str]:
    out = []
    for c in pod.containers():
        caps = _container_ctx(pod, c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
            out.append(f"{pod.where} container {c['name']}: capabilities must drop ALL and add none")
    return out


def requests_and_limits(pod: PodTemplate) -> list[str]:
    out = []
    for c in pod.containers():
        res = c.get("resources") or {}
        for bound in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in (res.get(bound) or {})]
            if missing:
                out.append(f"{pod.where} container {c['name']}: {bound} missing {', '.join(missing)}")
    return out


def images_by_digest(pod: PodTemplate) -> list[str]:
    return [
        f"{pod.where} container {c['name']}: image {c.get('image')!r} is not pinned by digest (name@sha256:<64 hex>)"
        for c in pod.containers()
        if not DIGEST_IMAGE.match(c.get("image", ""))
    ]


def grpc_probes(pod: PodTemplate) -> list[str]:
    """Every serving container has gRPC readiness and liveness probes (grpc.health.v1)."""
    out = []
    for c in pod.spec.get("containers", []) or []:
        for probe in ("readinessProbe", "livenessProbe"):
            if "grpc" not in (c.get(probe) or {}):
                out.append(f"{pod.where} container {c['name']}: {probe} must be a gRPC probe")
    return out


def own_service_account(pod: PodTemplate) -> list[str]:
    name = pod.spec.get("serviceAccountName")
    if not name or name == "default":
        return [f"{pod.where}: needs a serviceAccountName of its own (not default)"]
    return []


RULES: dict[str, Callable[[PodTemplate], list[str]]] = {
    "non_root": non_root,
    "read_only_root_filesystem": read_only_root_filesystem,
    "no_privilege_escalation": no_privilege_escalation,
    "capabilities_dropped": capabilities_dropped,
    "requests_and_limits": requests_and_limits,
    "images_by_digest": images_by_digest,
    "grpc_probes": grpc_probes,
    "own_service_account": own_service_account,
}


def violations(objects: Iterable[dict[str, Any]], rules: Iterable[str] = tuple(RULES)) -> list[str]:
    """All violations of the named rules (default: all) in the objects' pod templates."""
    pods = pod_templates(objects)
    return [v for name in rules for pod in pods for v in RULES[name](pod)]
