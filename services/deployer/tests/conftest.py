"""Shared fixtures: one real registry subprocess per test module, a fresh deployer per test."""

from __future__ import annotations

import pytest

from libs.auth.dev_idp import DevIdentityProvider
from services.deployer.tests.harness import deployer_harness
from services.deployer.tests.registry_fixture import running_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    idp = DevIdentityProvider(tmp / "idp")
    with running_registry(tmp, idp) as reg:
        yield reg


@pytest.fixture
def deployer(tmp_path, registry):
    with deployer_harness(tmp_path, registry) as dep:
        yield dep
