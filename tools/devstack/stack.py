"""The single-machine stack: every Causeway service as a local process, sharing one dev IdP.

Each service gets its own data directory under the stack directory (sqlite files, artifacts, the
local GitOps repository), binds 127.0.0.1 on a free port, and trusts the development identity
provider's JWKS. Services that call others get a token file for their own service identity.
`stack.json` records the addresses for the CLI (tools/cli). Processes are stopped, and killed
by PID if they do not stop, when the stack closes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from libs.auth.dev_idp import DevIdentityProvider
from libs.testing.processes import ServerProcess


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """How to start one service: its binary (runfiles-relative) and its environment."""

    name: str
    binary: str
    prefix: str
    env: Callable[[Stack], dict[str, str]] = lambda stack: {}
    identity: str = ""  # service subject for outgoing calls ("service:<name>"), if it calls others


class Stack:
    def __init__(self, state_dir: Path, binaries_root: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.binaries_root = binaries_root
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.idp = DevIdentityProvider(self.state_dir / "idp")
        self.processes: dict[str, ServerProcess] = {}

    def address(self, service: str) -> str:
        return self.processes[service].address

    def data_dir(self, service: str) -> Path:
        path = self.state_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    def token_file(self, service: str) -> Path:
        path = self.state_dir / "tokens" / service
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.idp.service_token(service))
        os.chmod(path, 0o600)
        return path

    def base_env(self, spec: ServiceSpec) -> dict[str, str]:
        p = spec.prefix
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.state_dir)),
            f"{p}HOST": "127.0.0.1",
            f"{p}PORT": "0",
            f"{p}DATA_DIR": str(self.data_dir(spec.name)),
            f"{p}AUTH_JWKS": str(self.idp.jwks_path),
            f"{p}AUTH_ISSUER": self.idp.issuer,
            f"{p}AUTH_AUDIENCE": self.idp.audience,
            f"{p}GRACE_SECONDS": "5",
        }
        if spec.identity:
            env[f"{p}AUTH_SERVICE_TOKEN_FILE"] = str(self.token_file(spec.identity))
        return env

    def start(self, spec: ServiceSpec, ready_timeout: float = 120.0) -> ServerProcess:
        binary = self.binaries_root / spec.binary
        if not binary.exists():
            raise FileNotFoundError(f"{binary} not found: build it first (bazel build //services/...)")
        env = self.base_env(spec) | spec.env(self)
        log_path = self.state_dir / "logs"
        log_path.mkdir(exist_ok=True)
        process = ServerProcess([str(binary)], env=env, cwd=str(self.data_dir(spec.name)), ready_timeout=ready_timeout)
        process.start()
        self.processes[spec.name] = process
        self.write_manifest()
        return process

    def write_manifest(self) -> None:
        manifest = {
            "services": {name: proc.address for name, proc in self.processes.items()},
            "pids": {name: proc.pid for name, proc in self.processes.items()},
            "idp_dir": str(self.idp.state_dir),
        }
        (self.state_dir / "stack.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.proc is not None and process.proc.poll() is None:
                process.signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except Exception:  # noqa: BLE001 - whatever happened, make sure it is gone
                    process.kill()
            (self.state_dir / "logs" / f"{name}.log").write_text(process.output())
        (self.state_dir / "stack.json").unlink(missing_ok=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
