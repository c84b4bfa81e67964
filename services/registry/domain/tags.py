"""Reserved MLflow tags in which the registry keeps its own facts about models and versions.

User tags may not use the `causeway.` prefix (domain/naming.py), so these can only be written by
the registry itself. Searchable facts get their own tag (MLflow filters on tag equality).
"""

from __future__ import annotations

import json
from typing import Any

OWNER_TEAM = "causeway.owner_team"
CREATED_BY = "causeway.created_by"
CREATED_BY_SUBJECT = "causeway.created_by.subject"
ALIAS_PREFIX = "causeway.alias."
ARTIFACT = "causeway.artifact"
FORMAT = "causeway.format"
METADATA = "causeway.metadata"
STATE = "causeway.state"
ARCHIVAL = "causeway.archival"
REQUEST_ID = "causeway.request_id"
TRAINING_RUN = "causeway.lineage.training_run_id"
CODE_COMMIT = "causeway.lineage.code_commit"
PARENT = "causeway.lineage.parent"
DATASET_PREFIX = "causeway.dataset."

ARTIFACT_SOURCE_PREFIX = "causeway-artifact:sha256:"
MAX_METADATA_CHARS = 90_000  # MLflow keeps version tags up to 100,000 characters


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(("causeway.", "mlflow."))}
