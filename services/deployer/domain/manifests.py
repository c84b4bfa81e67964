"""Per-model GitOps manifests: what the deployer writes under gitops/models/<cloud>/<env>/<model>/.

Pure functions from a release to file contents (bytes, deterministic: the same release gives the
same bytes, so re-deploying is a no-op and rollbacks compare exactly). The files:

  release.env          the pin: model, version, artifact digest, deployment id. A new version or a
                       promotion changes only this file.
  kustomization.yaml   generates ConfigMap model-<name>-release from release.env (the hash suffix
                       makes a new pin roll the pods); includes the cloud's GPU placement
                       component. Each model directory is its own Argo CD Application.
  workload.yaml        gpu-runner Deployment (direct) or Argo Rollout (canary) by image digest
  analysis.yaml        canary only: AnalysisTemplate comparing canary and stable from Prometheus
  service.yaml  hpa.yaml  pdb.yaml
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from services.deployer.domain.records import CanaryCriterion, Strategy

HEADER = "# Written by the Causeway deployer (services/deployer). Change it through a deployment.\n"
NAMESPACE = "causeway"
GRPC_PORT = 50051
METRICS_PORT = 9090


@dataclasses.dataclass(frozen=True)
class Sizing:
    """Replica range and per-pod resources of a model's runners in one environment."""

    min_replicas: int
    max_replicas: int
    cpu_request: str = "1"
    cpu_limit: str = "4"
    memory_request: str = "4Gi"
    memory_limit: str = "16Gi"


SIZING = {
    "dev": Sizing(1, 2, memory_request="2Gi", memory_limit="8Gi"),
    "test": Sizing(1, 3),
    "prod": Sizing(2, 10),
}


@dataclasses.dataclass(frozen=True)
class Release:
    """Everything the manifests depend on; nothing else goes into them."""

    model_name: str
    version: int
    artifact_digest: str  # sha256:<hex>
    deployment_id: str
    environment: str
    cloud: str
    strategy: Strategy
    runner_image: str  # name@sha256:<hex>
    prometheus_url: str
    registry_address: str


def model_dir(gitops_prefix: str, cloud: str, environment: str, model: str = "") -> str:
    parts = [p for p in (gitops_prefix, "models", cloud, environment, model) if p]
    return "/".join(parts)


def _yaml(*docs: dict[str, Any], comment: str = "") -> bytes:
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)
    return (HEADER + comment + body).encode()


def _labels(release: Release) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "gpu-runner",
        "app.kubernetes.io/instance": f"model-{release.model_name}",
        "app.kubernetes.io/part-of": "causeway",
        "causeway.io/model": release.model_name,
    }


def release_env(release: Release) -> bytes:
    """The pin file (KEY=VALUE, read by kustomize's configMapGenerator and by the deployer)."""
    lines = [
        f"CAUSEWAY_MODEL_NAME={release.model_name}",
        f"CAUSEWAY_MODEL_VERSION={release.version}",
        f"CAUSEWAY_MODEL_ARTIFACT_DIGEST={release.artifact_digest}",
        f"CAUSEWAY_DEPLOYMENT_ID={release.deployment_id}",
        f"CAUSEWAY_GPU_RUNNER_PRELOAD={release.model_name}:{release.version}",
    ]
    return ("\n".join(lines) + "\n").encode()


