"""causeway.runner.v1.RunnerService: proto <-> domain mapping and status codes, nothing else.

The methods live in two mixins by resource (models and status; batch jobs and quotas).
"""

from __future__ import annotations

from causeway.runner.v1 import runner_service_pb2, runner_service_pb2_grpc
from libs.grpc_server.server import ServiceBinding
from services.gpu_runner.api.runner_jobs import JobMethods
from services.gpu_runner.api.runner_models import ModelMethods, RunnerInfo
from services.gpu_runner.domain.batch_jobs import BatchJobs
from services.gpu_runner.domain.models import ModelManager

SERVICE_NAME = runner_service_pb2.DESCRIPTOR.services_by_name["RunnerService"].full_name


class RunnerServicer(ModelMethods, JobMethods, runner_service_pb2_grpc.RunnerServiceServicer):
    def __init__(self, models: ModelManager, jobs: BatchJobs, info: RunnerInfo) -> None:
        self.models = models
        self.jobs = jobs
        self.scheduler = jobs.scheduler
        self.info = info


def binding(servicer: RunnerServicer) -> ServiceBinding:
    return ServiceBinding(
        SERVICE_NAME, lambda server: runner_service_pb2_grpc.add_RunnerServiceServicer_to_server(servicer, server)
    )
