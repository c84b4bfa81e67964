"""RunnerService methods for models and status: LoadModel, UnloadModel, ListModels, GetRunnerStatus."""

from __future__ import annotations

import dataclasses
import datetime as dt

from causeway.runner.v1 import model_pb2 as rm
from causeway.runner.v1 import runner_service_pb2 as pb
from libs.errors.domain_errors import FailedPrecondition, InvalidArgument
from services.gpu_runner.api import convert
from services.gpu_runner.api.rich_errors import with_details
from services.gpu_runner.domain.devices import DeviceType
from services.gpu_runner.domain.jobs import JobScheduler
from services.gpu_runner.domain.models import ModelManager


@dataclasses.dataclass(frozen=True)
class RunnerInfo:
    environment: str
    version: str
    start_time: dt.datetime
    unload_grace_seconds: float = 30.0


class ModelMethods:
    models: ModelManager
    scheduler: JobScheduler
    info: RunnerInfo

    @with_details
    def LoadModel(self, request: pb.LoadModelRequest, context) -> pb.LoadModelResponse:
        if not request.HasField("model"):
            raise InvalidArgument("model is required")
        wanted = request.device_type
        if wanted not in (rm.DEVICE_TYPE_UNSPECIFIED, self._device_type()):
            have = rm.DeviceType.Name(self._device_type())
            raise FailedPrecondition(f"this runner serves on {have}; it cannot load onto {rm.DeviceType.Name(wanted)}")
        batching = None
        if request.HasField("batching"):
            batching = convert.batching_from_proto(request.batching, self.models.default_batching)
        view = self.models.load(request.model.name, request.model.version, batching)
        return pb.LoadModelResponse(model=convert.loaded_model(view))

    def UnloadModel(self, request: pb.UnloadModelRequest, context) -> pb.UnloadModelResponse:
        name, version = request.model.name, request.model.version
        if self.scheduler.uses_model(name, version):
            raise FailedPrecondition(f"a running batch job uses {name}:{version}; cancel it first")
        view = self.models.unload(name, version, grace_seconds=self.info.unload_grace_seconds)
        return pb.UnloadModelResponse(model=convert.loaded_model(view))

    def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[convert.loaded_model(v) for v in self.models.list()])

    def GetRunnerStatus(self, request: pb.GetRunnerStatusRequest, context) -> pb.GetRunnerStatusResponse:
        models = self.models
        budget = models.budget.snapshot()
        in_use, queued = self.scheduler.usage()
        status = rm.RunnerStatus(
            environment=convert.environment(self.info.environment),
            devices=[
                rm.DeviceStatus(
                    device=convert.device(models.device),
                    memory_budget_bytes=budget.budget_bytes,
                    memory_used_bytes=budget.used_bytes,
                    memory_total_bytes=models.device.total_memory_bytes,
                )
            ],
            loaded_model_count=len(models.list()),
            batch_slots_total=self.scheduler.total_slots,
            batch_slots_in_use=in_use,
            queued_batch_jobs=queued,
            version=self.info.version,
            start_time=convert.timestamp(self.info.start_time),
        )
        return pb.GetRunnerStatusResponse(status=status)

    def _device_type(self) -> rm.DeviceType.ValueType:
        return rm.DEVICE_TYPE_CUDA if self.models.device.type is DeviceType.CUDA else rm.DEVICE_TYPE_CPU
