"""causeway.runner.v1.RunnerService through a real server with real tokens: models, status, jobs, quotas."""

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import duration_pb2

from causeway.common.v1 import errors_pb2, model_pb2
from causeway.runner.v1 import batch_pb2
from causeway.runner.v1 import model_pb2 as rm
from causeway.runner.v1 import runner_service_pb2 as pb
from causeway.runner.v1 import runner_service_pb2_grpc as pb_grpc
from libs.testing.grpc_servers import rich_status_of
from services.gpu_runner.tests import fixtures as fx
from services.gpu_runner.tests.harness import MIB, runner_harness

TEAM = "oncology"
PARQUET = batch_pb2.BATCH_DATA_FORMAT_PARQUET


@pytest.fixture
def source():
    source = fx.LocalSource()
    for i in (1, 2, 3):
        source.add("tox", i, fx.torchscript_bytes(fx.mlp(seed=i)), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    source.add("big", 1, fx.torchscript_bytes(fx.mlp(hidden=4000)), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    return source


@pytest.fixture
def run(tmp_path, source):
    with runner_harness(tmp_path, source, BATCH_SLOTS="2", TEAM_MAX_SLOTS="1", TEAM_MAX_QUEUED="2") as harness:
        yield harness


@pytest.fixture
def stub(run):
    return pb_grpc.RunnerServiceStub(run.channel)


def _ref(name="tox", version=1):
    return model_pb2.ModelRef(name=name, version=version)


def _error(call) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert isinstance(err.value, grpc.Call)
    return err.value


def _detail(err: grpc.Call, message):
    status = rich_status_of(err)
    detail = message()
    assert status.details[0].Unpack(detail)
    return detail


def test_load_list_status_unload(run, stub):
    deployer = run.service_md("deployer")
    batching = rm.BatchingConfig(max_batch_size=16, max_queue_delay=duration_pb2.Duration(nanos=3_000_000))
    loaded = stub.LoadModel(pb.LoadModelRequest(model=_ref(), batching=batching), metadata=deployer).model
    assert loaded.state == rm.LOADED_MODEL_STATE_READY and loaded.memory_bytes > 0
    assert loaded.batching.max_batch_size == 16 and loaded.batching.max_queue_delay.nanos == 3_000_000
    assert loaded.device.type == rm.DEVICE_TYPE_CPU and loaded.format == model_pb2.MODEL_FORMAT_TORCHSCRIPT
    again = stub.LoadModel(pb.LoadModelRequest(model=_ref()), metadata=deployer).model
    assert again.load_time == loaded.load_time  # already READY: returned unchanged
    stub.LoadModel(pb.LoadModelRequest(model=_ref(version=2)), metadata=deployer)
    reader = run.md("rita", ["reviewer"])
    listed = stub.ListModels(pb.ListModelsRequest(), metadata=reader).models
    assert [(m.model.name, m.model.version) for m in listed] == [("tox", 1), ("tox", 2)]
    status = stub.GetRunnerStatus(pb.GetRunnerStatusRequest(), metadata=reader).status
    device = status.devices[0]
    assert status.environment == 1 and status.loaded_model_count == 2 and status.batch_slots_total == 2
    assert device.memory_budget_bytes == 512 * MIB
    assert device.memory_used_bytes == sum(m.memory_bytes for m in listed) and device.memory_total_bytes > 0
    unloaded = stub.UnloadModel(pb.UnloadModelRequest(model=_ref()), metadata=deployer).model
    assert unloaded.model.version == 1
    assert _error(lambda: stub.UnloadModel(pb.UnloadModelRequest(model=_ref()), metadata=deployer)).code() == (
        grpc.StatusCode.NOT_FOUND
    )


def test_load_refusals(run, stub, source):
    deployer = run.service_md("deployer")
    cases = [
        (pb.LoadModelRequest(model=_ref(version=0)), "INVALID_ARGUMENT", "version must be >= 1"),
        (pb.LoadModelRequest(model=_ref(version=9)), "NOT_FOUND", "no version 9"),
        (
            pb.LoadModelRequest(model=_ref(), batching=rm.BatchingConfig(max_batch_size=4, preferred_batch_sizes=[8])),
            "INVALID_ARGUMENT",
            "preferred_batch_sizes",
        ),
        (pb.LoadModelRequest(model=_ref(), device_type=rm.DEVICE_TYPE_CUDA), "FAILED_PRECONDITION", "serves on"),
    ]
    for request, code, message in cases:
        err = _error(lambda request=request: stub.LoadModel(request, metadata=deployer))
        assert (err.code().name, message in err.details()) == (code, True), err.details()
    source.blocked[("tox", 3)] = [fx.FailedGate("APPROVALS", "FAILED", "0 of 1 approvals")]
    err = _error(lambda: stub.LoadModel(pb.LoadModelRequest(model=_ref(version=3)), metadata=deployer))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    gate = _detail(err, errors_pb2.GateFailure)
    assert gate.model.version == 3 and gate.failed_gates[0].message == "0 of 1 approvals"


def test_memory_budget_exhausted_carries_a_quota_failure(tmp_path, source):
    with runner_harness(tmp_path, source, MEMORY_BUDGET_BYTES="50000") as run:  # "big" is ~130 kB
        stub = pb_grpc.RunnerServiceStub(run.channel)
        err = _error(
            lambda: stub.LoadModel(pb.LoadModelRequest(model=_ref("big")), metadata=run.service_md("deployer"))
        )
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "budget" in err.details()
        quota = _detail(err, errors_pb2.QuotaFailure)
        assert quota.limit == "device_memory_bytes" and quota.limit_value == 50_000


def test_management_permissions(run, stub):
    researcher = run.md("alice", ["researcher"], teams=[TEAM])
    err = _error(lambda: stub.LoadModel(pb.LoadModelRequest(model=_ref()), metadata=researcher))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "runner.manage" in err.details()
    assert _error(lambda: stub.ListModels(pb.ListModelsRequest())).code() == grpc.StatusCode.UNAUTHENTICATED
    quota = pb.SetTeamQuotaRequest(team=TEAM, max_concurrent_slots=2, max_queued_jobs=4, reason="more")
    assert _error(lambda: stub.SetTeamQuota(quota, metadata=researcher)).code() == grpc.StatusCode.PERMISSION_DENIED
    assert stub.LoadModel(pb.LoadModelRequest(model=_ref()), metadata=run.md("rm", ["release-manager"])).model


def _parquet(run, name: str, rows: int) -> str:
    x = np.arange(rows * fx.IN, dtype=np.float32).reshape(rows, fx.IN) / 100
    table = pa.table({"input": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), fx.IN)})
    pq.write_table(table, run.data_dir / f"{name}.parquet")
    return f"file://{run.data_dir}/{name}.parquet"


