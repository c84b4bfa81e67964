"""The models this runner holds: load (gates, digest, memory, warm-up), serve, unload, evict.

A load resolves the version, asks the registry for the gates of the runner's environment,
reserves the artifact's size in the memory budget (evicting idle models, least recently used
first, when it does not fit), downloads and verifies the bytes, loads them with the format's
loader, binds the signature, warms the model up at batch size 1 and at its max batch size, and
only then marks it READY with the memory it actually holds. A model is idle when no request is in
flight for it and no batch job holds it; only idle models are evicted.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.gpu_runner.domain.artifact_cache import ArtifactCache
from services.gpu_runner.domain.audit_trail import AuditTrail, model_subject
from services.gpu_runner.domain.batching import Batcher, BatchingConfig
from services.gpu_runner.domain.devices import Device
from services.gpu_runner.domain.memory import MemoryBudget, MemoryExhausted, human
from services.gpu_runner.domain.metrics import RunnerMetrics
from services.gpu_runner.domain.model_entries import Entry, ModelState, ModelView
from services.gpu_runner.domain.source import GatesBlocked, ModelSource, ResolvedVersion
from services.gpu_runner.domain.tensors import Signature, check_against, zeros
from services.gpu_runner.loaders import Backend, LoaderSet

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(
        self,
        source: ModelSource,
        loaders: LoaderSet,
        cache: ArtifactCache,
        budget: MemoryBudget,
        device: Device,
        *,
        default_batching: BatchingConfig | None = None,
        evict_idle: bool = True,
        metrics: RunnerMetrics | None = None,
        audit: AuditTrail | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.audit = audit or AuditTrail()
        self.loaders = loaders
        self.cache = cache
        self.budget = budget
        self.device = device
        self.default_batching = (default_batching or BatchingConfig()).validate()
        self.evict_idle = evict_idle
        self.metrics = metrics or RunnerMetrics()
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self.metrics.budget.labels(device.label).set(budget.budget_bytes)

    # ---- load / unload ---------------------------------------------------------------------------
    def load(self, name: str, version: int, batching: BatchingConfig | None = None) -> ModelView:
        """Load a version and return it READY; loading a READY version returns it unchanged."""
        if not name:
            raise InvalidArgument("model.name is required")
        if version < 1:
            raise InvalidArgument(f"model.version must be >= 1, got {version}")
        config = (batching or self.default_batching).validate()
        key = f"{name}:{version}"
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.state is ModelState.UNLOADING:
                raise FailedPrecondition(f"{key} is being unloaded; load it again once that finished")
            if entry is not None and entry.state is ModelState.FAILED:
                self._entries.pop(key)
                entry = None
            owner = entry is None
            if entry is None:
                entry = Entry(name, version, config, self.device, last_used=self._clock())
                self._entries[key] = entry
        if not owner:  # someone else is loading it (or did): share the outcome
            entry.done.wait()
            if entry.error is not None:
                raise entry.error
            return entry.view()
        try:
            self._load(entry)
            self.metrics.loads.labels("ready").inc()
            return entry.view()
        except BaseException as err:
            self.metrics.loads.labels(type(err).__name__).inc()
            entry.error = err
            self._abandon(entry, err)
            raise
        finally:
            entry.done.set()

    def _load(self, entry: Entry) -> None:
        subject = model_subject(entry.name, entry.version)
        resolved = self.source.resolve(entry.name, entry.version)
        entry.resolved = resolved
        try:
            self.source.check_gates(resolved)
        except GatesBlocked as blocked:
            self.audit.record(
                "model.load",
                subject,
                "model load refused: gates",
                outcome="FAILURE",
                environment=blocked.environment,
                reason=blocked.message,
                digest=resolved.digest,
            )
            raise
        try:
            self._load_verified(entry, resolved)
        except Exception as err:
            # A digest mismatch, an artifact the loaders refuse (e.g. a pickle), a broken model.
            self.audit.record(
                "model.load",
                subject,
                "model load failed",
                outcome="FAILURE",
                reason=str(err)[:500],
                digest=resolved.digest,
            )
            raise
        self.cache.prune(keep=self._cached_digests())
        self.audit.record(
            "model.load",
            subject,
            "model loaded",
            digest=resolved.digest,
            format=resolved.format,
            memory_bytes=entry.memory_bytes,
            device=self.device.label,
        )

    def _cached_digests(self) -> set[str]:
        """Artifact digests of versions loaded or loading: their cached bytes stay."""
        with self._lock:
            return {e.resolved.digest for e in self._entries.values() if e.resolved is not None}

    def _load_verified(self, entry: Entry, resolved: ResolvedVersion) -> None:
        loader = self.loaders.loader_for(resolved.format)
        self._reserve(entry, resolved.size_bytes)  # the artifact's size: a first estimate of its weights
        with self.cache.materialize(resolved, lambda: self.source.artifact_chunks(resolved.digest)) as path:
            backend = loader.load(path, resolved, self.device)
        entry.backend = backend
        signature = resolved.signature or backend.declared_signature
        if signature is None or not signature.inputs or not signature.outputs:
            raise FailedPrecondition(
                f"{entry.key} has no signature (inputs and outputs): register the version with one"
            )
        backend.bind(signature)
        workspace = self._warm_up(entry, backend, signature)
        self._reserve(entry, backend.weight_bytes + workspace)
        entry.batcher = Batcher(
            entry.key,
            backend.predict,
            entry.batching,
            batchable=signature.batchable,
            on_batch=self.metrics.on_batch(entry.key),
        )
        with self._lock:
            entry.memory_bytes = self.budget.held(entry.key)
            entry.load_time = dt.datetime.now(dt.UTC)
            entry.state = ModelState.READY
            entry.last_used = self._clock()
        self.metrics.model_memory.labels(entry.key).set(entry.memory_bytes)
        self._update_usage()

    def _warm_up(self, entry: Entry, backend: Backend, signature: Signature) -> int:
        """Run zeros through the model at batch 1 and max batch; returns the workspace estimate."""
        sizes = [1]
        if signature.batchable and entry.batching.max_batch_size > 1:
            sizes.append(entry.batching.max_batch_size)
        workspace = 0
        for rows in sizes:
            inputs = {s.name: zeros(s, rows) for s in signature.inputs}
            try:
                outputs = backend.predict(inputs)
            except Exception as err:  # noqa: BLE001 - noqa: BLE001 - whatever breaks warm-up makes the load fail
                raise FailedPrecondition(
                    f"{entry.key} failed its warm-up at batch size {rows}: {str(err).splitlines()[-1][:300]}"
                ) from None
            # Inputs and outputs of the largest batch stay allocated while it runs.
            workspace = max(workspace, sum(a.nbytes for a in (*inputs.values(), *outputs.values())))
        return workspace

    def _abandon(self, entry: Entry, err: BaseException) -> None:
        """After a failed load: refusals leave nothing behind; a broken artifact stays FAILED."""
        self.budget.release(entry.key)
        if entry.backend is not None:
            entry.backend.close()
            entry.backend = None
        with self._lock:
            keep_failed = entry.resolved is not None and not isinstance(
                err, (GatesBlocked, MemoryExhausted, NotFound, InvalidArgument)
            )
            if keep_failed:
                entry.state = ModelState.FAILED
                entry.message = getattr(err, "message", "") or f"internal error: {type(err).__name__}"
            elif self._entries.get(entry.key) is entry:
                self._entries.pop(entry.key)
        self._update_usage()

    def unload(self, name: str, version: int, *, grace_seconds: float = 30.0) -> ModelView:
        """Drain in-flight requests (up to `grace_seconds`), stop the batcher and free the memory."""
        key = f"{name}:{version}"
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise NotFound(f"model {key} is not loaded")
            if entry.pins:
                raise FailedPrecondition(f"{entry.pins} running batch job(s) use {key}; cancel them first")
            if entry.state is ModelState.LOADING:
                raise FailedPrecondition(f"{key} is still loading; unload it once LoadModel returned")
            if entry.state is ModelState.UNLOADING:
                raise FailedPrecondition(f"{key} is already being unloaded")
            last = entry.view()
            if entry.state is ModelState.FAILED:
                self._entries.pop(key)
                return last
            entry.state = ModelState.UNLOADING
        deadline = self._clock() + grace_seconds
        while entry.in_flight and self._clock() < deadline:
            time.sleep(0.005)
        self._release(entry)
        self.audit.record("model.unload", model_subject(entry.name, entry.version), "model unloaded")
        return last

    def _release(self, entry: Entry) -> None:
        if entry.batcher is not None:
            entry.batcher.stop()
        if entry.backend is not None:
            entry.backend.close()
        with self._lock:
            if self._entries.get(entry.key) is entry:
                self._entries.pop(entry.key)
        self.budget.release(entry.key)
        if entry.memory_bytes:
            self.metrics.model_memory.remove(entry.key)
        self._update_usage()

    # ---- memory ---------------------------------------------------------------------------------
    def _reserve(self, entry: Entry, nbytes: int) -> None:
        """Reserve `nbytes` for `entry`, evicting idle models (LRU) while it does not fit."""
        if nbytes > self.budget.budget_bytes:
            raise MemoryExhausted(
                f"{entry.key} needs {human(nbytes)} but the whole {self.device.label} budget is "
                f"{human(self.budget.budget_bytes)}",
                needed=nbytes,
                free=self.budget.free_bytes,
                budget=self.budget.budget_bytes,
            )
        while True:
            with self._lock:
                try:
                    self.budget.reserve(entry.key, nbytes)
                    return
                except MemoryExhausted as err:
                    victim = self._lru_idle(exclude=entry) if self.evict_idle else None
                    if victim is None:
                        busy = [e.key for e in self._entries.values() if e is not entry and e.state is ModelState.READY]
                        hint = f" (busy or held by batch jobs: {', '.join(sorted(busy))})" if busy else ""
                        raise MemoryExhausted(
                            err.message + hint, needed=err.needed, free=err.free, budget=err.budget
                        ) from None
                    victim.state = ModelState.UNLOADING
            log.info("evicting idle model", extra={"model": victim.key, "for": entry.key})
            self.audit.record(
                "model.evict",
                model_subject(victim.name, victim.version),
                "model evicted",
                reason=f"make room for {entry.key}",
            )
            self.metrics.evictions.inc()
            self._release(victim)

    def _lru_idle(self, exclude: Entry) -> Entry | None:
        idle = [
            e
            for e in self._entries.values()
            if e is not exclude and e.state is ModelState.READY and e.in_flight == 0 and e.pins == 0
        ]
        return min(idle, key=lambda e: e.last_used) if idle else None

    def _update_usage(self) -> None:
        self.metrics.used.labels(self.device.label).set(self.budget.used_bytes)

    # ---- serving --------------------------------------------------------------------------------
    def _find(self, name: str, version: str) -> Entry:
        """The entry a request names; empty version: the newest READY one. Caller holds the lock."""
        versions = {e.version: e for e in self._entries.values() if e.name == name}
        if not versions:
            raise NotFound(f"model {name!r} is not loaded on this runner")
        if not version:
            ready = [v for v, e in versions.items() if e.state is ModelState.READY]
            if not ready:
                raise Unavailable(f"model {name!r} has no READY version (versions held: {sorted(versions)})")
            return versions[max(ready)]
        try:
            number = int(version)
        except ValueError:
            raise InvalidArgument(f"model version must be a version number, got {version!r}") from None
        if number not in versions:
            raise NotFound(f"model {name!r} version {number} is not loaded (loaded versions: {sorted(versions)})")
        return versions[number]

    def view(self, name: str, version: str = "") -> ModelView:
        with self._lock:
            return self._find(name, version).view()

    def versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(e.version for e in self._entries.values() if e.name == name)

    def model_ready(self, name: str, version: str = "") -> bool:
        """READY or not; NotFound when the runner holds no such model (version) at all."""
        with self._lock:
            try:
                return self._find(name, version).state is ModelState.READY
            except Unavailable:  # known name, no READY version yet
                return False

    def is_ready(self, name: str, version: str = "") -> bool:
        with self._lock:
            try:
                return self._find(name, version).state is ModelState.READY
            except (NotFound, Unavailable, InvalidArgument):
                return False

    def infer(
        self,
        name: str,
        version: str,
        inputs: Mapping[str, np.ndarray],
        datatypes: Mapping[str, str],
        requested_outputs: Sequence[str] = (),
    ) -> tuple[ModelView, dict[str, np.ndarray]]:
        """Check the request (inputs and requested output names) against the signature, then run it
        through the model's batcher; nothing runs for a request that names an unknown output."""
        with self._lock:
            entry = self._find(name, version)
            if entry.state is not ModelState.READY:
                raise Unavailable(f"model {entry.key} is {entry.state.value}, not READY" + _why(entry))
            assert entry.backend is not None and entry.batcher is not None  # a READY entry has both
            entry.in_flight += 1
            entry.last_used = self._clock()
            batcher, signature = entry.batcher, entry.backend.signature
            assert signature is not None  # bound when the model was loaded
        try:
            rows = check_against(signature, inputs, datatypes)
            signature.select_outputs(requested_outputs)
            outputs = batcher.infer(dict(inputs), rows)
            return entry.view(), outputs
        finally:
            with self._lock:
                entry.in_flight -= 1

    # ---- batch jobs -----------------------------------------------------------------------------
    def acquire(self, name: str, version: int) -> ModelView:
        """Load (if needed) and pin a version for a batch job; pinned models are never evicted."""
        while True:
            self.load(name, version)
            with self._lock:
                entry = self._entries.get(f"{name}:{version}")
                if entry is not None and entry.state is ModelState.READY:
                    entry.pins += 1
                    return entry.view()

    def release(self, name: str, version: int) -> None:
        with self._lock:
            entry = self._entries.get(f"{name}:{version}")
            if entry is not None and entry.pins:
                entry.pins -= 1
                entry.last_used = self._clock()

    def predict_pinned(self, name: str, version: int, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one job batch directly on a pinned model (checked against its signature)."""
        with self._lock:
            entry = self._entries[f"{name}:{version}"]
            backend = entry.backend
        assert backend is not None and backend.signature is not None  # pinned models are READY
        datatypes = {s.name: s.datatype for s in backend.signature.inputs}
        check_against(backend.signature, inputs, datatypes)
        return backend.predict(inputs)

    # ---- status ---------------------------------------------------------------------------------
    def list(self) -> list[ModelView]:
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: (e.name, e.version))
            return [e.view() for e in entries]

    def recheck_gates(self) -> builtins.list[str]:
        """Unload READY models whose gates now fail (e.g. an approval was revoked); returns their keys."""
        with self._lock:
            held = [(e, e.resolved) for e in self._entries.values() if e.state is ModelState.READY and e.resolved]
        dropped = []
        for entry, resolved in held:
            try:
                self.source.check_gates(resolved)
            except GatesBlocked as blocked:
                self.audit.record(
                    "model.gates_revoked",
                    model_subject(entry.name, entry.version),
                    "model gates no longer pass; unloading",
                    outcome="FAILURE",
                    reason=blocked.message,
                )
                try:
                    self.unload(entry.name, entry.version)
                    dropped.append(entry.key)
                except (FailedPrecondition, NotFound) as err:
                    log.warning("cannot unload after gate change", extra={"model": entry.key, "error": str(err)})
            except Exception as err:  # noqa: BLE001 - the registry being down is not a reason to stop serving
                log.warning("gate re-check failed", extra={"model": entry.key, "error": str(err)})
        return dropped

    def close(self) -> None:
        for view in self.list():
            with self._lock:
                entry = self._entries.get(f"{view.name}:{view.version}")
            if entry is not None and entry.state is ModelState.READY:
                self._release(entry)


def _why(entry: Entry) -> str:
    return f": {entry.message}" if entry.message else ""
