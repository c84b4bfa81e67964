"""Which permission each runner RPC requires (libs/auth/rbac.py maps roles to permissions).

Inference (ModelInfer and the model/server metadata around it) needs `runner.infer`. ServerLive
and ServerReady are public: they say only "the process is up / ready", and probes (kubelet, load
balancers, KServe-style readiness checks) carry no token. Loading and unloading models needs
`runner.manage` (the deployer's service identity, release managers, platform admins). What a
runner holds (ListModels, GetRunnerStatus) is readable by every authenticated caller
(`models.read`). Batch jobs need `jobs.submit` / `jobs.read` plus membership of the job's team
(checked by the domain); quotas are changed only with `quotas.manage`.
"""

from libs.auth import rbac

OIP = "/inference.GRPCInferenceService/"
RUNNER = "/causeway.runner.v1.RunnerService/"

PUBLIC_METHODS: tuple[str, ...] = (OIP + "ServerLive", OIP + "ServerReady")

METHOD_PERMISSIONS: dict[str, str] = {
    OIP + "ServerMetadata": rbac.RUNNER_INFER,
    OIP + "ModelReady": rbac.RUNNER_INFER,
    OIP + "ModelMetadata": rbac.RUNNER_INFER,
    OIP + "ModelInfer": rbac.RUNNER_INFER,
    RUNNER + "LoadModel": rbac.RUNNER_MANAGE,
    RUNNER + "UnloadModel": rbac.RUNNER_MANAGE,
    RUNNER + "ListModels": rbac.MODELS_READ,
    RUNNER + "GetRunnerStatus": rbac.MODELS_READ,
    RUNNER + "SubmitBatchJob": rbac.JOBS_SUBMIT,
    RUNNER + "GetBatchJob": rbac.JOBS_READ,
    RUNNER + "WatchBatchJob": rbac.JOBS_READ,
    RUNNER + "CancelBatchJob": rbac.JOBS_SUBMIT,
    RUNNER + "ListBatchJobs": rbac.JOBS_READ,
    RUNNER + "GetTeamQuota": rbac.JOBS_READ,
    RUNNER + "SetTeamQuota": rbac.QUOTAS_MANAGE,
    RUNNER + "ListTeamQuotas": rbac.JOBS_READ,
}