def _job(run, name: str, rows: int = 10, team: str = TEAM, **fields) -> pb.SubmitBatchJobRequest:
    return pb.SubmitBatchJobRequest(
        model=_ref(),
        team=team,
        input=batch_pb2.BatchInput(uri=_parquet(run, name, rows), format=PARQUET),
        output=batch_pb2.BatchOutput(uri=f"file://{run.data_dir}/out-{name}", format=PARQUET),
        batch_size=4,
        **fields,
    )


def test_batch_job_runs_with_watched_progress_and_outputs(run, stub):
    alice = run.md("alice", ["researcher"], teams=[TEAM])
    job = stub.SubmitBatchJob(_job(run, "first", rows=10, request_id="req-1"), metadata=alice).job
    assert job.state in (batch_pb2.BATCH_JOB_STATE_QUEUED, batch_pb2.BATCH_JOB_STATE_RUNNING)
    assert job.artifact_digest.hex and job.submitted_by.subject == "alice"
    seen = [m.job for m in stub.WatchBatchJob(pb.WatchBatchJobRequest(job_id=job.job_id), metadata=alice, timeout=60)]
    final = seen[-1]
    assert final.state == batch_pb2.BATCH_JOB_STATE_SUCCEEDED, final.message
    assert final.progress.records_total == 10 and final.progress.records_processed == 10
    assert final.progress.batches_completed == 3 and final.start_time.seconds and final.finish_time.seconds
    assert len(seen) >= 2
    y = np.stack(pq.read_table(run.data_dir / "out-first" / "part-00000.parquet").column("output").to_pylist())
    assert y.shape == (10, fx.OUT)
    again = stub.SubmitBatchJob(_job(run, "first", rows=10, request_id="req-1"), metadata=alice).job
    assert again.job_id == job.job_id  # idempotent by request_id
    got = stub.GetBatchJob(pb.GetBatchJobRequest(job_id=job.job_id), metadata=alice).job
    assert got.state == batch_pb2.BATCH_JOB_STATE_SUCCEEDED


