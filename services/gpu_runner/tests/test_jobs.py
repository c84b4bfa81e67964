"""The batch-job scheduler: quotas, weighted fair share, priorities, positions, cancel, idempotency."""

import threading

import pytest

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound
from libs.testing.waiting import wait_until
from services.gpu_runner.domain.jobs import JobScheduler, JobSpec, JobState, Priority, QuotaExceeded, Submitter

ALICE = Submitter("alice")
ADMIN = Submitter("root", roles=("platform-admin",))


class Workload:
    """An executor whose jobs run until released; records the order jobs started in."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def __call__(self, job, ctx) -> None:
        gate = threading.Event()
        with self.lock:
            self.release[job.job_id] = gate
            self.started.append(job.job_id)
        while not gate.wait(0.01):
            ctx.check_cancelled()
        if job.spec.input_uri == "fail":
            raise FailedPrecondition("the input is broken")
        ctx.progress(records_processed=10, records_total=10, batches_completed=1)

    def finish(self, job_id: str) -> None:
        wait_until(lambda: job_id in self.release)
        self.release[job_id].set()


def spec(team: str, priority: Priority = Priority.NORMAL, request_id: str = "", uri: str = "in") -> JobSpec:
    return JobSpec("m", 1, team, uri, "PARQUET", "out", "PARQUET", 16, priority, request_id=request_id)


def _state(scheduler, job_id):
    return scheduler.get(job_id).state


def test_jobs_run_and_succeed_within_the_slots():
    work = Workload()
    scheduler = JobScheduler(2, work, default_slots=2)
    a = scheduler.submit(spec("onc"), "d", ALICE)
    b = scheduler.submit(spec("onc"), "d", ALICE)
    c = scheduler.submit(spec("onc"), "d", ALICE)
    wait_until(lambda: len(work.started) == 2)
    assert scheduler.get(c.job_id).state is JobState.QUEUED and scheduler.get(c.job_id).queue_position == 1
    assert scheduler.usage() == (2, 1)
    work.finish(a.job_id)
    wait_until(lambda: len(work.started) == 3)
    for job in (b, c):
        work.finish(job.job_id)
    wait_until(lambda: all(_state(scheduler, j.job_id) is JobState.SUCCEEDED for j in (a, b, c)))
    done = scheduler.get(a.job_id)
    assert done.progress.records_processed == 10 and done.start_time and done.finish_time
    assert scheduler.usage() == (0, 0)


def test_a_team_over_its_quota_queues_and_never_starves_another_team():
    work = Workload()
    scheduler = JobScheduler(3, work, default_slots=2)
    greedy = [scheduler.submit(spec("greedy"), "d", ALICE) for _ in range(6)]
    wait_until(lambda: len(work.started) == 2)
    # The scheduler dispatches under its lock within submit(), so once the six submissions returned
    # what runs is settled: two of greedy's jobs, with the third slot left free (its quota is 2).
    assert scheduler.count(JobState.RUNNING) == 2 and scheduler.usage() == (2, 4)
    assert len(work.started) == 2
    assert scheduler.quota("greedy").slots_in_use == 2 and scheduler.quota("greedy").queued_jobs == 4
    late = scheduler.submit(spec("late"), "d", ALICE)
    wait_until(lambda: len(work.started) == 3)
    assert work.started[2] == late.job_id  # the idle slot goes to the other team at once
    work.finish(greedy[0].job_id)
    wait_until(lambda: len(work.started) == 4)
    assert work.started[3] == greedy[2].job_id


def test_fair_share_prefers_the_team_using_the_smallest_share_of_its_quota():
    work = Workload()
    scheduler = JobScheduler(2, work, default_slots=2)
    a = [scheduler.submit(spec("a"), "d", ALICE) for _ in range(3)]
    wait_until(lambda: len(work.started) == 2)  # a holds both slots (nobody else waited)
    b = [scheduler.submit(spec("b"), "d", ALICE) for _ in range(2)]
    assert scheduler.get(b[0].job_id).queue_position == 1  # b holds 0 of 2, a holds 2 of 2
    assert scheduler.get(a[2].job_id).queue_position == 3
    work.finish(a[0].job_id)
    wait_until(lambda: len(work.started) == 3)
    assert work.started[2] == b[0].job_id
    work.finish(a[1].job_id)
    wait_until(lambda: len(work.started) == 4)
    assert work.started[3] == a[2].job_id  # now a holds 0 of 2 and b 1 of 2: a's turn
    for job in a + b:
        work.finish(job.job_id)


def test_priority_orders_a_teams_own_queue():
    work = Workload()
    scheduler = JobScheduler(1, work, default_slots=1)
    first = scheduler.submit(spec("t"), "d", ALICE)
    low = scheduler.submit(spec("t", Priority.LOW), "d", ALICE)
    normal = scheduler.submit(spec("t"), "d", ALICE)
    high = scheduler.submit(spec("t", Priority.HIGH), "d", ALICE)
    assert [scheduler.get(j.job_id).queue_position for j in (high, normal, low)] == [1, 2, 3]
    for job in (first, high, normal, low):
        work.finish(job.job_id)
    wait_until(lambda: len(work.started) == 4)
    assert work.started == [first.job_id, high.job_id, normal.job_id, low.job_id]


def test_queue_limit_is_resource_exhausted_with_the_numbers():
    work = Workload()
    scheduler = JobScheduler(1, work, default_slots=1, default_queued=2)
    scheduler.set_quota("t", 0, 2, ADMIN, "freeze the team")  # nothing starts: all queue
    scheduler.submit(spec("t"), "d", ALICE)
    scheduler.submit(spec("t"), "d", ALICE)
    with pytest.raises(QuotaExceeded) as err:
        scheduler.submit(spec("t"), "d", ALICE)
    assert (err.value.limit, err.value.limit_value, err.value.current_value) == ("max_queued_jobs", 2, 2)
    assert work.started == []
    scheduler.set_quota("t", 1, 2, ADMIN, "unfreeze")
    wait_until(lambda: len(work.started) == 1)


def test_cancel_queued_and_running_jobs():
    work = Workload()
    scheduler = JobScheduler(1, work)
    running = scheduler.submit(spec("t"), "d", ALICE)
    queued = scheduler.submit(spec("t"), "d", ALICE)
    wait_until(lambda: len(work.started) == 1)
    with pytest.raises(InvalidArgument, match="reason"):
        scheduler.cancel(queued.job_id, " ")
    assert scheduler.cancel(queued.job_id, "not needed").state is JobState.CANCELLED
    cancelled = scheduler.cancel(running.job_id, "wrong input")
    assert cancelled.state is JobState.CANCELLED and cancelled.message == "cancelled: wrong input"
    wait_until(lambda: scheduler.usage() == (0, 0))  # the worker noticed and gave its slot back
    with pytest.raises(FailedPrecondition, match="already CANCELLED"):
        scheduler.cancel(running.job_id, "again")
    with pytest.raises(NotFound):
        scheduler.get("nope")


def test_failures_are_recorded_and_the_slot_is_freed():
    work = Workload()
    scheduler = JobScheduler(1, work)
    bad = scheduler.submit(spec("t", uri="fail"), "d", ALICE)
    work.finish(bad.job_id)
    wait_until(lambda: _state(scheduler, bad.job_id) is JobState.FAILED)
    assert scheduler.get(bad.job_id).message == "the input is broken"
    assert scheduler.usage() == (0, 0)


def test_submission_is_idempotent_by_request_id():
    scheduler = JobScheduler(1, Workload())
    scheduler.set_quota("t", 0, 5, ADMIN, "hold")
    first = scheduler.submit(spec("t", request_id="r-1"), "d", ALICE)
    again = scheduler.submit(spec("t", request_id="r-1"), "d", ALICE)
    assert again.job_id == first.job_id and len(scheduler.list()) == 1
    with pytest.raises(InvalidArgument, match="already used"):
        scheduler.submit(spec("t", Priority.HIGH, request_id="r-1"), "d", ALICE)


def test_watch_returns_on_every_change():
    work = Workload()
    scheduler = JobScheduler(1, work)
    job = scheduler.submit(spec("t"), "d", ALICE)
    seen = scheduler.get(job.job_id)
    work.finish(job.job_id)
    states = []
    while not seen.state.terminal:
        seen = scheduler.watch(job.job_id, seen.revision, timeout=5)
        states.append(seen.state)
    assert states[-1] is JobState.SUCCEEDED


def test_quota_validation_and_listing():
    scheduler = JobScheduler(2, Workload(), default_slots=1, default_queued=4)
    assert scheduler.quota("new").max_concurrent_slots == 1 and scheduler.quota("new").updated_by is None
    with pytest.raises(InvalidArgument, match="exceeds the runner's 2 batch slots"):
        scheduler.set_quota("t", 3, 1, ADMIN, "more")
    with pytest.raises(InvalidArgument, match="negative"):
        scheduler.set_quota("t", -1, 1, ADMIN, "less")
    with pytest.raises(InvalidArgument, match="reason"):
        scheduler.set_quota("t", 1, 1, ADMIN, "")
    scheduler.set_quota("b", 2, 8, ADMIN, "bigger team")
    scheduler.set_quota("a", 1, 1, ADMIN, "smaller team")
    assert [q.team for q in scheduler.quotas()] == ["a", "b"]
    assert scheduler.quota("b").updated_by == ADMIN
