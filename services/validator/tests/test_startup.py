"""The validator binary as a process: a bad policy file stops it at start (naming the line), and a
run in flight when it is killed is ERRORED when it comes back (and its worker died with it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import grpc
import pytest

from causeway.validator.v1 import run_pb2
from causeway.validator.v1 import validator_service_pb2 as vpb
from libs.auth.dev_idp import DevIdentityProvider
from libs.testing.processes import ServerProcess
from libs.testing.registry_process import registry_process
from libs.testing.waiting import wait_until
from services.validator.tests.support import models
from services.validator.tests.support.harness import Stack, policies_dir, validator_env
from services.validator.tests.support.workers import is_worker, worker_pids


def validator_binary() -> str:
    root = os.environ.get("RUNFILES_DIR") or os.environ["TEST_SRCDIR"]
    return os.path.join(root, os.environ.get("TEST_WORKSPACE", "causeway_monorepo"), "services/validator/validator")


def process_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "CAUSEWAY_VALIDATOR_PORT": "0", "CAUSEWAY_VALIDATOR_HOST": "127.0.0.1"}


@pytest.fixture
def work():
    path = Path(tempfile.mkdtemp(prefix="causeway-validator-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_bad_policy_file_is_refused_at_start_naming_the_line(tmp_path, work):
    idp = DevIdentityProvider(tmp_path / "idp")
    policies = policies_dir(tmp_path)
    text = (policies / "prod.yaml").read_text()
    (policies / "prod.yaml").write_text(text.replace("max_file_bytes: 64MiB", "max_file_bytes: a lot", 1))
    env = validator_env(tmp_path, idp, "127.0.0.1:1", policies, work)
    done = subprocess.run([validator_binary()], env=process_env(env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    line = next(i for i, t in enumerate((policies / "prod.yaml").read_text().splitlines(), 1) if "a lot" in t)
    assert f"{policies / 'prod.yaml'}:{line}: sandbox.max_file_bytes must be a size" in done.stderr


def test_a_run_in_flight_at_a_crash_is_errored_at_restart(tmp_path, work):
    idp = DevIdentityProvider(tmp_path / "idp")
    with registry_process(tmp_path / "registry", idp) as registry:
        registry_channel = grpc.insecure_channel(registry.address)
        env = process_env(validator_env(tmp_path, idp, registry.address, policies_dir(tmp_path), work))
        first = ServerProcess([validator_binary()], env=env, ready_timeout=120)
        first.start()
        try:
            channel = grpc.insecure_channel(first.address)
            stack = Stack(idp, registry, registry_channel, None, None, channel, env)
            version = stack.register("crashy", models.torchscript(models.NeverReturns()), "torchscript", tags={})
            run = stack.start("crashy", version, "slow")
            request = vpb.WatchValidationRunRequest(run_id=run.run_id)
            for item in stack.validator.WatchValidationRun(request, metadata=stack.md(), timeout=120):
                if item.event.check_started.name == "signature":
                    break
            ours = worker_pids(first.pid)  # this validator's workers, not another test's
            assert ours, "the worker should be busy in the sandbox"
            first.signal(signal.SIGKILL)
            first.wait(30)
            channel.close()
        finally:
            first.kill()
        # bwrap's --die-with-parent takes the worker down
        wait_until(lambda: not any(map(is_worker, ours)), message=lambda: f"workers alive: {ours}")
        with ServerProcess([validator_binary()], env=env, ready_timeout=120) as second:
            stack.channel = grpc.insecure_channel(second.address)
            again = stack.validator.GetValidationRun(
                vpb.GetValidationRunRequest(run_id=run.run_id), metadata=stack.md()
            ).run
            assert again.state == run_pb2.RUN_STATE_ERRORED and "restarted" in again.message
            events = list(stack.validator.WatchValidationRun(request, metadata=stack.md(), timeout=30))
            assert events[-1].event.state_changed.state == run_pb2.RUN_STATE_ERRORED
            assert list((work / "runs").iterdir()) == []  # the crashed run's staged files are gone
            stack.channel.close()
        registry_channel.close()
