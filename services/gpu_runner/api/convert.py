"""Domain values <-> causeway.runner.v1 / causeway.common.v1 messages."""

from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2, timestamp_pb2

from causeway.common.v1 import digest_pb2, environment_pb2, identity_pb2, model_pb2
from causeway.runner.v1 import batch_pb2
from causeway.runner.v1 import model_pb2 as runner_model_pb2
from libs.errors.domain_errors import InvalidArgument
from services.gpu_runner.domain.batching import BatchingConfig
from services.gpu_runner.domain.devices import Device, DeviceType
from services.gpu_runner.domain.jobs import Job, JobSpec, JobState, Priority, Submitter, TeamQuota
from services.gpu_runner.domain.model_entries import ModelView

_ENVIRONMENTS = {"dev": environment_pb2.ENVIRONMENT_DEV, "test": environment_pb2.ENVIRONMENT_TEST}
_ENVIRONMENTS["prod"] = environment_pb2.ENVIRONMENT_PROD


def environment(name: str) -> environment_pb2.Environment.ValueType:
    return _ENVIRONMENTS[name]


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def digest(hex_digest: str) -> digest_pb2.Digest | None:
    if not hex_digest:
        return None
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


def device(value: Device) -> runner_model_pb2.Device:
    kind = runner_model_pb2.DEVICE_TYPE_CUDA if value.type is DeviceType.CUDA else runner_model_pb2.DEVICE_TYPE_CPU
    return runner_model_pb2.Device(type=kind, index=value.index, name=value.name)


def batching_to_proto(config: BatchingConfig) -> runner_model_pb2.BatchingConfig:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(round(config.max_queue_delay_s * 1e9))
    return runner_model_pb2.BatchingConfig(
        max_batch_size=config.max_batch_size,
        max_queue_delay=delay,
        preferred_batch_sizes=list(config.preferred_batch_sizes),
    )


def batching_from_proto(message: runner_model_pb2.BatchingConfig, default: BatchingConfig) -> BatchingConfig:
    """The request's batching over the runner's default (unset fields keep the default)."""
    delay = default.max_queue_delay_s
    if message.HasField("max_queue_delay"):
        delay = message.max_queue_delay.ToNanoseconds() / 1e9
    return BatchingConfig(
        max_batch_size=message.max_batch_size or default.max_batch_size,
        max_queue_delay_s=delay,
        preferred_batch_sizes=tuple(message.preferred_batch_sizes),
        max_queued_requests=default.max_queued_requests,
    ).validate()


_MODEL_STATES = {
    "LOADING": runner_model_pb2.LOADED_MODEL_STATE_LOADING,
    "READY": runner_model_pb2.LOADED_MODEL_STATE_READY,
    "UNLOADING": runner_model_pb2.LOADED_MODEL_STATE_UNLOADING,
    "FAILED": runner_model_pb2.LOADED_MODEL_STATE_FAILED,
}


def loaded_model(view: ModelView) -> runner_model_pb2.LoadedModel:
    fmt = (
        model_pb2.ModelFormat.Value(f"MODEL_FORMAT_{view.format}")
        if view.format
        else model_pb2.MODEL_FORMAT_UNSPECIFIED
    )
    return runner_model_pb2.LoadedModel(
        model=model_pb2.ModelRef(name=view.name, version=view.version),
        artifact_digest=digest(view.digest),
        format=fmt,
        state=_MODEL_STATES[view.state.value],
        memory_bytes=view.memory_bytes,
        device=device(view.device),
        batching=batching_to_proto(view.batching),
        load_time=timestamp(view.load_time),
        message=view.message,
    )


def actor(who: Submitter | None) -> identity_pb2.Actor | None:
    if who is None:
        return None
    kind = identity_pb2.ACTOR_KIND_SERVICE if who.kind == "service" else identity_pb2.ACTOR_KIND_HUMAN
    return identity_pb2.Actor(subject=who.subject, display_name=who.name, roles=list(who.roles), kind=kind)


