"""The runner's own Prometheus metrics, next to the RED metrics of libs/grpc_server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DELAY_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)


class RunnerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.batch_rows = Histogram(
            "runner_batch_rows",
            "Rows per forward pass formed by dynamic batching.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "runner_batch_requests", "Requests merged per forward pass.", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "runner_queue_seconds",
            "Time the oldest request of a batch waited.",
            ["model"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.model_memory = Gauge(
            "runner_model_memory_bytes", "Device memory a loaded model holds.", ["model"], registry=r
        )
        self.budget = Gauge("runner_memory_budget_bytes", "Device memory budget for models.", ["device"], registry=r)
        self.used = Gauge("runner_memory_used_bytes", "Device memory loaded models hold.", ["device"], registry=r)
        self.loads = Counter("runner_model_loads", "Model load attempts by outcome.", ["outcome"], registry=r)
        self.evictions = Counter("runner_model_evictions", "Idle models evicted to make room.", registry=r)
        self.jobs = Gauge("runner_batch_jobs", "Batch jobs by state.", ["state"], registry=r)
        self.job_records = Counter("runner_batch_job_records", "Records processed by batch jobs.", ["team"], registry=r)

    def on_batch(self, model: str):
        # Resolved once per model: labels() is a locked lookup, and this runs after every batch.
        batch_requests = self.batch_requests.labels(model)
        batch_rows = self.batch_rows.labels(model)
        queue_seconds = self.queue_seconds.labels(model)

        def record(requests: int, rows: int, waited: float) -> None:
            batch_requests.observe(requests)
            batch_rows.observe(rows)
            queue_seconds.observe(waited)

        return record
