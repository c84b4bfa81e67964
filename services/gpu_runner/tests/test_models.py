"""Loading real artifacts of every format; digest and gate refusals; no pickle; memory and eviction."""

import hashlib
import io
import os
import pickle
import threading
import zipfile

import numpy as np
import pytest

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.gpu_runner.domain.artifact_cache import ArtifactCache
from services.gpu_runner.domain.batching import BatchingConfig
from services.gpu_runner.domain.devices import cpu_device
from services.gpu_runner.domain.memory import MemoryBudget, MemoryExhausted
from services.gpu_runner.domain.models import ModelManager, ModelState
from services.gpu_runner.domain.source import DigestMismatchError, FailedGate, GatesBlocked
from services.gpu_runner.loaders import LoaderSet, UnsupportedArtifact
from services.gpu_runner.tests import fixtures as fx

MIB = 1024 * 1024


@pytest.fixture
def source():
    return fx.LocalSource()


def manager(source, tmp_path, budget=256 * MIB, cache_max_bytes=0, **kwargs) -> ModelManager:
    return ModelManager(
        source,
        LoaderSet(),
        ArtifactCache(tmp_path / "cache", max_bytes=cache_max_bytes),
        MemoryBudget(budget),
        cpu_device(),
        default_batching=BatchingConfig(max_batch_size=8, max_queue_delay_s=0.001),
        **kwargs,
    )


def _infer(models, name, x, version=""):
    view, out = models.infer(name, version, {"input": x}, {"input": "FP32"})
    return view, out["output"]