_FORMAT_NAMES = {
    batch_pb2.BATCH_DATA_FORMAT_PARQUET: "PARQUET",
    batch_pb2.BATCH_DATA_FORMAT_SAFETENSORS: "SAFETENSORS",
    batch_pb2.BATCH_DATA_FORMAT_NUMPY: "NUMPY",
}
_FORMAT_VALUES = {v: k for k, v in _FORMAT_NAMES.items()}
_PRIORITIES = {
    batch_pb2.BATCH_JOB_PRIORITY_UNSPECIFIED: Priority.NORMAL,
    batch_pb2.BATCH_JOB_PRIORITY_LOW: Priority.LOW,
    batch_pb2.BATCH_JOB_PRIORITY_NORMAL: Priority.NORMAL,
    batch_pb2.BATCH_JOB_PRIORITY_HIGH: Priority.HIGH,
}
_PRIORITY_VALUES = {
    Priority.LOW: batch_pb2.BATCH_JOB_PRIORITY_LOW,
    Priority.NORMAL: batch_pb2.BATCH_JOB_PRIORITY_NORMAL,
    Priority.HIGH: batch_pb2.BATCH_JOB_PRIORITY_HIGH,
}
_JOB_STATES = {s: batch_pb2.BatchJobState.Value(f"BATCH_JOB_STATE_{s.value}") for s in JobState}


def job_state(value: int) -> JobState | None:
    """A list filter: None for UNSPECIFIED."""
    if value == batch_pb2.BATCH_JOB_STATE_UNSPECIFIED:
        return None
    for state, number in _JOB_STATES.items():
        if number == value:
            return state
    raise InvalidArgument(f"unknown job state {value}")


def job_spec(request) -> JobSpec:
    if request.priority not in _PRIORITIES:
        raise InvalidArgument(f"unknown priority {request.priority}")
    return JobSpec(
        model_name=request.model.name,
        model_version=request.model.version,
        team=request.team,
        input_uri=request.input.uri,
        input_format=_FORMAT_NAMES.get(request.input.format, ""),
        output_uri=request.output.uri,
        output_format=_FORMAT_NAMES.get(request.output.format, ""),
        batch_size=request.batch_size,
        priority=_PRIORITIES[request.priority],
        input_mapping=tuple(sorted(request.input.input_mapping.items())),
        request_id=request.request_id,
    )


def batch_job(job: Job) -> batch_pb2.BatchJob:
    spec = job.spec
    p = job.progress
    return batch_pb2.BatchJob(
        job_id=job.job_id,
        model=model_pb2.ModelRef(name=spec.model_name, version=spec.model_version),
        artifact_digest=digest(job.digest),
        team=spec.team,
        input=batch_pb2.BatchInput(
            uri=spec.input_uri, format=_FORMAT_VALUES[spec.input_format], input_mapping=dict(spec.input_mapping)
        ),
        output=batch_pb2.BatchOutput(uri=spec.output_uri, format=_FORMAT_VALUES[spec.output_format]),
        batch_size=spec.batch_size,
        priority=_PRIORITY_VALUES[spec.priority],
        state=_JOB_STATES[job.state],
        queue_position=job.queue_position,
        progress=batch_pb2.BatchJobProgress(
            records_total=p.records_total,
            records_processed=p.records_processed,
            records_failed=p.records_failed,
            batches_completed=p.batches_completed,
        ),
        message=job.message,
        submitted_by=actor(job.submitted_by),
        create_time=timestamp(job.create_time),
        start_time=timestamp(job.start_time),
        finish_time=timestamp(job.finish_time),
        request_id=spec.request_id,
    )


def team_quota(quota: TeamQuota) -> batch_pb2.TeamQuota:
    return batch_pb2.TeamQuota(
        team=quota.team,
        max_concurrent_slots=quota.max_concurrent_slots,
        max_queued_jobs=quota.max_queued_jobs,
        slots_in_use=quota.slots_in_use,
        queued_jobs=quota.queued_jobs,
        updated_by=actor(quota.updated_by),
        update_time=timestamp(quota.update_time),
    )
