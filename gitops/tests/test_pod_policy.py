"""Pod policy, one test per rule, over every pod template in every environment overlay.

The rules (gitops/validation/policy.py): run as non-root; read-only root filesystem; no
privilege escalation and never privileged; all capabilities dropped; CPU and memory requests and
limits; images pinned by digest; gRPC readiness and liveness probes; a ServiceAccount of its own.
"""

from __future__ import annotations

import copy

import pytest

from gitops.tests.tree import all_env_objects, find, rendered
from gitops.validation import policy


def _pods() -> list[policy.PodTemplate]:
    pods = policy.pod_templates(obj for _, obj in all_env_objects())
    assert len(pods) >= 24, "expected the four services in each of the six environments"
    return pods


def _check(rule: str) -> None:
    offenders = [v for pod in _pods() for v in policy.RULES[rule](pod)]
    assert not offenders, "\n".join(offenders)


def test_pods_run_as_non_root() -> None:
    _check("non_root")


def test_pods_have_a_read_only_root_filesystem() -> None:
    _check("read_only_root_filesystem")


def test_pods_cannot_escalate_privileges() -> None:
    _check("no_privilege_escalation")


def test_pods_drop_all_capabilities() -> None:
    _check("capabilities_dropped")


def test_pods_set_requests_and_limits() -> None:
    _check("requests_and_limits")


def test_images_are_pinned_by_digest() -> None:
    _check("images_by_digest")


def test_pods_have_grpc_readiness_and_liveness_probes() -> None:
    _check("grpc_probes")


def test_pods_run_as_their_own_service_account() -> None:
    _check("own_service_account")


def _bad_pod(mutate) -> policy.PodTemplate:
    deployment = copy.deepcopy(find(rendered("envs/aws/dev"), "Deployment", "registry")[0])
    mutate(deployment["spec"]["template"]["spec"])
    return policy.pod_templates([deployment])[0]


@pytest.mark.parametrize(
    ("rule", "mutate"),
    [
        ("non_root", lambda s: s["containers"][0]["securityContext"].update(runAsUser=0)),
        ("non_root", lambda s: s["securityContext"].pop("runAsNonRoot")),
        ("read_only_root_filesystem", lambda s: s["containers"][0]["securityContext"].pop("readOnlyRootFilesystem")),
        ("no_privilege_escalation", lambda s: s["containers"][0]["securityContext"].update(privileged=True)),
        ("no_privilege_escalation", lambda s: s.update(hostNetwork=True)),
        (
            "capabilities_dropped",
            lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        ),
        ("requests_and_limits", lambda s: s["containers"][0]["resources"].pop("limits")),
        (
            "images_by_digest",
            lambda s: s["containers"][0].update(image="registry.causeway.example/causeway/registry:latest"),
        ),
        ("grpc_probes", lambda s: s["containers"][0].update(livenessProbe={"tcpSocket": {"port": 50051}})),
        ("own_service_account", lambda s: s.update(serviceAccountName="default")),
    ],
)
def test_each_rule_catches_its_violation(rule, mutate) -> None:
    assert policy.RULES[rule](_bad_pod(mutate)), f"{rule} did not flag the violation"