def test_torchscript_loads_warms_up_and_serves(source, tmp_path):
    module = fx.mlp()
    source.add("tox", 1, fx.torchscript_bytes(module), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    models = manager(source, tmp_path)
    view = models.load("tox", 1)
    assert view.state is ModelState.READY and view.platform == "pytorch_torchscript"
    assert view.memory_bytes > 0 and view.load_time is not None
    x = np.random.default_rng(1).standard_normal((5, fx.IN)).astype(np.float32)
    _, y = _infer(models, "tox", x)
    np.testing.assert_allclose(y, fx.reference(module, x), rtol=1e-5, atol=1e-6)
    assert models.is_ready("tox", "1") and models.is_ready("tox") and not models.is_ready("tox", "2")


def test_safetensors_with_registered_architecture_takes_its_signature_from_the_header(source, tmp_path):
    module = fx.mlp(seed=3)
    source.add("sft", 1, fx.safetensors_bytes(module), "SAFETENSORS")  # no signature registered
    models = manager(source, tmp_path)
    view = models.load("sft", 1)
    assert view.signature is not None and [s.name for s in view.signature.inputs] == ["input"]
    x = np.ones((2, fx.IN), np.float32)
    np.testing.assert_allclose(_infer(models, "sft", x)[1], fx.reference(module, x), rtol=1e-5, atol=1e-6)


def test_safetensors_in_the_validators_mlp_v1_convention_loads(source, tmp_path):
    import torch
    from safetensors.torch import save

    torch.manual_seed(5)
    layers = torch.nn.ModuleList([torch.nn.Linear(fx.IN, 6), torch.nn.Linear(6, 2)])
    state = {f"layers.{i}.{k}": v for i, layer in enumerate(layers) for k, v in layer.state_dict().items()}
    source.add("v1", 1, save(state), "SAFETENSORS", tags={"architecture": "mlp/v1"})
    models = manager(source, tmp_path)
    view = models.load("v1", 1)
    assert view.signature is not None and [tuple(s.shape) for s in view.signature.inputs] == [(-1, fx.IN)]
    x = np.random.default_rng(4).standard_normal((3, fx.IN)).astype(np.float32)
    with torch.no_grad():
        expected = layers[1](torch.relu(layers[0](torch.from_numpy(x)))).numpy()
    np.testing.assert_allclose(_infer(models, "v1", x)[1], expected, rtol=1e-5, atol=1e-6)


def test_safetensors_without_architecture_or_with_wrong_weights_is_refused(source, tmp_path):
    from safetensors.torch import save

    module = fx.mlp()
    source.add("bare", 1, save(dict(module.state_dict())), "SAFETENSORS")
    source.add("wrong", 1, fx.safetensors_bytes(fx.mlp(hidden=5), hidden=8), "SAFETENSORS")
    models = manager(source, tmp_path)
    with pytest.raises(UnsupportedArtifact, match="need an architecture"):
        models.load("bare", 1)
    with pytest.raises(UnsupportedArtifact, match="mlp: the weights do not fit the config"):
        models.load("wrong", 1)


def test_onnx_and_mlflow_onnx_models_run_on_onnxruntime(source, tmp_path):
    source.add("onnx", 1, fx.onnx_bytes(), "ONNX")
    source.add("mlf", 1, fx.mlflow_onnx_tar(), "MLFLOW_MODEL", layout="TAR")
    models = manager(source, tmp_path)
    x = np.random.default_rng(2).standard_normal((3, fx.IN)).astype(np.float32)
    for name, platform in (("onnx", "onnxruntime_onnx"), ("mlf", "mlflow_pyfunc")):
        view = models.load(name, 1)
        assert view.platform == platform
        _, out = models.infer(name, "", {"x": x}, {"x": "FP32"})
        np.testing.assert_allclose(out["y"], fx.onnx_reference(x), rtol=1e-5, atol=1e-6)


def test_mlflow_models_that_need_pickle_are_refused(source, tmp_path):
    source.add("pyf", 1, fx.mlflow_pyfunc_pickle_tar(), "MLFLOW_MODEL", layout="TAR")
    with pytest.raises(UnsupportedArtifact, match="never unpickles"):
        manager(source, tmp_path).load("pyf", 1)


class _Boom:
    """A pickle that would create a file when unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("fmt", ["PICKLE", "TORCH_STATE_DICT", "TORCHSCRIPT"])
def test_pickles_are_never_deserialized(source, tmp_path, fmt):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(str(marker)))
    if fmt == "TORCHSCRIPT":  # a torch.save-style zip: data.pkl without TorchScript code
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("model/data.pkl", payload)
            archive.writestr("model/version", "3\n")
        payload = buffer.getvalue()
    source.add("evil", 1, payload, fmt, signature=fx.MLP_SIGNATURE)
    models = manager(source, tmp_path)
    with pytest.raises(UnsupportedArtifact, match="never"):
        models.load("evil", 1)
    assert not marker.exists()
    # Refused before download for the pickle formats; the TorchScript check reads the bytes.
    assert source.downloads == (1 if fmt == "TORCHSCRIPT" else 0)


def test_bytes_that_do_not_hash_to_the_digest_are_refused(source, tmp_path):
    version = source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    source.tamper.add(version.digest)
    models = manager(source, tmp_path)
    with pytest.raises(DigestMismatchError, match=f"not the recorded sha256:{version.digest}"):
        models.load("tox", 1)
    assert models.list()[0].state is ModelState.FAILED
    assert not (tmp_path / "cache" / "blobs" / version.digest).exists()
    source.tamper.clear()
    assert models.load("tox", 1).state is ModelState.READY  # a retry replaces the FAILED entry


def test_a_cached_blob_changed_on_disk_is_fetched_again(source, tmp_path):
    version = source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    models = manager(source, tmp_path)
    models.load("tox", 1)
    models.unload("tox", 1)
    blob = tmp_path / "cache" / "blobs" / version.digest
    blob.write_bytes(b"tampered")
    models.load("tox", 1)
    assert source.downloads == 2
    assert blob.stat().st_size == version.size_bytes


def test_gates_blocked_is_refused_with_every_reason_and_leaves_nothing(source, tmp_path):
    source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    source.blocked[("tox", 1)] = [
        FailedGate("VALIDATION", "FAILED", "no passed validation report for this digest"),
        FailedGate("APPROVALS", "FAILED", "0 of 1 approvals"),
    ]
    models = manager(source, tmp_path)
    with pytest.raises(GatesBlocked) as err:
        models.load("tox", 1)
    assert "VALIDATION: no passed validation report" in err.value.message
    assert "APPROVALS: 0 of 1 approvals" in err.value.message
    assert models.list() == [] and source.downloads == 0


def test_unknown_version_and_bad_arguments(source, tmp_path):
    models = manager(source, tmp_path)
    with pytest.raises(NotFound):
        models.load("nope", 1)
    with pytest.raises(InvalidArgument):
        models.load("nope", 0)
    with pytest.raises(NotFound, match="not loaded"):
        models.infer("nope", "", {}, {})
    with pytest.raises(InvalidArgument, match="version number"):
        source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
        models.load("tox", 1)
        models.infer("tox", "one", {}, {})


def test_model_that_fails_warm_up_is_failed_not_ready(source, tmp_path):
    wrong = fx.MLP_SIGNATURE.__class__(
        inputs=(fx.MLP_SIGNATURE.inputs[0].__class__("input", "FP32", (-1, 7)),), outputs=fx.MLP_SIGNATURE.outputs
    )
    source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=wrong)
    models = manager(source, tmp_path)
    with pytest.raises(FailedPrecondition, match="failed its warm-up"):
        models.load("tox", 1)
    (view,) = models.list()
    assert view.state is ModelState.FAILED and "warm-up" in view.message
    assert models.budget.used_bytes == 0
    with pytest.raises(Unavailable, match="FAILED"):
        models.infer("tox", "1", {}, {})


def _three_models(source):
    for i in range(1, 4):
        source.add(
            f"m{i}", 1, fx.torchscript_bytes(fx.mlp(seed=i, hidden=2000)), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE
        )


def test_model_larger_than_the_budget_is_resource_exhausted(source, tmp_path):
    _three_models(source)
    with pytest.raises(MemoryExhausted, match="whole cpu budget"):
        manager(source, tmp_path, budget=10_000).load("m1", 1)


def test_idle_models_are_evicted_least_recently_used_first(source, tmp_path):
    _three_models(source)
    one = manager(source, tmp_path / "probe").load("m1", 1).memory_bytes
    models = manager(source, tmp_path, budget=int(one * 2.5))
    models.load("m1", 1)
    models.load("m2", 1)
    _infer(models, "m1", np.zeros((1, fx.IN), np.float32))  # m1 is now more recent than m2
    models.load("m3", 1)
    assert [v.name for v in models.list()] == ["m1", "m3"]
    assert models.metrics.evictions._value.get() == 1


def test_busy_or_pinned_models_are_not_evicted(source, tmp_path):
    _three_models(source)
    one = manager(source, tmp_path / "probe").load("m1", 1).memory_bytes
    models = manager(source, tmp_path, budget=int(one * 2.5))
    models.acquire("m1", 1)  # a batch job holds m1
    models.load("m2", 1)
    entry = models._entries["m2:1"]
    entry.in_flight += 1  # a request is in flight on m2
    with pytest.raises(MemoryExhausted, match="busy or held by batch jobs: m1:1, m2:1"):
        models.load("m3", 1)
    entry.in_flight -= 1
    with pytest.raises(FailedPrecondition, match="batch job"):
        models.unload("m1", 1)
    models.release("m1", 1)
    models.load("m3", 1)
    # m1 was used (released) after m2 was loaded, so m2 is the least recently used idle model.
    assert {v.name for v in models.list()} == {"m1", "m3"}


def test_eviction_can_be_turned_off(source, tmp_path):
    _three_models(source)
    one = manager(source, tmp_path / "probe").load("m1", 1).memory_bytes
    models = manager(source, tmp_path, budget=int(one * 1.5), evict_idle=False)
    models.load("m1", 1)
    with pytest.raises(MemoryExhausted, match="unload a model first"):
        models.load("m2", 1)


class _Awaited(threading.Event):
    """An Event that tells when somebody starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def test_readiness_follows_loading_and_concurrent_loads_share_one(source, tmp_path):
    source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    checking, release = threading.Event(), threading.Event()
    original = source.check_gates

    def slow_gates(version):
        checking.set()
        if not release.wait(60):
            raise TimeoutError("the test never let the gate check finish")
        original(version)

    source.check_gates = slow_gates
    models = manager(source, tmp_path)
    results = []

    def load():
        results.append(models.load("tox", 1))

    first = threading.Thread(target=load)
    first.start()
    assert checking.wait(60)  # the first load owns the entry and is held in its gate check
    # A second load of the same version waits on the entry's `done` for the first one's outcome.
    shared = models._entries["tox:1"].done = _Awaited()
    second = threading.Thread(target=load)
    second.start()
    assert shared.waiting.wait(60)
    assert models.list()[0].state is ModelState.LOADING
    assert not models.is_ready("tox", "1")
    with pytest.raises(Unavailable, match="LOADING"):
        models.infer("tox", "1", {}, {})
    release.set()
    for thread in (first, second):
        thread.join(60)
        assert not thread.is_alive()
    assert len(results) == 2 and source.downloads == 1
    assert all(view.state is ModelState.READY for view in results)
    assert models.is_ready("tox", "1")


def test_unload_frees_memory_and_recheck_unloads_models_whose_gates_now_fail(source, tmp_path):
    source.add("a", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    source.add("b", 1, fx.torchscript_bytes(fx.mlp(seed=2)), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    models = manager(source, tmp_path)
    models.load("a", 1)
    models.load("b", 1)
    used = models.budget.used_bytes
    models.unload("a", 1)
    assert models.budget.used_bytes < used
    with pytest.raises(NotFound):
        models.unload("a", 1)
    source.blocked[("b", 1)] = [FailedGate("APPROVALS", "FAILED", "the approval was revoked")]
    assert models.recheck_gates() == ["b:1"]
    assert models.list() == [] and models.budget.used_bytes == 0


def test_cache_directory_is_private(tmp_path):
    ArtifactCache(tmp_path / "c")
    assert os.stat(tmp_path / "c").st_mode & 0o077 == 0


def test_the_artifact_cache_drops_least_recently_used_blobs_of_unloaded_models_only(source, tmp_path):
    blobs = {}
    for seed in (1, 2, 3):
        data = fx.torchscript_bytes(fx.mlp(seed=seed))
        source.add(f"c{seed}", 1, data, "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
        blobs[seed] = hashlib.sha256(data).hexdigest()
    size = max(len(fx.torchscript_bytes(fx.mlp(seed=s))) for s in (1, 2, 3))
    models = manager(source, tmp_path, cache_max_bytes=2 * size + size // 2)  # room for two blobs
    cached = lambda: {p.name for p in (tmp_path / "cache" / "blobs").iterdir()}  # noqa: E731
    models.load("c1", 1)
    models.load("c2", 1)
    assert cached() == {blobs[1], blobs[2]}
    models.unload("c1", 1, grace_seconds=0)
    models.load("c3", 1)  # over the limit: c1's blob goes (unloaded); c2's stays (loaded)
    assert cached() == {blobs[2], blobs[3]}
    models.load("c1", 1)  # fetched and verified again; now every blob belongs to a loaded model
    assert cached() == {blobs[1], blobs[2], blobs[3]}  # above the limit rather than pull a loaded model's bytes
    x = np.ones((1, fx.IN), np.float32)
    np.testing.assert_allclose(_infer(models, "c1", x)[1], fx.reference(fx.mlp(seed=1), x), rtol=1e-5, atol=1e-6)
