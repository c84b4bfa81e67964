"""Wiring: config -> policies, store, registry client, sandbox -> domain -> servicer. Used by
main.py, the tests and the benchmark."""

from __future__ import annotations

import dataclasses
import logging
import platform
from importlib import metadata

import grpc

from causeway.validator.v1 import validator_service_pb2, validator_service_pb2_grpc
from libs.auth.client_tokens import FileTokenSource
from libs.auth.interceptor import AuthInterceptor
from libs.auth.rbac import Authorizer
from libs.auth.settings import token_verifier
from libs.grpc_server.server import ServiceBinding
from services.validator.api.permissions import METHOD_PERMISSIONS
from services.validator.api.servicer import ValidatorServicer
from services.validator.clients.registry_client import RegistryClient
from services.validator.config import Config
from services.validator.domain import context
from services.validator.domain.checks import default_checks
from services.validator.domain.engine import Engine, Notifier
from services.validator.domain.policies import DEFAULT_DIR, PolicySet, load_policies
from services.validator.domain.validation import ValidationService
from services.validator.storage.sql_store import SqlRunStore, create_engine
from services.validator.worker import runtime
from services.validator.worker.launcher import Sandbox, SandboxSettings
from services.validator.worker.pool import SandboxWorkers

log = logging.getLogger("causeway.validator")
VALIDATOR_VERSION = "causeway-validator/1"
LIBRARIES = ("torch", "onnxruntime", "safetensors", "numpy", "pyarrow", "picklescan", "modelscan", "pyseccomp")


@dataclasses.dataclass
class ValidatorApp:
    config: Config
    policies: PolicySet
    store: SqlRunStore
    workers: SandboxWorkers
    service: ValidationService
    channel: grpc.Channel
    bindings: list[ServiceBinding]
    interceptors: list[grpc.ServerInterceptor]

    def start(self) -> None:
        """Recover runs a crash left in flight, then start executing queued runs."""
        recovered = self.service.recover()
        removed = self.workers.prepare()
        try:
            self.workers.preflight()
        except Exception as err:  # noqa: BLE001 - reported now; every run that needs it will fail closed
            log.error("sandbox unavailable; runs will end in ERROR until this is fixed", extra={"reason": str(err)})
        self.service.start_workers()
        log.info("validator ready", extra={"recovered_runs": recovered, "stale_run_dirs": removed})

    def close(self) -> None:
        self.service.stop()
        self.channel.close()
        self.store.engine.dispose()


def sandbox_settings(config: Config) -> SandboxSettings:
    v = config.validator
    python = v.worker_python or runtime.default_python()
    return SandboxSettings(
        bwrap=v.sandbox_bwrap,
        setpriv=v.sandbox_setpriv,
        prlimit=v.sandbox_prlimit,
        uid=v.sandbox_uid,
        gid=v.sandbox_gid,
        python=python,
        runtime_paths=v.worker_runtime_paths or runtime.default_runtime_paths(python),
        python_paths=v.worker_python_paths,
        max_open_files=v.sandbox_max_open_files,
        max_processes=v.sandbox_max_processes,
        tmpfs_bytes=v.sandbox_tmpfs_bytes,
        threads=v.worker_threads,
    )


def runtime_info(sandbox: Sandbox) -> dict[str, str]:
    """What ran the checks, for every report; the worker adds its own library versions."""
    info = {
        "validator": VALIDATOR_VERSION,
        "python": platform.python_version(),
        "device": "cpu",
        "sandbox": sandbox.describe(),
        "seccomp": "kill: socket(!AF_UNIX), execve, ptrace; deny: new processes, namespaces, mounts",
        "threads": str(sandbox.settings.threads),
        "seed": str(context.SEED),
    }
    for name in LIBRARIES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "missing"
    return info


def _auth_interceptor(config: Config) -> AuthInterceptor:
    verifier = token_verifier(config.auth)
    return AuthInterceptor(verifier, Authorizer(METHOD_PERMISSIONS))


def build_app(config: Config) -> ValidatorApp:
    """Everything wired; PolicyError (a ConfigError naming file:line) for a bad policy file."""
    v = config.validator
    policies = load_policies(v.policies_dir or DEFAULT_DIR)
    v.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlRunStore(create_engine(v.store_url()))
    assert config.auth.service_token_file is not None  # load_config requires it
    tokens = FileTokenSource(config.auth.service_token_file)
    channel = grpc.insecure_channel(
        v.registry_address,
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    registry = RegistryClient(channel, tokens.metadata, timeout=v.registry_timeout_seconds)
    sandbox = Sandbox(sandbox_settings(config))
    workers = SandboxWorkers(sandbox, v.work_path())
    notifier = Notifier()
    engine = Engine(
        store=store,
        registry=registry,
        workers=workers,
        policies=policies,
        checks=default_checks(),
        notifier=notifier,
        runtime_info=runtime_info(sandbox),
    )
    service = ValidationService(
        store=store,
        registry=registry,
        policies=policies,
        engine=engine,
        notifier=notifier,
        max_queued=v.max_queued_runs,
        max_concurrent=v.max_concurrent_runs,
    )
    servicer = ValidatorServicer(service, policies, config.auth.issuer)
    full_name = validator_service_pb2.DESCRIPTOR.services_by_name["ValidatorService"].full_name
    bindings = [
        ServiceBinding(
            full_name,
            lambda server: validator_service_pb2_grpc.add_ValidatorServiceServicer_to_server(servicer, server),
        )
    ]
    return ValidatorApp(
        config=config,
        policies=policies,
        store=store,
        workers=workers,
        service=service,
        channel=channel,
        bindings=bindings,
        interceptors=[_auth_interceptor(config)],
    )