def test_batch_job_validation_and_team_membership(run, stub):
    alice = run.md("alice", ["researcher"], teams=[TEAM])
    bad = _job(run, "bad")
    bad.batch_size = 0
    assert _error(lambda: stub.SubmitBatchJob(bad, metadata=alice)).code() == grpc.StatusCode.INVALID_ARGUMENT
    outside = _job(run, "outside")
    outside.input.uri = "file:///etc/passwd"
    err = _error(lambda: stub.SubmitBatchJob(outside, metadata=alice))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "outside the runner's data roots" in err.details()
    err = _error(lambda: stub.SubmitBatchJob(_job(run, "other", team="genomics"), metadata=alice))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "not a member of team 'genomics'" in err.details()
    job = stub.SubmitBatchJob(_job(run, "mine"), metadata=alice).job
    bob = run.md("bob", ["researcher"], teams=["genomics"])
    assert _error(lambda: stub.GetBatchJob(pb.GetBatchJobRequest(job_id=job.job_id), metadata=bob)).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert stub.GetBatchJob(pb.GetBatchJobRequest(job_id=job.job_id), metadata=run.md("root", ["platform-admin"]))


def test_quotas_queue_full_cancel_and_paging(run, stub):
    admin = run.md("root", ["platform-admin"])
    alice = run.md("alice", ["researcher"], teams=[TEAM])
    frozen = pb.SetTeamQuotaRequest(team=TEAM, max_concurrent_slots=0, max_queued_jobs=2, reason="maintenance")
    quota = stub.SetTeamQuota(frozen, metadata=admin).quota
    assert quota.updated_by.subject == "root" and quota.max_concurrent_slots == 0
    jobs = [stub.SubmitBatchJob(_job(run, f"q{i}"), metadata=alice).job for i in range(2)]
    assert [j.queue_position for j in jobs] == [1, 2]
    err = _error(lambda: stub.SubmitBatchJob(_job(run, "q2"), metadata=alice))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    detail = _detail(err, errors_pb2.QuotaFailure)
    assert (detail.team, detail.limit, detail.limit_value, detail.current_value) == (TEAM, "max_queued_jobs", 2, 2)
    used = stub.GetTeamQuota(pb.GetTeamQuotaRequest(team=TEAM), metadata=alice).quota
    assert (used.queued_jobs, used.slots_in_use) == (2, 0)
    cancelled = stub.CancelBatchJob(
        pb.CancelBatchJobRequest(job_id=jobs[0].job_id, reason="not needed"), metadata=alice
    )
    assert cancelled.job.state == batch_pb2.BATCH_JOB_STATE_CANCELLED
    again = _error(
        lambda: stub.CancelBatchJob(pb.CancelBatchJobRequest(job_id=jobs[0].job_id, reason="x"), metadata=alice)
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    first = stub.ListBatchJobs(pb.ListBatchJobsRequest(page_size=1), metadata=alice)
    assert [j.job_id for j in first.jobs] == [jobs[1].job_id] and first.next_page_token  # newest first
    second = stub.ListBatchJobs(pb.ListBatchJobsRequest(page_size=1, page_token=first.next_page_token), metadata=alice)
    assert [j.job_id for j in second.jobs] == [jobs[0].job_id] and not second.next_page_token
    foreign = pb.ListBatchJobsRequest(page_size=1, page_token=first.next_page_token, model_name="other")
    assert _error(lambda: stub.ListBatchJobs(foreign, metadata=alice)).code() == grpc.StatusCode.INVALID_ARGUMENT
    state = pb.ListBatchJobsRequest(state=batch_pb2.BATCH_JOB_STATE_CANCELLED)
    assert [j.job_id for j in stub.ListBatchJobs(state, metadata=alice).jobs] == [jobs[0].job_id]
    stub.SetTeamQuota(
        pb.SetTeamQuotaRequest(team="genomics", max_concurrent_slots=1, reason="new team"), metadata=admin
    )
    quotas = stub.ListTeamQuotas(pb.ListTeamQuotasRequest(), metadata=alice).quotas
    assert [q.team for q in quotas] == ["genomics", TEAM]
    too_many = pb.SetTeamQuotaRequest(team=TEAM, max_concurrent_slots=3, reason="more than the runner has")
    assert _error(lambda: stub.SetTeamQuota(too_many, metadata=admin)).code() == grpc.StatusCode.INVALID_ARGUMENT
    stub.SetTeamQuota(
        pb.SetTeamQuotaRequest(team=TEAM, max_concurrent_slots=1, max_queued_jobs=2, reason="go"), metadata=admin
    )
    watched = list(stub.WatchBatchJob(pb.WatchBatchJobRequest(job_id=jobs[1].job_id), metadata=alice, timeout=60))
    assert watched[-1].job.state == batch_pb2.BATCH_JOB_STATE_SUCCEEDED
