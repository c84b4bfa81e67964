"""SIGTERM lets in-flight RPCs finish, refuses new ones, and exits 0 (a real subprocess)."""

import os
import signal
import sys
import threading
import time

import grpc
import pytest

from libs.grpc_server.tests import echo
from libs.testing.processes import ServerProcess


def _server(**env) -> ServerProcess:
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **env)
    return ServerProcess([sys.executable, "-m", "libs.grpc_server.tests.echo_server"], env=child_env)


def test_sigterm_drains_in_flight_rpcs_then_exits_zero():
    with _server(ECHO_GRACE_SECONDS="10") as proc:
        chan = grpc.insecure_channel(proc.address)
        unary, _, _ = echo.stubs(chan)
        result = {}

        def slow_call():
            try:
                result["value"] = unary(b"slow:1.5", timeout=20)
            except grpc.RpcError as err:
                result["error"] = err

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)  # the slow RPC is now in flight
        proc.signal(signal.SIGTERM)
        time.sleep(0.2)
        with grpc.insecure_channel(proc.address) as late:
            late_unary, _, _ = echo.stubs(late)
            with pytest.raises(grpc.RpcError) as err:
                late_unary(b"late", timeout=3)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        caller.join(timeout=20)
        assert result == {"value": b"slow:1.5"}
        assert proc.wait(timeout=15) == 0
        assert [x["signal"] for x in proc.log_entries("shutdown requested")] == ["SIGTERM"]
        assert proc.log_entries("stopped")


def test_bad_configuration_fails_fast_with_a_clear_message():
    proc = _server(ECHO_PORT="not-a-port", ECHO_MAX_MESSAGE_BYTES="12")
    with pytest.raises(RuntimeError) as err:
        proc.start()
    text = str(err.value)
    assert "ECHO_PORT='not-a-port': expected an integer" in text
    assert "ECHO_MAX_MESSAGE_BYTES='12': must be at least 1024" in text
    assert proc.proc.returncode != 0
