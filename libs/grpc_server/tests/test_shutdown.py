"""SIGTERM lets in-flight RPCs finish, refuses new ones, and exits 0 (a real subprocess)."""

import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import grpc
import pytest

from libs.grpc_server.tests import echo
from libs.testing.processes import ServerProcess
from libs.testing.waiting import wait_until


def _server(**env: str) -> ServerProcess:
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **env)
    return ServerProcess([sys.executable, "-m", "libs.grpc_server.tests.echo_server"], env=child_env)


def _new_rpc(address: str) -> grpc.StatusCode:
    """The status of one new unary RPC from a new client (a new connection, not a shared one)."""
    # Channels to one address share their connections by default, and a stream started on the
    # draining connection of the in-flight RPC races the server's GOAWAY (CANCELLED, not refused).
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as late:
        late_unary, _, _ = echo.stubs(late)
        try:
            late_unary(b"late", timeout=10)
        except grpc.RpcError as err:
            return err.code()
        return grpc.StatusCode.OK


def _listening(address: str) -> bool:
    """Whether the server still takes TCP connections (a reset while its listener closes is a yes).

    Probing with connections rather than RPCs: an RPC that races the stop may be CANCELLED or left
    hanging by gRPC, which says nothing about how the server treats RPCs once it is draining.
    """
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=10):
            return True
    except ConnectionResetError:
        return True
    except ConnectionRefusedError:
        return False


def test_sigterm_drains_in_flight_rpcs_then_exits_zero() -> None:
    with _server(ECHO_GRACE_SECONDS="60") as proc:
        chan = grpc.insecure_channel(proc.address)
        _, _, total = echo.stubs(chan)
        result: dict[str, object] = {}
        release = threading.Event()

        def chunks() -> Iterator[bytes]:
            yield b"abc"
            release.wait(120)  # the stream stays open, so the RPC stays in flight, until the test is done
            yield b"de"

        def streaming_call() -> None:
            try:
                result["value"] = total(chunks(), timeout=120)
            except grpc.RpcError as err:
                result["error"] = err

        caller = threading.Thread(target=streaming_call)
        caller.start()
        try:
            wait_until(lambda: proc.log_entries("first chunk received"), message=proc.output)
            proc.signal(signal.SIGTERM)
            wait_until(lambda: not _listening(proc.address), message=proc.output)
            assert _new_rpc(proc.address) is grpc.StatusCode.UNAVAILABLE
            assert caller.is_alive() and result == {}  # still in flight while new RPCs are refused
        finally:
            release.set()
        caller.join(timeout=60)
        assert result == {"value": b"5"}  # the in-flight RPC got its second chunk after SIGTERM
        assert proc.wait(timeout=60) == 0
        assert [x["signal"] for x in proc.log_entries("shutdown requested")] == ["SIGTERM"]
        assert proc.log_entries("stopped")


def test_bad_configuration_fails_fast_with_a_clear_message() -> None:
    proc = _server(ECHO_PORT="not-a-port", ECHO_MAX_MESSAGE_BYTES="12")
    with pytest.raises(RuntimeError) as err:
        proc.start()
    text = str(err.value)
    assert "ECHO_PORT='not-a-port': expected an integer" in text
    assert "ECHO_MAX_MESSAGE_BYTES='12': must be at least 1024" in text
    assert proc.proc is not None and proc.proc.returncode != 0
