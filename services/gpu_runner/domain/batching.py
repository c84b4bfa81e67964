"""Dynamic batching: requests for one model are merged into one forward pass and split back.

One `Batcher` per loaded model owns one worker thread. A batch closes when it holds
`max_batch_size` rows, when its row count is one of the preferred sizes, or when its oldest request
has waited `max_queue_delay`; a request to a model that has been idle for the delay runs at once.
Only requests whose tensors agree on everything but the batch dimension (dtype and trailing shape)
are merged. If a merged forward pass fails, every request of the batch is re-run alone, so one
request's bad input never fails its batch-mates; only the request that fails on its own gets the
error.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from libs.errors.domain_errors import DomainError, InvalidArgument, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
RunFn = Callable[[Arrays], Arrays]


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """Per-model batching; `max_batch_size` 1 disables merging."""

    max_batch_size: int = 32
    max_queue_delay_s: float = 0.002
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queued_requests: int = 1024

    def validate(self) -> BatchingConfig:
        if self.max_batch_size < 1:
            raise InvalidArgument(f"batching.max_batch_size must be >= 1, got {self.max_batch_size}")
        if not 0 <= self.max_queue_delay_s <= 10:
            raise InvalidArgument(f"batching.max_queue_delay must be within 0..10 s, got {self.max_queue_delay_s} s")
        bad = [p for p in self.preferred_batch_sizes if not 1 <= p <= self.max_batch_size]
        if bad:
            raise InvalidArgument(
                f"batching.preferred_batch_sizes {bad} must lie within 1..max_batch_size ({self.max_batch_size})"
            )
        if self.max_queued_requests < 1:
            raise InvalidArgument("max_queued_requests must be >= 1")
        return self


@dataclasses.dataclass
class _Pending:
    inputs: Arrays
    rows: int
    key: tuple
    arrival: float
    future: Future


@dataclasses.dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    rows: int = 0
    isolated_reruns: int = 0


class Batcher:
    """Queues requests for one model and runs them in merged batches on its own thread."""

    def __init__(
        self,
        name: str,
        run: RunFn,
        config: BatchingConfig,
        *,
        batchable: bool = True,
        on_batch: Callable[[int, int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config.validate()
        self.batchable = batchable
        self.stats = BatchStats()
        self._run = run
        self._on_batch = on_batch  # (requests, rows, seconds the oldest waited) for metrics
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._running = 0  # requests taken off the queue and not yet answered
        self._idle_since = self._clock()  # when the last batch finished (with nothing queued)
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    # ---- callers -------------------------------------------------------------------------------
    def submit(self, inputs: Arrays, rows: int) -> Future:
        """Queue one request (already checked against the signature); its future gets its outputs.

        A request that finds the model idle, and idle for at least `max_queue_delay` (or the delay
        is 0), runs at once on the caller's thread: with nobody arriving for that long there is
        nobody to wait for, and handing it to the worker thread is most of the cost of a small
        model at low load. Otherwise (traffic is flowing, or the model is busy) it queues and the
        worker batches it with what arrives within the delay.
        """
        future: Future = Future()
        key = tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items()))
        pending = _Pending(inputs, rows, key, self._clock(), future)
        with self._cond:
            if self._stopping:
                raise Unavailable(f"model {self.name} is unloading; retry against another replica or version")
            delay = self.config.max_queue_delay_s
            inline = (
                not self._queue and not self._running and (delay == 0 or pending.arrival - self._idle_since >= delay)
            )
            if inline:
                self._running = 1
            else:
                if len(self._queue) >= self.config.max_queued_requests:
                    raise ResourceExhausted(
                        f"model {self.name}: {len(self._queue)} requests are queued (the limit); retry with backoff"
                    )
                self._queue.append(pending)
                self._cond.notify_all()
        if inline:
            self._run_batch([pending])
        return future

    def infer(self, inputs: Arrays, rows: int, timeout: float | None = None) -> Arrays:
        return self.submit(inputs, rows).result(timeout)

    @property
    def busy(self) -> int:
        """Requests queued or running now (0 means idle)."""
        with self._cond:
            return len(self._queue) + self._running

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new requests, let queued ones finish (up to `timeout`), then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            leftovers = list(self._queue)
            self._queue.clear()
        for pending in leftovers:
            pending.future.set_exception(Unavailable(f"model {self.name} was unloaded before the request ran"))

    # ---- worker ----------------------------------------------------------------------------------
    def _ready(self, rows: int) -> bool:
        cfg = self.config
        return rows >= cfg.max_batch_size or rows in cfg.preferred_batch_sizes

    def _compatible_rows(self) -> int:
        head = self._queue[0]
        if not self.batchable:
            return head.rows
        return sum(p.rows for p in self._queue if p.key == head.key)

    def _take(self) -> list[_Pending] | None:
        """Block until a batch closes; return it (None when stopping with an empty queue)."""
        with self._cond:
            while not self._queue or self._running:  # one forward pass at a time per model
                if self._stopping and not self._queue:
                    return None
                self._cond.wait()
            deadline = self._queue[0].arrival + self.config.max_queue_delay_s
            while not self._stopping and self.batchable and not self._ready(self._compatible_rows()):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            head = self._queue.popleft()
            batch, rows = [head], head.rows
            if self.batchable:
                keep: deque[_Pending] = deque()
                while self._queue:
                    nxt = self._queue.popleft()
                    if nxt.key == head.key and rows + nxt.rows <= self.config.max_batch_size:
                        batch.append(nxt)
                        rows += nxt.rows
                    else:
                        keep.append(nxt)
                self._queue = keep
            self._running = len(batch)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Pending]) -> None:
        """Run a batch (on the worker, or inline on a caller), then let the worker take the next."""
        waited = self._clock() - batch[0].arrival
        rows = sum(p.rows for p in batch)
        try:
            self._execute(batch)
        except BaseException as err:  # never leave requests unanswered
            log.exception("batcher %s failed", self.name)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(err)
        finally:
            with self._cond:
                self._running = 0
                if not self._queue:
                    self._idle_since = self._clock()
                self.stats.batches += 1
                self.stats.requests += len(batch)
                self.stats.rows += rows
                self._cond.notify_all()
        if self._on_batch is not None:
            self._on_batch(len(batch), rows, waited)

    def _execute(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            self._run_one(batch[0])
            return
        names = list(batch[0].inputs)
        merged = {n: np.concatenate([p.inputs[n] for p in batch], axis=0) for n in names}
        total = sum(p.rows for p in batch)
        try:
            outputs = self._run(merged)
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != total:
                    raise _NotSplittable(f"output {name} has shape {list(array.shape)} for a batch of {total} rows")
        except Exception as err:  # noqa: BLE001 - any failure of a merged pass triggers isolation
            # Someone in the batch (or the merge itself) broke the pass: run each request alone so
            # only the culprit sees an error.
            self.stats.isolated_reruns += 1
            log.warning(
                "batch of %d failed, re-running each request alone",
                len(batch),
                extra={"model": self.name, "error": str(err)},
            )
            for pending in batch:
                self._run_one(pending)
            return
        start = 0
        for pending in batch:
            stop = start + pending.rows
            pending.future.set_result({n: a[start:stop] for n, a in outputs.items()})
            start = stop

    def _run_one(self, pending: _Pending) -> None:
        try:
            pending.future.set_result(self._run(pending.inputs))
        except DomainError as err:
            pending.future.set_exception(err)
        except MemoryError as err:
            pending.future.set_exception(ResourceExhausted(f"model {self.name} ran out of memory: {_short(err)}"))
        except Exception as err:  # noqa: BLE001 - a model error is this request's error
            if type(err).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
                pending.future.set_exception(ResourceExhausted(f"model {self.name} ran out of device memory"))
                return
            # A model failing on one request's values (index out of range, NaN check, ...) is that
            # request's problem: report it as such, without internals beyond the model's message.
            pending.future.set_exception(InvalidArgument(f"model {self.name} failed on this request: {_short(err)}"))


class _NotSplittable(Exception):
    pass


def _short(err: BaseException, limit: int = 300) -> str:
    """One line about `err`: TorchScript puts the real cause on the last line of a long trace."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__
    if ":" not in text.split(" ", 1)[0]:
        text = f"{type(err).__name__}: {text}"
    return text[:limit]
