"""MLflow's Model Registry as the system of record for models, versions, tags and aliases.

A thin adapter over `MlflowClient` (sqlite by default, PostgreSQL through a DSN) that turns
MLflow's exceptions into domain errors. Nothing above this module imports mlflow.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from libs.errors.domain_errors import AlreadyExists, InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

_CREATE_RETRIES = 20


@contextmanager
def _mlflow_errors() -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        code = getattr(err, "error_code", "")
        message = str(err.message if hasattr(err, "message") else err)
        if code == "RESOURCE_ALREADY_EXISTS":
            raise AlreadyExists(message) from err
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(message) from err
        if code == "INVALID_PARAMETER_VALUE":
            raise InvalidArgument(message) from err
        raise Unavailable(f"model registry store error: {message}") from err


class MlflowRegistry:
    """MLflow entities in, MLflow entities out; errors as domain errors."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        with _mlflow_errors():
            # Opens the store (and creates or migrates its tables) now, not on the first request.
            self.client.search_registered_models(max_results=1)

    def create_model(self, name: str, description: str, tags: dict[str, str]):
        with _mlflow_errors():
            return self.client.create_registered_model(name, tags=tags, description=description)

    def get_model(self, name: str):
        with _mlflow_errors():
            return self.client.get_registered_model(name)

    def update_model_description(self, name: str, description: str):
        with _mlflow_errors():
            return self.client.update_registered_model(name, description=description)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        with _mlflow_errors():
            self.client.set_registered_model_tag(name, key, value)

    def delete_model_tag(self, name: str, key: str) -> None:
        with _mlflow_errors():
            self.client.delete_registered_model_tag(name, key)

    def search_models(
        self, filter_string: str, max_results: int, page_token: str | None, order: list[str] | None = None
    ):
        with _mlflow_errors():
            page = self.client.search_registered_models(
                filter_string=filter_string or None,
                max_results=max_results,
                order_by=order or ["name ASC"],
                page_token=page_token or None,
            )
        return list(page), page.token

    def create_version(self, name: str, source: str, tags: dict[str, str], description: str):
        """Create the next version. MLflow numbers versions max+1 in one transaction and retries
        a few times on a unique-key conflict; under heavy contention we retry further so that
        concurrent registrations still all succeed with distinct, gap-free numbers."""
        from mlflow.exceptions import MlflowException

        for attempt in range(_CREATE_RETRIES):
            try:
                with _mlflow_errors():
                    return self.client.create_model_version(name, source=source, tags=tags, description=description)
            except Unavailable as err:
                cause = err.__cause__
                transient = isinstance(cause, MlflowException) and (
                    "Model Version creation error" in str(cause) or "database is locked" in str(cause)
                )
                if not transient or attempt == _CREATE_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not crypto
        raise AssertionError("unreachable")

    def get_version(self, name: str, version: int):
        with _mlflow_errors():
            return self.client.get_model_version(name, str(version))

    def update_version_description(self, name: str, version: int, description: str):
        with _mlflow_errors():
            return self.client.update_model_version(name, str(version), description=description)

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        with _mlflow_errors():
            self.client.set_model_version_tag(name, str(version), key, value)

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        with _mlflow_errors():
            self.client.delete_model_version_tag(name, str(version), key)

    def search_versions(
        self, filter_string: str, max_results: int, page_token: str | None, order: list[str] | None = None
    ) -> tuple[list[Any], str]:
        order = order or ["name ASC", "version_number ASC"]
        with _mlflow_errors():
            page = self.client.search_model_versions(
                filter_string=filter_string or None,
                max_results=max_results,
                order_by=order,
                page_token=page_token or None,
            )
        return list(page), page.token

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with _mlflow_errors():
            self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with _mlflow_errors():
            self.client.delete_registered_model_alias(name, alias)

    def get_version_by_alias(self, name: str, alias: str):
        with _mlflow_errors():
            return self.client.get_model_version_by_alias(name, alias)


def quote(value: str) -> str:
    """A value inside an MLflow filter string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
