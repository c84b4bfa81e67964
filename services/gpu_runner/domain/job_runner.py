"""Runs one batch job: pin the model, stream the input files through it, write the outputs.

The job uses the model's backend directly in batches of the job's `batch_size` (it already has
full batches; the dynamic batcher is for online requests). The model is pinned for the job's
whole run, so it is neither evicted nor unloaded under it; it is loaded first if needed, through
the same gate and digest checks as LoadModel, and must still have the digest fixed at submission.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from libs.errors.domain_errors import FailedPrecondition
from services.gpu_runner.domain.datasets import DatasetReader, DatasetWriter, Storage
from services.gpu_runner.domain.jobs import Job, JobContext
from services.gpu_runner.domain.metrics import RunnerMetrics
from services.gpu_runner.domain.models import ModelManager

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, models: ModelManager, storage: Storage, metrics: RunnerMetrics | None = None) -> None:
        self.models = models
        self.storage = storage
        self.metrics = metrics or models.metrics

    def __call__(self, job: Job, ctx: JobContext) -> None:
        spec = job.spec
        view = self.models.acquire(spec.model_name, spec.model_version)
        try:
            if view.digest != job.digest:
                raise FailedPrecondition(
                    f"{spec.model_name} version {spec.model_version} now has artifact sha256:{view.digest}, "
                    f"not the sha256:{job.digest} fixed when the job was submitted"
                )
            self._run(job, ctx, view.signature)
        finally:
            self.models.release(spec.model_name, spec.model_version)

    def _run(self, job: Job, ctx: JobContext, signature) -> None:
        spec = job.spec
        mapping: Mapping[str, str] = dict(spec.input_mapping)
        fs_in, files = self.storage.input_files(spec.input_uri, spec.input_format)
        readers = [DatasetReader(fs_in, f, spec.input_format, signature.inputs, mapping) for f in files]
        total = sum(r.records for r in readers)
        ctx.progress(records_total=total)
        fs_out, out_root = self.storage.open(spec.output_uri, "output.uri")
        writer = DatasetWriter(fs_out, out_root, spec.output_format)
        processed = batches = 0
        for reader in readers:
            ctx.check_cancelled()
            writer.start_part()
            for inputs in reader.batches(spec.batch_size):
                ctx.check_cancelled()
                rows = next(iter(inputs.values())).shape[0]
                try:
                    outputs = self.models.predict_pinned(spec.model_name, spec.model_version, inputs)
                except Exception as err:  # noqa: BLE001 - any model error fails the job with its message
                    ctx.progress(records_failed=rows)
                    raise FailedPrecondition(
                        f"records {processed}..{processed + rows - 1} failed: {getattr(err, 'message', err)}"
                    ) from None
                writer.write(outputs)
                processed += rows
                batches += 1
                ctx.progress(records_processed=processed, batches_completed=batches)
                self.metrics.job_records.labels(spec.team).inc(rows)
        writer.commit(
            {
                "job_id": job.job_id,
                "model": spec.model_name,
                "version": spec.model_version,
                "artifact_sha256": job.digest,
                "records": processed,
                "input_uri": spec.input_uri,
            }
        )
