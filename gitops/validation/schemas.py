"""Schema validation of rendered objects: Kubernetes kinds and the CRDs in gitops/schemas.

Kubernetes' own kinds go through kubernetes-validate's strict schemas (unknown fields are errors).
Custom resources are checked against their CRD's openAPIV3Schema with every object closed, since
CRD schemas leave objects open and the API server would silently prune a misspelled field.
A kind with no schema at all is an error: nothing reaches a cluster unchecked.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The Kubernetes minor the clusters run (infra/ pins EKS and GKE to it).
KUBERNETES_VERSION = "1.32.0"


def _close(schema: Any) -> Any:
    """Copy of an OpenAPI v3 schema with additionalProperties: false on every object with properties."""
    if isinstance(schema, list):
        return [_close(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _close(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class CrdSchemas:
    """The openAPIV3Schema of each (apiVersion, kind) found in a directory of CRD files."""

    def __init__(self, directory: Path) -> None:
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
        for path in sorted(Path(directory).rglob("*.yaml")):
            # The C loader: the Argo CRDs are megabytes of YAML.
            for doc in yaml.load_all(path.read_text(), Loader=_LOADER):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    self._add(doc)

    def _add(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            # metadata is the API server's business (ObjectMeta is checked for every kind alike).
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            api_version = f"{spec['group']}/{version['name']}"
            self._validators[(api_version, spec["names"]["kind"])] = jsonschema.Draft7Validator(_close(schema))

    def kinds(self) -> set[tuple[str, str]]:
        return set(self._validators)

    def validator(self, api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
        return self._validators.get((api_version, kind))


def _location(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<root>"


@functools.cache
def _kubernetes_validator(version: str, api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    """kubernetes-validate's strict schema for a kind, built once: its validate() reloads and
    re-resolves the schema files on every call (~10 ms an object, minutes for a big tree)."""
    wanted = kv_utils.major_minor(version)
    schema_version = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= wanted][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"kubernetes-json-schema/v{schema_version}-local-strict"
    try:
        schema = kv_utils.schema_contents(f"{schema_dir}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        return None
    definitions = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


class ManifestValidator:
    """Validates rendered objects; `errors(obj)` lists what is wrong (empty when valid)."""

    def __init__(self, crd_dir: Path, kubernetes_version: str = KUBERNETES_VERSION) -> None:
        self.crds = CrdSchemas(crd_dir)
        self.kubernetes_version = kubernetes_version

    def errors(self, obj: dict[str, Any]) -> list[str]:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        name = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
        validator = self.crds.validator(api_version, kind)
        if validator is not None:
            return [f"{name}: {_location(e)}: {e.message}" for e in validator.iter_errors(obj)]
        k8s = _kubernetes_validator(self.kubernetes_version, api_version, kind)
        if k8s is None:
            return [f"{name}: no schema for {api_version} {kind} (add its CRD to gitops/schemas)"]
        return [f"{name}: {_location(e)}: {e.message}" for e in k8s.iter_errors(obj)]

    def all_errors(self, objects: Iterable[dict[str, Any]]) -> list[str]:
        return [message for obj in objects for message in self.errors(obj)]
