"""Dynamic batching: merge up to a size or a delay, split back, isolate a failing request."""

import collections
import threading
import time

import numpy as np
import pytest

from libs.errors.domain_errors import InvalidArgument, ResourceExhausted, Unavailable
from libs.testing.waiting import wait_until
from services.gpu_runner.domain.batching import Batcher, BatchingConfig


class Recorder:
    """A model: y = 2x, recording the row count of every call; rows with x < 0 make it fail.

    `entered` is set once a call has begun; clear `gate` to hold calls there until it is set again.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, inputs):
        self.entered.set()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        x = inputs["x"]
        self.calls.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("negative values are not allowed")
        return {"y": x * 2}


class FakeClock:
    """A clock that moves only when the test moves it; counts its reads per thread."""

    def __init__(self) -> None:
        self.now = 100.0
        self._reads: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self._reads[threading.current_thread().name] += 1
        return self.now

    def reads_on(self, thread: str) -> int:
        with self._lock:
            return self._reads[thread]


def _x(value: float, rows: int = 1) -> dict:
    return {"x": np.full((rows, 3), value, np.float32)}


def _submit_many(batcher, values, rows=1):
    return [batcher.submit(_x(v, rows), rows) for v in values]


def test_requests_are_merged_up_to_max_batch_size_and_split_back():
    model = Recorder()
    model.gate.clear()  # hold the first call so the rest queue up
    # The clock stands still, so no request finds the model idle for the delay and runs inline.
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=4, max_queue_delay_s=0.5), clock=FakeClock())
    first = batcher.submit(_x(0, rows=4), 4)  # a full batch: dispatched at once, held by the gate
    assert model.entered.wait(30)
    futures = _submit_many(batcher, range(1, 9))
    assert batcher.busy == 9
    model.gate.set()
    assert first.result(5)["y"].tolist() == [[0, 0, 0]] * 4
    for value, future in zip(range(1, 9), futures, strict=True):
        assert future.result(5)["y"].tolist() == [[2 * value] * 3]
    assert model.calls[1:] == [4, 4]
    batcher.stop()


class ThreadRecorder(Recorder):
    """A Recorder that also notes which thread ran each call."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def __call__(self, inputs):
        self.threads.append(threading.current_thread().name)
        return super().__call__(inputs)


def test_a_request_right_after_a_batch_waits_for_mates_until_the_queue_delay():
    model, clock = ThreadRecorder(), FakeClock()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=64, max_queue_delay_s=0.05), clock=clock)
    clock.now += 1  # idle for longer than the delay: runs at once on the caller's thread
    batcher.infer(_x(1), 1, timeout=5)
    clock.now += 0.01  # 10 ms after that pass finished: traffic is flowing, so wait for mates
    first = batcher.submit(_x(2), 1)
    clock.now += 0.01
    second = batcher.submit(_x(3), 1)
    # Real time passes, the clock does not: the worker wakes after each real wait for the rest of
    # the delay, reads the clock and keeps the batch open. Two reads after both requests queued
    # mean at least one such wake-up timed out (nothing else notifies it).
    seen = clock.reads_on("batcher-m")
    wait_until(lambda: clock.reads_on("batcher-m") >= seen + 2)
    assert not first.done() and batcher.busy == 2 and model.calls == [1]
    clock.now += 0.05  # the oldest request's delay is over: the two run as one batch
    assert first.result(5)["y"][0, 0] == 4 and second.result(5)["y"][0, 0] == 6
    assert model.calls == [1, 2]
    assert model.threads[0] == threading.current_thread().name and model.threads[1] == "batcher-m"
    batcher.stop()


def test_a_request_to_a_model_idle_for_the_queue_delay_runs_at_once():
    model, clock = ThreadRecorder(), FakeClock()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=64, max_queue_delay_s=5.0), clock=clock)
    for value in (1, 2, 3):
        clock.now += 5.0  # sparse traffic: nobody to wait for, so nobody waits 5 s
        assert batcher.infer(_x(value), 1, timeout=1)["y"][0, 0] == 2 * value
    assert model.calls == [1, 1, 1]
    assert set(model.threads) == {threading.current_thread().name}
    batcher.stop()


def test_zero_delay_runs_without_waiting():
    model = Recorder()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=64, max_queue_delay_s=0.0))
    start = time.monotonic()
    for _ in range(20):
        batcher.infer(_x(1), 1, timeout=5)
    assert time.monotonic() - start < 0.5
    batcher.stop()


def test_one_bad_request_never_fails_its_batch_mates():
    model, clock = Recorder(), FakeClock()
    model.gate.clear()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=8, max_queue_delay_s=0.5), clock=clock)
    blocker = batcher.submit(_x(0, rows=8), 8)
    assert model.entered.wait(30)
    futures = _submit_many(batcher, [1, 2, -1, 3])
    clock.now += 0.5  # the four queued ones have waited the delay: they close as one batch
    model.gate.set()
    blocker.result(5)
    assert futures[0].result(5)["y"][0, 0] == 2
    assert futures[1].result(5)["y"][0, 0] == 4
    assert futures[3].result(5)["y"][0, 0] == 6
    with pytest.raises(InvalidArgument, match="negative values are not allowed"):
        futures[2].result(5)
    assert batcher.stats.isolated_reruns == 1
    batcher.stop()


