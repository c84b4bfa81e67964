"""Wiring: config -> registry client -> domain -> servicers. Used by main.py, the tests and the benchmark."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import threading

import grpc

from libs.audit.local_outbox import LocalOutbox
from libs.audit.publisher import AuditPublisher, outbox_event_request
from libs.auth.client_tokens import FileTokenSource
from libs.auth.interceptor import AuthInterceptor
from libs.auth.rbac import Authorizer
from libs.auth.settings import token_verifier
from libs.grpc_server.server import ServiceBinding
from services.gpu_runner.api import oip_servicer, runner_servicer
from services.gpu_runner.api.permissions import METHOD_PERMISSIONS, PUBLIC_METHODS
from services.gpu_runner.api.runner_models import RunnerInfo
from services.gpu_runner.api.token_cache import CachingTokenVerifier
from services.gpu_runner.clients.registry_client import RegistryClient
from services.gpu_runner.config import Config
from services.gpu_runner.domain.artifact_cache import ArtifactCache
from services.gpu_runner.domain.audit_trail import AuditTrail
from services.gpu_runner.domain.batch_jobs import BatchJobs
from services.gpu_runner.domain.batching import BatchingConfig
from services.gpu_runner.domain.datasets import Storage
from services.gpu_runner.domain.devices import Device, select_device
from services.gpu_runner.domain.job_runner import JobRunner
from services.gpu_runner.domain.jobs import JobScheduler, JobState
from services.gpu_runner.domain.memory import MemoryBudget
from services.gpu_runner.domain.metrics import RunnerMetrics
from services.gpu_runner.domain.models import ModelManager
from services.gpu_runner.domain.readiness import Readiness
from services.gpu_runner.domain.source import ModelSource
from services.gpu_runner.loaders import LoaderSet

log = logging.getLogger(__name__)
VERSION = "0.1.0"


@dataclasses.dataclass
class RunnerApp:
    config: Config
    models: ModelManager
    scheduler: JobScheduler
    jobs: BatchJobs
    readiness: Readiness
    metrics: RunnerMetrics
    bindings: list[ServiceBinding]
    interceptors: list[grpc.ServerInterceptor]
    audit_outbox: LocalOutbox
    audit_publisher: AuditPublisher | None = None
    channel: grpc.Channel | None = None
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def start_background(self) -> None:
        """Preload the configured models (readiness waits for them) and re-check gates periodically."""
        refs = self.config.runner.preload_refs()
        self.readiness.expect(f"{n}:{v}" for n, v in refs)
        for name, version in refs:
            threading.Thread(target=self._preload, args=(name, version), name=f"preload-{name}", daemon=True).start()
        if self.config.runner.gate_recheck_seconds > 0:
            threading.Thread(target=self._recheck_loop, name="gate-recheck", daemon=True).start()
        if self.audit_publisher is not None:
            self.audit_publisher.start()
        self.readiness.started()

    def _preload(self, name: str, version: int) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.models.load(name, version)
                self.readiness.done(f"{name}:{version}")
                return
            except Exception as err:  # noqa: BLE001 - keep trying: readiness stays false meanwhile
                log.warning("preload failed; retrying", extra={"model": f"{name}:{version}", "error": str(err)})
            self._stop.wait(delay)
            delay = min(delay * 2, 60.0)

    def _recheck_loop(self) -> None:
        while not self._stop.wait(self.config.runner.gate_recheck_seconds):
            self.models.recheck_gates()

    def close(self) -> None:
        self._stop.set()
        self.readiness.draining()
        self.scheduler.close()
        self.models.close()
        if self.audit_publisher is not None:
            self.audit_publisher.stop()  # one last attempt; unsent events stay in the outbox for the next start
        self.audit_outbox.close()
        if self.channel is not None:
            self.channel.close()


def _auth_interceptor(config: Config) -> AuthInterceptor:
    verifier = token_verifier(config.auth)
    cached = CachingTokenVerifier(verifier, ttl_seconds=config.runner.token_cache_seconds)
    return AuthInterceptor(cached, Authorizer(METHOD_PERMISSIONS), public_methods=PUBLIC_METHODS)


def _registry_source(config: Config) -> tuple[RegistryClient, grpc.Channel, FileTokenSource]:
    runner = config.runner
    assert config.auth.service_token_file is not None  # load_config requires it
    tokens = FileTokenSource(config.auth.service_token_file)
    channel = grpc.insecure_channel(
        runner.registry_address,
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    client = RegistryClient(channel, runner.environment.value, tokens.metadata, timeout=runner.registry_timeout_seconds)
    return client, channel, tokens


def build_app(config: Config, *, source: ModelSource | None = None, device: Device | None = None) -> RunnerApp:
    """The runner wired from `config`; tests may hand in another ModelSource (e.g. in memory)."""
    runner = config.runner
    if runner.torch_threads:
        import torch

        torch.set_num_threads(runner.torch_threads)
    channel = tokens = None
    if source is None:
        source, channel, tokens = _registry_source(config)
    # Audit events: a local outbox (survives restarts) drained into the registry's audit chain.
    outbox = LocalOutbox(runner.data_dir / "audit" / "outbox.sqlite")
    publisher = None
    if channel is not None and tokens is not None:
        publisher = AuditPublisher(outbox, channel, tokens.metadata, lambda e: outbox_event_request(e, "gpu-runner"))
    audit = AuditTrail(outbox.record if publisher is None else _record_and_poke(outbox, publisher))
    device = device or select_device(runner.device.value)
    budget_bytes = runner.memory_budget_bytes or int(device.total_memory_bytes * runner.memory_budget_fraction)
    metrics = RunnerMetrics()
    cache = ArtifactCache(runner.data_dir / "cache", max_bytes=runner.cache_max_bytes)
    cache.clear_staging()
    loaders = LoaderSet(threads=runner.torch_threads)
    models = ModelManager(
        source,
        loaders,
        cache,
        MemoryBudget(budget_bytes, device.label),
        device,
        default_batching=BatchingConfig(
            max_batch_size=runner.max_batch_size,
            max_queue_delay_s=runner.max_queue_delay_ms / 1000,
            max_queued_requests=runner.max_queued_requests,
        ),
        evict_idle=runner.evict_idle,
        metrics=metrics,
        audit=audit,
    )
    storage = Storage(runner.job_data_roots)
    scheduler = JobScheduler(
        runner.batch_slots,
        JobRunner(models, storage, metrics),
        default_slots=runner.team_max_slots,
        default_queued=runner.team_max_queued,
        audit=audit,
    )
    jobs = BatchJobs(scheduler, source, storage, loaders)
    for state in JobState:
        metrics.jobs.labels(state.value).set_function(functools.partial(scheduler.count, state))
    readiness = Readiness()
    info = RunnerInfo(runner.environment.value, VERSION, dt.datetime.now(dt.UTC), runner.unload_grace_seconds)
    bindings = [
        oip_servicer.binding(oip_servicer.InferenceServicer(models, readiness, VERSION)),
        runner_servicer.binding(runner_servicer.RunnerServicer(models, jobs, info)),
    ]
    return RunnerApp(
        config=config,
        models=models,
        scheduler=scheduler,
        jobs=jobs,
        readiness=readiness,
        metrics=metrics,
        bindings=bindings,
        interceptors=[_auth_interceptor(config)],
        audit_outbox=outbox,
        audit_publisher=publisher,
        channel=channel,
    )


def _record_and_poke(outbox: LocalOutbox, publisher: AuditPublisher):
    def record(event) -> None:
        outbox.record(event)
        publisher.poke()

    return record
