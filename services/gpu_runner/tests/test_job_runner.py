"""Batch jobs end to end in the domain: parquet / safetensors / NumPy in, outputs and progress out."""

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file, save_file

from libs.errors.domain_errors import InvalidArgument
from services.gpu_runner.domain.artifact_cache import ArtifactCache
from services.gpu_runner.domain.batching import BatchingConfig
from services.gpu_runner.domain.datasets import Storage
from services.gpu_runner.domain.devices import cpu_device
from services.gpu_runner.domain.job_runner import JobRunner
from services.gpu_runner.domain.jobs import JobScheduler, JobSpec, JobState, Submitter
from services.gpu_runner.domain.memory import MemoryBudget
from services.gpu_runner.domain.models import ModelManager
from services.gpu_runner.loaders import LoaderSet
from services.gpu_runner.tests import fixtures as fx

ALICE = Submitter("alice")


@pytest.fixture
def setup(tmp_path):
    source = fx.LocalSource()
    module = fx.mlp()
    version = source.add("tox", 1, fx.torchscript_bytes(module), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    models = ModelManager(
        source,
        LoaderSet(),
        ArtifactCache(tmp_path / "cache"),
        MemoryBudget(1 << 30),
        cpu_device(),
        default_batching=BatchingConfig(max_batch_size=4, max_queue_delay_s=0),
    )
    data = tmp_path / "data"
    data.mkdir()
    storage = Storage([data])
    scheduler = JobScheduler(2, JobRunner(models, storage), default_slots=2)
    return module, version, models, scheduler, data, storage


def _wait(scheduler, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = scheduler.get(job_id)
        if job.state.terminal:
            return job
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def _spec(data, name, in_fmt, out_fmt, uri=None, **kw):
    return JobSpec(
        "tox", 1, "onc", uri or f"file://{data / name}", in_fmt, f"file://{data / ('out-' + name)}", out_fmt, 7, **kw
    )


def test_parquet_directory_in_parquet_out_with_progress_and_success_marker(setup):
    module, version, models, scheduler, data, _ = setup
    rng = np.random.default_rng(0)
    (data / "in").mkdir()
    xs = []
    for part in range(2):
        x = rng.standard_normal((10 + part, fx.IN)).astype(np.float32)
        xs.append(x)
        table = pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), fx.IN)})
        pq.write_table(table, data / "in" / f"part-{part}.parquet")
    spec = _spec(data, "in", "PARQUET", "PARQUET", input_mapping=(("input", "features"),))
    job = _wait(scheduler, scheduler.submit(spec, version.digest, ALICE).job_id)
    assert job.state is JobState.SUCCEEDED, job.message
    assert (job.progress.records_total, job.progress.records_processed) == (21, 21)
    assert job.progress.batches_completed == 4  # 10 rows -> 7+3, 11 rows -> 7+4
    out = data / "out-in"
    for part, x in enumerate(xs):
        table = pq.read_table(out / f"part-{part:05d}.parquet")
        y = np.stack(table.column("output").to_pylist())
        np.testing.assert_allclose(y, fx.reference(module, x), rtol=1e-5, atol=1e-6)
    summary = json.loads((out / "_SUCCESS").read_text())
    assert summary["records"] == 21 and summary["artifact_sha256"] == version.digest
    assert models.list()[0].pins == 0  # the job released the model


def test_safetensors_and_numpy_files(setup):
    module, version, _, scheduler, data, _ = setup
    x = np.arange(9 * fx.IN, dtype=np.float64).reshape(9, fx.IN) / 10  # f64 read as the model's FP32
    save_file({"input": x}, str(data / "x.safetensors"))
    np.save(data / "x.npy", x)
    for name, fmt, out_fmt in (("x.safetensors", "SAFETENSORS", "SAFETENSORS"), ("x.npy", "NUMPY", "NUMPY")):
        job = _wait(scheduler, scheduler.submit(_spec(data, name, fmt, out_fmt), version.digest, ALICE).job_id)
        assert job.state is JobState.SUCCEEDED, job.message
    y_st = load_file(str(data / "out-x.safetensors" / "part-00000.safetensors"))["output"]
    y_np = np.load(data / "out-x.npy" / "part-00000.npz", allow_pickle=False)["output"]
    np.testing.assert_allclose(y_st, fx.reference(module, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_np, y_st)


def test_bad_inputs_fail_the_job_with_a_reason(setup):
    _, version, _, scheduler, data, _ = setup
    pq.write_table(pa.table({"other": [1.0, 2.0]}), data / "bad.parquet")
    job = _wait(
        scheduler, scheduler.submit(_spec(data, "bad.parquet", "PARQUET", "PARQUET"), version.digest, ALICE).job_id
    )
    assert job.state is JobState.FAILED and "column 'input' is not in the file" in job.message


def test_a_pickled_npy_is_never_loaded(setup):
    _, version, _, scheduler, data, _ = setup
    np.save(data / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    job = _wait(scheduler, scheduler.submit(_spec(data, "obj.npy", "NUMPY", "NUMPY"), version.digest, ALICE).job_id)
    assert job.state is JobState.FAILED and "allow_pickle" in job.message


def test_storage_confines_file_uris_and_refuses_used_outputs(setup, tmp_path):
    *_, data, storage = setup
    with pytest.raises(InvalidArgument, match="outside the runner's data roots"):
        storage.open(f"file://{tmp_path}/cache", "input.uri")
    with pytest.raises(InvalidArgument, match="outside"):
        storage.open(f"file://{data}/../cache", "input.uri")
    with pytest.raises(InvalidArgument, match="must start with one of"):
        storage.open("http://example.com/x", "input.uri")
    (data / "used").mkdir()
    (data / "used" / "x").write_text("earlier output")
    with pytest.raises(InvalidArgument, match="not empty"):
        storage.check_output(f"file://{data}/used")
    storage.check_output(f"file://{data}/fresh")