def parse_release_env(content: bytes) -> dict[str, str]:
    out = {}
    for line in content.decode().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def _pod_template(release: Release) -> dict[str, Any]:
    sizing = SIZING[release.environment]
    env = [
        ("CAUSEWAY_GPU_RUNNER_HOST", "0.0.0.0"),  # noqa: S104 - inside the pod
        ("CAUSEWAY_GPU_RUNNER_PORT", str(GRPC_PORT)),
        ("CAUSEWAY_GPU_RUNNER_METRICS_PORT", str(METRICS_PORT)),
        ("CAUSEWAY_GPU_RUNNER_ENVIRONMENT", release.environment),
        ("CAUSEWAY_GPU_RUNNER_REGISTRY_ADDRESS", release.registry_address),
        ("CAUSEWAY_GPU_RUNNER_AUTH_SERVICE_TOKEN_FILE", "/var/run/secrets/causeway/identity/token"),
        ("CAUSEWAY_GPU_RUNNER_DATA_DIR", "/var/cache/gpu-runner"),
    ]
    probe = {"grpc": {"port": GRPC_PORT}}
    return {
        "metadata": {"labels": _labels(release)},
        "spec": {
            "serviceAccountName": "gpu-runner",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "gpu-runner",
                    "image": release.runner_image,
                    "ports": [
                        {"name": "grpc", "containerPort": GRPC_PORT},
                        {"name": "metrics", "containerPort": METRICS_PORT},
                    ],
                    "env": [{"name": k, "value": v} for k, v in env],
                    "envFrom": [{"configMapRef": {"name": f"model-{release.model_name}-release"}}],
                    "resources": {
                        "requests": {"cpu": sizing.cpu_request, "memory": sizing.memory_request},
                        "limits": {"cpu": sizing.cpu_limit, "memory": sizing.memory_limit},
                    },
                    # Ready only once the pinned version is loaded and verified.
                    "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
                    "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "privileged": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir
                        {"name": "cache", "mountPath": "/var/cache/gpu-runner"},
                        {"name": "identity", "mountPath": "/var/run/secrets/causeway/identity", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "cache", "emptyDir": {"sizeLimit": "50Gi"}},
                {
                    "name": "identity",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": "causeway",
                                    "expirationSeconds": 3600,
                                    "path": "token",
                                }
                            }
                        ]
                    },
                },
            ],
        },
    }


def _metadata(release: Release, name: str, wave: str | None = "2") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(release)}
    if wave is not None:
        # After the platform services (waves 0-1): a runner needs the registry to fetch its model.
        meta["annotations"] = {"argocd.argoproj.io/sync-wave": wave}
    return meta


