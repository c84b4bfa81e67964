"""What the overlays must say beyond schemas: layout, secrets, identities, GPUs, prod traits, Kueue."""

from __future__ import annotations

import pytest
import yaml

from gitops.tests.tree import CLOUDS, ENVIRONMENTS, ROOT, SERVICES, all_env_objects, env_objects, find

DEPRECATED_FIELDS = ("patchesStrategicMerge", "patchesJson6902", "bases", "commonLabels", "vars")
ENV_PAIRS = [(c, e) for c in CLOUDS for e in ENVIRONMENTS]


def _wave(obj) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_layout_matches_the_architecture() -> None:
    for service in SERVICES:
        assert (ROOT / "apps" / service / "base" / "kustomization.yaml").is_file()
    for component in ("aws", "gcp", "gpu", "prod"):
        text = (ROOT / "components" / component / "kustomization.yaml").read_text()
        assert "kind: Component" in text
    for cloud, env in ENV_PAIRS:
        assert (ROOT / "envs" / cloud / env / "kustomization.yaml").is_file()
        # Models are their own Applications, never part of an environment's render.
        assert "models" not in (ROOT / "envs" / cloud / env / "kustomization.yaml").read_text()
    assert (ROOT / "models" / "README.md").is_file()
    for cloud in ("aws", "gcp"):  # what model directories include for GPU placement
        assert (ROOT / "components" / cloud / "gpu-placement" / "kustomization.yaml").is_file()
    assert (ROOT / "components" / "prod" / "zone-spread" / "kustomization.yaml").is_file()
    assert (ROOT / "argocd" / "projects").is_dir() and (ROOT / "argocd" / "applicationsets").is_dir()
    assert (ROOT / "platform" / "kueue" / "kustomization.yaml").is_file()


def test_kustomizations_use_patches_not_deprecated_fields() -> None:
    offenders = []
    for path in ROOT.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text()) or {}
        offenders += [f"{path.relative_to(ROOT)}: {f}" for f in DEPRECATED_FIELDS if f in doc]
    assert not offenders, offenders


def test_no_secret_objects_only_external_secret_references() -> None:
    for where, obj in all_env_objects():
        assert obj["kind"] != "Secret", f"{where}: a Secret in git: {obj['metadata']['name']}"
    for cloud, env in ENV_PAIRS:
        objects = env_objects(cloud, env)
        stores = {o["metadata"]["name"] for o in find(objects, "ClusterSecretStore")}
        for es in find(objects, "ExternalSecret"):
            assert es["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "causeway"}
            assert "causeway" in stores
            assert all("remoteRef" in item and "value" not in item for item in es["spec"]["data"])


@pytest.mark.parametrize(("cloud", "env"), ENV_PAIRS)
def test_each_service_has_its_own_service_account_with_cloud_identity(cloud: str, env: str) -> None:
    objects = env_objects(cloud, env)
    accounts = {sa["metadata"]["name"]: sa for sa in find(objects, "ServiceAccount")}
    used = []
    for service in SERVICES:
        (deployment,) = find(objects, "Deployment", service)
        sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert sa_name == service and sa_name in accounts
        used.append(sa_name)
        annotations = accounts[sa_name]["metadata"].get("annotations", {})
        if cloud == "aws":
            assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
            assert "ACCOUNT" not in annotations["eks.amazonaws.com/role-arn"]
            assert "iam.gke.io/gcp-service-account" not in annotations
        else:
            assert (
                annotations["iam.gke.io/gcp-service-account"]
                == f"causeway-{service}@causeway-{env}.iam.gserviceaccount.com"
            )
            assert "eks.amazonaws.com/role-arn" not in annotations
    assert len(set(used)) == len(SERVICES)


@pytest.mark.parametrize(("cloud", "env"), ENV_PAIRS)
def test_cloud_storage_and_ingress_class(cloud: str, env: str) -> None:
    objects = env_objects(cloud, env)
    (registry,) = find(objects, "Deployment", "registry")
    env_vars = {e["name"]: e.get("value") for e in registry["spec"]["template"]["spec"]["containers"][0]["env"]}
    scheme = "s3" if cloud == "aws" else "gs"
    assert env_vars["CAUSEWAY_REGISTRY_ARTIFACT_STORE"] == f"{scheme}://causeway-{env}-artifacts/artifacts"
    (ingress,) = find(objects, "Ingress", "causeway-api")
    assert ingress["spec"]["ingressClassName"] == ("alb" if cloud == "aws" else "gce-internal")


@pytest.mark.parametrize(("cloud", "env"), ENV_PAIRS)
def test_only_gpu_runners_go_to_gpu_nodes(cloud: str, env: str) -> None:
    for obj in env_objects(cloud, env):
        if obj["kind"] not in ("Deployment", "Rollout"):
            continue
        spec = obj["spec"]["template"]["spec"]
        tolerates_gpu = any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))
        is_runner = obj["metadata"]["labels"].get("app.kubernetes.io/name") == "gpu-runner"
        assert tolerates_gpu == is_runner, obj["metadata"]["name"]
        if is_runner:
            assert spec["nodeSelector"] == (
                {"eks.amazonaws.com/nodegroup": "gpu"}
                if cloud == "aws"
                else {"cloud.google.com/gke-accelerator": "nvidia-l4"}
            )
            assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize(("cloud", "env"), ENV_PAIRS)