def test_only_compatible_requests_are_merged():
    model, clock = Recorder(), FakeClock()
    model.gate.clear()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=8, max_queue_delay_s=0.2), clock=clock)
    blocker = batcher.submit(_x(0, rows=8), 8)
    assert model.entered.wait(30)
    a = batcher.submit(_x(1), 1)
    b = batcher.submit({"x": np.ones((1, 5), np.float32)}, 1)  # other trailing shape
    c = batcher.submit(_x(3), 1)
    clock.now += 0.2
    model.gate.set()
    for f in (blocker, a, b, c):
        f.result(5)
    assert b.result()["y"].shape == (1, 5)
    assert sorted(model.calls[1:]) == [1, 2]
    batcher.stop()


def test_preferred_batch_size_dispatches_early():
    model = Recorder()
    config = BatchingConfig(max_batch_size=64, max_queue_delay_s=2.0, preferred_batch_sizes=(2,))
    batcher = Batcher("m", model, config, clock=FakeClock())
    futures = _submit_many(batcher, [1, 2])
    for f in futures:  # the clock stands still: only reaching the preferred size can close the batch
        f.result(5)
    assert model.calls == [2]
    batcher.stop()


def test_oversized_request_runs_alone_and_non_batchable_models_never_merge():
    model = Recorder()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=4, max_queue_delay_s=0.01))
    assert batcher.infer(_x(1, rows=10), 10, timeout=5)["y"].shape == (10, 3)
    batcher.stop()
    single = Recorder()
    single.gate.clear()
    config = BatchingConfig(max_batch_size=8, max_queue_delay_s=0.2)
    unbatched = Batcher("u", single, config, batchable=False, clock=FakeClock())  # never idle long enough to inline
    futures = _submit_many(unbatched, [1, 2, 3])
    single.gate.set()
    for f in futures:
        f.result(5)
    assert single.calls == [1, 1, 1]
    unbatched.stop()


def test_full_queue_is_resource_exhausted_and_stopped_batcher_unavailable():
    model = Recorder()
    model.gate.clear()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=1, max_queue_delay_s=0, max_queued_requests=2))
    # The first request finds the model idle and runs inline on its caller's thread (held by the gate).
    first = threading.Thread(target=batcher.infer, args=(_x(1), 1))
    first.start()
    assert model.entered.wait(30)
    batcher.submit(_x(1), 1)
    batcher.submit(_x(1), 1)
    with pytest.raises(ResourceExhausted, match="requests are queued"):
        batcher.submit(_x(1), 1)
    model.gate.set()
    first.join(5)
    batcher.stop()
    with pytest.raises(Unavailable):
        batcher.submit(_x(1), 1)


def test_an_idle_model_runs_a_request_inline_and_batches_what_queued_meanwhile():
    model = Recorder()
    model.gate.clear()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=8, max_queue_delay_s=0))
    first = threading.Thread(target=batcher.infer, args=(_x(1), 1))
    first.start()
    assert model.entered.wait(30)  # first runs inline (held by the gate); these three queue behind it
    futures = _submit_many(batcher, [2, 3, 4])
    model.gate.set()
    first.join(5)
    assert [f.result(5)["y"][0, 0] for f in futures] == [4, 6, 8]
    assert model.calls == [1, 3]  # one inline pass, then one merged batch of the three
    batcher.stop()


def test_outputs_that_do_not_keep_the_batch_dimension_fall_back_to_single_runs():
    calls = []

    def summing(inputs):
        calls.append(inputs["x"].shape[0])
        return {"y": inputs["x"].sum(axis=0, keepdims=True)}

    clock = FakeClock()
    batcher = Batcher("m", summing, BatchingConfig(max_batch_size=8, max_queue_delay_s=0.2), clock=clock)
    futures = _submit_many(batcher, [1, 2, 3])
    clock.now += 0.2  # all three queued; now their batch closes
    assert [f.result(5)["y"][0, 0] for f in futures] == [1, 2, 3]
    assert calls == [3, 1, 1, 1] and batcher.stats.isolated_reruns == 1  # merged, then each alone
    batcher.stop()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (BatchingConfig(max_batch_size=0), "max_batch_size must be >= 1"),
        (BatchingConfig(max_queue_delay_s=-1), "max_queue_delay"),
        (BatchingConfig(max_batch_size=4, preferred_batch_sizes=(8,)), "preferred_batch_sizes"),
    ],
)
def test_bad_configs_are_invalid(config, message):
    with pytest.raises(InvalidArgument, match=message):
        config.validate()