def _service(release: Release, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(release, name, wave=None),
        "spec": {
            "selector": {"app.kubernetes.io/instance": f"model-{release.model_name}"},
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def _promql(release: Release, metric: str, track: str) -> str:
    """The PromQL of one canary metric for one track (its pods' rollouts-pod-template-hash)."""
    sel = (
        f'namespace="{NAMESPACE}",app_kubernetes_io_instance="model-{release.model_name}",'
        f'grpc_service="inference.GRPCInferenceService",grpc_method="ModelInfer",'
        f'rollouts_pod_template_hash="{{{{args.{track}-hash}}}}"'
    )
    if metric == "error_rate":
        return (
            f'sum(rate(grpc_server_handled_total{{{sel},grpc_code!="OK"}}[2m])) '
            f"/ clamp_min(sum(rate(grpc_server_handled_total{{{sel}}}[2m])), 1e-9)"
        )
    quantile = "0.99" if metric == "latency_p99_seconds" else "0.95"
    return f"histogram_quantile({quantile}, sum by (le) (rate(grpc_server_handling_seconds_bucket{{{sel}}}[2m])))"


def _analysis_metric(release: Release, criterion: CanaryCriterion) -> dict[str, Any]:
    canary = _promql(release, criterion.metric, "canary")
    if criterion.max_value is not None:
        query, condition = canary, f"result[0] <= {criterion.max_value!r}"
    else:
        # Relative to stable; a floor keeps an idle, error-free stable from dividing by zero.
        floor = "0.001" if criterion.metric == "error_rate" else "0.0001"
        assert criterion.max_relative_increase is not None  # a criterion has one of the two bounds
        query = f"({canary}) / clamp_min(({_promql(release, criterion.metric, 'stable')}), {floor})"
        condition = f"result[0] <= {1.0 + criterion.max_relative_increase!r}"
    return {
        "name": criterion.metric.replace("_", "-"),
        "interval": "1m",
        "failureLimit": 1,
        "successCondition": condition,
        "provider": {"prometheus": {"address": release.prometheus_url, "query": query}},
    }


def _workload(release: Release) -> dict[str, Any]:
    name = f"model-{release.model_name}"
    selector = {"matchLabels": {"app.kubernetes.io/instance": name}}
    if release.strategy.kind != "canary":
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(release, name),
            "spec": {"revisionHistoryLimit": 5, "selector": selector, "template": _pod_template(release)},
        }
    steps: list[dict[str, Any]] = []
    for step in release.strategy.steps:
        steps.append({"setWeight": step.traffic_percent})
        if step.traffic_percent < 100 and step.pause_seconds > 0:
            steps.append({"pause": {"duration": f"{int(step.pause_seconds)}s"}})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": _metadata(release, name),
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": selector,
            "template": _pod_template(release),
            "strategy": {
                "canary": {
                    "canaryService": f"{name}-canary",
                    "stableService": name,
                    # Background analysis from the first pause on: any failed metric aborts, and
                    # Argo Rollouts returns all traffic to the stable pods by itself.
                    "analysis": {
                        "templates": [{"templateName": f"{name}-canary"}],
                        "startingStep": 1,
                        "args": [
                            {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                            {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
                        ],
                    },
                    "steps": steps,
                }
            },
        },
    }


def render(release: Release) -> dict[str, bytes]:
    """File name -> content for one model directory."""
    name = f"model-{release.model_name}"
    sizing = SIZING[release.environment]
    canary = release.strategy.kind == "canary"
    workload = _workload(release)
    resources = ["workload.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"] + (["analysis.yaml"] if canary else [])
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": resources,
        "configMapGenerator": [{"name": f"{name}-release", "envs": ["release.env"]}],
        # Old pins stay until Argo CD's next sync; pods of the previous revision may still read them.
        "generatorOptions": {"annotations": {"argocd.argoproj.io/sync-options": "Prune=false"}},
    }
    components = model_components(release.cloud, release.environment)
    if components:
        kustomization["components"] = components
    if canary:
        kustomization["configurations"] = ["kustomizeconfig.yaml"]
    files = {
        "release.env": release_env(release),
        "kustomization.yaml": _yaml(kustomization),
        "workload.yaml": _yaml(workload),
        "service.yaml": _yaml(_service(release, name), *([_service(release, f"{name}-canary")] if canary else [])),
        "hpa.yaml": _yaml(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": _metadata(release, name),
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": workload["apiVersion"],
                        "kind": workload["kind"],
                        "name": name,
                    },
                    "minReplicas": sizing.min_replicas,
                    "maxReplicas": sizing.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                        }
                    ],
                },
            }
        ),
        "pdb.yaml": _yaml(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": _metadata(release, name, wave=None),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/instance": name}}},
            }
        ),
    }
    if canary:
        files["analysis.yaml"] = _yaml(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AnalysisTemplate",
                "metadata": _metadata(release, f"{name}-canary"),
                "spec": {
                    "args": [{"name": "canary-hash"}, {"name": "stable-hash"}],
                    "metrics": [_analysis_metric(release, c) for c in release.strategy.criteria],
                },
            }
        )
        # kustomize does not know Rollouts: teach it where they reference the generated ConfigMap.
        files["kustomizeconfig.yaml"] = _yaml(
            {
                "nameReference": [
                    {
                        "kind": "ConfigMap",
                        "version": "v1",
                        "fieldSpecs": [
                            {"path": "spec/template/spec/containers/envFrom/configMapRef/name", "kind": "Rollout"}
                        ],
                    }
                ]
            }
        )
    return files


def model_components(cloud: str, environment: str) -> list[str]:
    """The gitops/components a model directory (gitops/models/<cloud>/<env>/<model>) includes:
    the cloud's GPU placement and one GPU per pod; in prod also the zone spread. None locally."""
    if cloud not in ("aws", "gcp"):
        return []
    up = "../../../../components"
    return [f"{up}/{cloud}/gpu-placement", f"{up}/gpu"] + ([f"{up}/prod/zone-spread"] if environment == "prod" else [])
