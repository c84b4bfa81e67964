"""Dynamic batching: merge up to a size or a delay, split back, isolate a failing request."""

import threading
import time

import numpy as np
import pytest

from libs.errors.domain_errors import InvalidArgument, ResourceExhausted, Unavailable
from services.gpu_runner.domain.batching import Batcher, BatchingConfig


class Recorder:
    """A model: y = 2x, recording the row count of every call; rows with x < 0 make it fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, inputs):
        self.gate.wait(5)
        x = inputs["x"]
        self.calls.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("negative values are not allowed")
        time.sleep(self.delay)
        return {"y": x * 2}


def _x(value: float, rows: int = 1) -> dict:
    return {"x": np.full((rows, 3), value, np.float32)}


def _submit_many(batcher, values, rows=1):
    return [batcher.submit(_x(v, rows), rows) for v in values]


def test_requests_are_merged_up_to_max_batch_size_and_split_back():
    model = Recorder()
    model.gate.clear()  # hold the first call so the rest queue up
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=4, max_queue_delay_s=0.5))
    first = batcher.submit(_x(0, rows=4), 4)  # a full batch: dispatched at once, held by the gate
    time.sleep(0.05)
    futures = _submit_many(batcher, range(1, 9))
    model.gate.set()
    assert first.result(5)["y"].tolist() == [[0, 0, 0]] * 4
    for value, future in zip(range(1, 9), futures, strict=True):
        assert future.result(5)["y"].tolist() == [[2 * value] * 3]
    assert model.calls[1:] == [4, 4]
    batcher.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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
    time.sleep(0.2)  # real time passes, the clock does not: the batch stays open
    assert not first.done() and batcher.busy == 2
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
    model = Recorder()
    model.gate.clear()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=8, max_queue_delay_s=0.5))
    blocker = batcher.submit(_x(0, rows=8), 8)
    time.sleep(0.05)
    futures = _submit_many(batcher, [1, 2, -1, 3])
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
    model = Recorder()
    model.gate.clear()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=8, max_queue_delay_s=0.2))
    blocker = batcher.submit(_x(0, rows=8), 8)
    time.sleep(0.05)
    a = batcher.submit(_x(1), 1)
    b = batcher.submit({"x": np.ones((1, 5), np.float32)}, 1)  # other trailing shape
    c = batcher.submit(_x(3), 1)
    model.gate.set()
    for f in (blocker, a, b, c):
        f.result(5)
    assert b.result()["y"].shape == (1, 5)
    assert sorted(model.calls[1:]) == [1, 2]
    batcher.stop()


def test_preferred_batch_size_dispatches_early():
    model = Recorder()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=64, max_queue_delay_s=2.0, preferred_batch_sizes=(2,)))
    start = time.monotonic()
    futures = _submit_many(batcher, [1, 2])
    for f in futures:
        f.result(5)
    assert time.monotonic() - start < 1.0
    batcher.stop()


def test_oversized_request_runs_alone_and_non_batchable_models_never_merge():
    model = Recorder()
    batcher = Batcher("m", model, BatchingConfig(max_batch_size=4, max_queue_delay_s=0.01))
    assert batcher.infer(_x(1, rows=10), 10, timeout=5)["y"].shape == (10, 3)
    batcher.stop()
    single = Recorder()
    single.gate.clear()
    unbatched = Batcher("u", single, BatchingConfig(max_batch_size=8, max_queue_delay_s=0.2), batchable=False)
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
    time.sleep(0.05)
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
    time.sleep(0.05)  # first runs inline (held by the gate); these three queue behind it
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

    gate = threading.Event()
    batcher = Batcher(
        "m", lambda i: (gate.wait(5), summing(i))[1], BatchingConfig(max_batch_size=8, max_queue_delay_s=0.2)
    )
    futures = _submit_many(batcher, [1, 2, 3])
    gate.set()
    assert [f.result(5)["y"][0, 0] for f in futures] == [1, 2, 3]
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
