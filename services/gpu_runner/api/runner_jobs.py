"""RunnerService methods for batch jobs and team quotas."""

from __future__ import annotations

import grpc

from causeway.runner.v1 import runner_service_pb2 as pb
from libs.auth import principal as principal_ctx
from libs.errors.domain_errors import Unauthenticated
from services.gpu_runner.api import convert
from services.gpu_runner.api.rich_errors import with_details
from services.gpu_runner.domain.batch_jobs import BatchJobs, Caller

WATCH_POLL_SECONDS = 1.0  # how often a watch notices a client that went away


def caller() -> Caller:
    principal = principal_ctx.current()
    if principal is None:  # only if the server was assembled without the auth interceptor
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>' metadata")
    return Caller(principal.subject, principal.teams, principal.roles, principal.display, principal.kind)


class JobMethods:
    jobs: BatchJobs

    @with_details
    def SubmitBatchJob(self, request: pb.SubmitBatchJobRequest, context) -> pb.SubmitBatchJobResponse:
        job = self.jobs.submit(convert.job_spec(request), caller())
        return pb.SubmitBatchJobResponse(job=convert.batch_job(job))

    def GetBatchJob(self, request: pb.GetBatchJobRequest, context) -> pb.GetBatchJobResponse:
        return pb.GetBatchJobResponse(job=convert.batch_job(self.jobs.get(request.job_id, caller())))

    def WatchBatchJob(self, request: pb.WatchBatchJobRequest, context: grpc.ServicerContext):
        who = caller()
        job = self.jobs.get(request.job_id, who)
        yield pb.WatchBatchJobResponse(job=convert.batch_job(job))
        while not job.state.terminal and context.is_active():
            latest = self.jobs.watch(request.job_id, who, job.revision, WATCH_POLL_SECONDS)
            if latest.revision != job.revision:
                job = latest
                yield pb.WatchBatchJobResponse(job=convert.batch_job(job))

    def CancelBatchJob(self, request: pb.CancelBatchJobRequest, context) -> pb.CancelBatchJobResponse:
        job = self.jobs.cancel(request.job_id, request.reason, caller())
        return pb.CancelBatchJobResponse(job=convert.batch_job(job))

    def ListBatchJobs(self, request: pb.ListBatchJobsRequest, context) -> pb.ListBatchJobsResponse:
        jobs, token = self.jobs.list(
            caller(),
            team=request.team,
            state=convert.job_state(request.state),
            model=request.model_name,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListBatchJobsResponse(jobs=[convert.batch_job(j) for j in jobs], next_page_token=token)

    def GetTeamQuota(self, request: pb.GetTeamQuotaRequest, context) -> pb.GetTeamQuotaResponse:
        return pb.GetTeamQuotaResponse(quota=convert.team_quota(self.jobs.scheduler.quota(request.team)))

    def SetTeamQuota(self, request: pb.SetTeamQuotaRequest, context) -> pb.SetTeamQuotaResponse:
        quota = self.jobs.scheduler.set_quota(
            request.team,
            request.max_concurrent_slots,
            request.max_queued_jobs,
            caller().submitter(),
            request.reason,
        )
        return pb.SetTeamQuotaResponse(quota=convert.team_quota(quota))

    def ListTeamQuotas(self, request: pb.ListTeamQuotasRequest, context) -> pb.ListTeamQuotasResponse:
        quotas, token = self.jobs.quotas(request.page_size, request.page_token)
        return pb.ListTeamQuotasResponse(quotas=[convert.team_quota(q) for q in quotas], next_page_token=token)