def test_prod_traits_only_in_prod(cloud: str, env: str) -> None:
    objects = env_objects(cloud, env)
    pdbs = {p["metadata"]["name"]: p for p in find(objects, "PodDisruptionBudget")}
    for service in SERVICES:
        (deployment,) = find(objects, "Deployment", service)
        if env == "prod":
            assert deployment["spec"]["replicas"] >= 2
            selector = pdbs[service]["spec"]["selector"]["matchLabels"]
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), f"PDB {service} does not select its pods"
            assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        else:
            assert deployment["spec"]["replicas"] == 1
            assert service not in pdbs


@pytest.mark.parametrize(("cloud", "env"), ENV_PAIRS)
def test_sync_waves_order_dependencies(cloud: str, env: str) -> None:
    objects = env_objects(cloud, env)
    waves = {(o["kind"], o["metadata"]["name"]): _wave(o) for o in objects}
    assert max(w for (k, _), w in waves.items() if k == "Namespace") < waves[("ClusterSecretStore", "causeway")]
    assert waves[("ResourceFlavor", "gpu")] < min(w for (k, _), w in waves.items() if k == "ClusterQueue")
    assert max(w for (k, _), w in waves.items() if k == "ClusterQueue") < min(
        w for (k, _), w in waves.items() if k == "LocalQueue"
    )
    assert max(w for (k, _), w in waves.items() if k == "ExternalSecret") < waves[("Deployment", "registry")]
    for service in ("validator", "deployer", "gpu-runner"):
        assert waves[("Deployment", "registry")] < waves[("Deployment", service)]


@pytest.mark.parametrize(("cloud", "env"), ENV_PAIRS)
def test_kueue_has_a_queue_per_team(cloud: str, env: str) -> None:
    objects = env_objects(cloud, env)
    teams = {
        ns["metadata"]["labels"]["causeway.io/team"]: ns["metadata"]["name"]
        for ns in find(objects, "Namespace")
        if "causeway.io/team" in ns["metadata"].get("labels", {})
    }
    assert len(teams) >= 2
    queues = {q["metadata"]["name"]: q for q in find(objects, "ClusterQueue")}
    flavors = {f["metadata"]["name"]: f for f in find(objects, "ResourceFlavor")}
    local = {(q["metadata"]["namespace"], q["spec"]["clusterQueue"]) for q in find(objects, "LocalQueue")}
    for team, namespace in teams.items():
        queue = queues[f"team-{team}"]
        assert queue["spec"]["namespaceSelector"]["matchLabels"] == {"causeway.io/team": team}
        assert queue["spec"]["cohort"] == "causeway-gpu"
        for group in queue["spec"]["resourceGroups"]:
            assert "nvidia.com/gpu" in group["coveredResources"]
            assert all(f["name"] in flavors for f in group["flavors"])
        assert (namespace, f"team-{team}") in local
    gpu_labels = flavors["gpu"]["spec"]["nodeLabels"]
    assert gpu_labels == (
        {"eks.amazonaws.com/nodegroup": "gpu"} if cloud == "aws" else {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    )


@pytest.mark.parametrize(("cloud", "env"), ENV_PAIRS)
def test_every_environment_pins_every_platform_image(cloud: str, env: str) -> None:
    images = yaml.safe_load((ROOT / "envs" / cloud / env / "images" / "kustomization.yaml").read_text())["images"]
    pinned = {i["name"].rsplit("/", 1)[-1]: i["digest"] for i in images}
    assert set(pinned) == set(SERVICES)
    for service in SERVICES:
        (deployment,) = find(env_objects(cloud, env), "Deployment", service)
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + pinned[service])
