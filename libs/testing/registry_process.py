"""The real registry binary as a subprocess on 127.0.0.1:<free port>, for other services' tests.

Add "//services/registry:registry" to the test's `data`; the binary is found in the runfiles at
services/registry/registry. Tokens come from a dev IdP whose JWKS the registry trusts:

    idp = DevIdentityProvider(tmp_path / "idp")
    with registry_process(tmp_path / "registry", idp) as registry:
        channel = grpc.insecure_channel(registry.address)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from libs.auth.dev_idp import DevIdentityProvider
from libs.testing.processes import ServerProcess

RUNFILES_PATH = "services/registry/registry"
READY_TIMEOUT = 120.0  # seconds for a cold start: imports, migrations, MLflow's first connect


def registry_binary() -> str:
    """Path of the registry py_binary in this test's runfiles (or $CAUSEWAY_REGISTRY_BINARY)."""
    explicit = os.environ.get("CAUSEWAY_REGISTRY_BINARY")
    if explicit:
        return explicit
    roots = [os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR")]
    workspace = os.environ.get("TEST_WORKSPACE", "causeway_monorepo")
    for root in filter(None, roots):
        candidate = os.path.join(root, workspace, RUNFILES_PATH)
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(
        f"registry binary not found in the runfiles ({RUNFILES_PATH}): add '//services/registry:registry' to the "
        "test's data, or set CAUSEWAY_REGISTRY_BINARY"
    )


@dataclasses.dataclass
class RegistryProcess:
    process: ServerProcess
    data_dir: Path
    env: dict[str, str]

    @property
    def address(self) -> str:
        return self.process.address


def registry_env(data_dir: Path, idp: DevIdentityProvider, **overrides: str) -> dict[str, str]:
    """The registry's environment: loopback, a free port, the IdP's JWKS; overrides without prefix."""
    env = dict(os.environ)
    env.update(
        {
            "CAUSEWAY_REGISTRY_DATA_DIR": str(data_dir),
            "CAUSEWAY_REGISTRY_AUTH_JWKS": str(idp.jwks_path),
            "CAUSEWAY_REGISTRY_AUTH_ISSUER": idp.issuer,
            "CAUSEWAY_REGISTRY_AUTH_AUDIENCE": idp.audience,
            "CAUSEWAY_REGISTRY_PORT": "0",
            "CAUSEWAY_REGISTRY_HOST": "127.0.0.1",
            "CAUSEWAY_REGISTRY_GRACE_SECONDS": "0",
            "CAUSEWAY_REGISTRY_MAX_MESSAGE_BYTES": str(8 * 1024 * 1024),
        }
    )
    env.update({f"CAUSEWAY_REGISTRY_{k}": v for k, v in overrides.items()})
    return env


@contextlib.contextmanager
def registry_process(
    data_dir: Path, idp: DevIdentityProvider, *, ready_timeout: float = READY_TIMEOUT, **overrides: str
) -> Iterator[RegistryProcess]:
    """A started registry; killed by PID when the block exits (or the test process dies)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    env = registry_env(data_dir, idp, **overrides)
    with ServerProcess([registry_binary()], env=env, ready_timeout=ready_timeout) as proc:
        yield RegistryProcess(process=proc, data_dir=data_dir, env=env)
