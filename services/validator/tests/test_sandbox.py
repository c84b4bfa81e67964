"""The sandbox, measured layer by layer from inside (runs as root outside Bazel's sandbox).

Each test runs real code in the real sandbox and checks what it could and could not do: the
namespaces and binds alone (no seccomp) must already block the network and the host's files; the
seccomp filter must kill network, exec and ptrace attempts on top; the rlimits must bite.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from services.validator.domain.ports import SandboxUnavailable
from services.validator.tests.support.workers import SANDBOX_UID
from services.validator.worker import runtime
from services.validator.worker.inside import hardening
from services.validator.worker.launcher import Bind, Limits, Sandbox, SandboxSettings

LIMITS = Limits(memory_bytes=2 << 30, cpu_seconds=30, max_file_bytes=1 << 20, wall_seconds=60)
PYTHON = runtime.default_python()


@pytest.fixture(scope="module")
def work():
    path = Path(tempfile.mkdtemp(prefix="causeway-sbx-test-", dir="/tmp"))
    runtime.make_private_dir(path, SANDBOX_UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxSettings(python=PYTHON, runtime_paths=runtime.default_runtime_paths(PYTHON)))


@pytest.fixture(scope="module")
def code_dir(work) -> Path:
    return runtime.stage_worker_code(work, SANDBOX_UID)


def run(sandbox: Sandbox, code: str, *, limits: Limits = LIMITS, binds=(), seccomp_dir: Path | None = None):
    """Run `code` in the sandbox; with `seccomp_dir`, after the worker's own hardening."""
    prefix = ""
    binds = list(binds)
    if seccomp_dir is not None:
        binds.append(Bind(str(seccomp_dir), runtime.MOUNT))
        prefix = (
            "import sys; sys.path.insert(0, '/opt/validator')\n"
            "from validator_worker import hardening\n"
            "hardening.verify_isolation(); hardening.install_seccomp()\n"
            "print('HARDENED', flush=True)\n"
        )
    proc = sandbox.start(binds, [PYTHON, "-I", "-c", prefix + textwrap.dedent(code)], limits, b"")
    out = proc.stdout.read()
    return proc.wait(timeout=120), out.decode()


def test_identity_capabilities_view_and_limits(sandbox):
    ended, out = run(
        sandbox,
        """
        import json, os, resource, socket
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        def writable(p):
            try:
                open(p, "w").close(); return True
            except OSError:
                return False
        print(json.dumps({
            "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
            "cap_bnd": status["CapBnd"].strip(),
            "no_new_privs": status["NoNewPrivs"].strip(),
            "root": sorted(os.listdir("/")), "tmp": os.listdir("/tmp"),
            "interfaces": [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]],
            "pids": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            "hostname": socket.gethostname(),
            "home_visible": os.path.exists("/root") or os.path.exists("/home") or os.path.exists("/etc/shadow"),
            "runtime_writable": writable("/usr/lib/python3.11/pwned.py"),
            "as": resource.getrlimit(resource.RLIMIT_AS), "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
            "cpu": resource.getrlimit(resource.RLIMIT_CPU), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
            "nproc": resource.getrlimit(resource.RLIMIT_NPROC), "core": resource.getrlimit(resource.RLIMIT_CORE),
            "env": sorted(os.environ),
        }))
        """,
    )
    assert ended.returncode == 0, ended.stderr_tail
    facts = json.loads(out)
    assert (facts["uid"], facts["euid"], facts["gid"], facts["groups"]) == (SANDBOX_UID, SANDBOX_UID, SANDBOX_UID, [])
    assert int(facts["cap_eff"], 16) == int(facts["cap_prm"], 16) == int(facts["cap_bnd"], 16) == 0
    assert facts["no_new_privs"] == "1"
    assert facts["interfaces"] == ["lo"]
    assert facts["hostname"] == "causeway-sandbox"
    assert len(facts["pids"]) <= 3  # its own pid namespace: bwrap's init, python (and nothing of the host)
    assert not facts["home_visible"] and not facts["runtime_writable"]
    assert set(facts["root"]) <= {"usr", "var", "lib", "lib64", "bin", "proc", "dev", "tmp", "opt", "input"}
    assert facts["tmp"] == []
    assert facts["as"] == [LIMITS.memory_bytes] * 2
    assert facts["fsize"] == [LIMITS.max_file_bytes] * 2
    assert facts["cpu"][0] == LIMITS.cpu_seconds
    assert facts["nofile"] == [256, 256] and facts["nproc"] == [512, 512] and facts["core"] == [0, 0]
    assert "PATH" in facts["env"] and not any(k.startswith(("CAUSEWAY", "BAZEL", "TEST_")) for k in facts["env"])


@pytest.fixture
def listeners():
    """A host TCP listener on loopback, a host Unix socket and a host abstract socket."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    folder = Path(tempfile.mkdtemp(prefix="causeway-sock-", dir="/tmp"))
    os.chmod(folder, 0o777)  # noqa: S103 - on purpose: the sandbox user could reach it if it were visible
    unix = socket.socket(socket.AF_UNIX)
    unix_path = str(folder / "host.sock")
    unix.bind(unix_path)
    os.chmod(unix_path, 0o777)  # noqa: S103 - same
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"causeway-test-{uuid.uuid4().hex}"
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    yield {
        "tcp": tcp,
        "unix": unix,
        "abstract": abstract,
        "port": tcp.getsockname()[1],
        "unix_path": unix_path,
        "abstract_name": abstract_name,
        "folder": folder,
    }
    for s in (tcp, unix, abstract):
        s.close()
    shutil.rmtree(folder, ignore_errors=True)


def nobody_connected(listeners) -> bool:
    ready, _, _ = select.select([listeners["tcp"], listeners["unix"], listeners["abstract"]], [], [], 0.5)
    return ready == []


def test_network_and_host_sockets_are_unreachable_by_namespaces_alone(sandbox, listeners):
    ended, out = run(
        sandbox,
        f"""
        import socket
        attempts = [(socket.AF_INET, ("127.0.0.1", {listeners["port"]})), (socket.AF_INET, ("10.0.0.1", 80)),
                    (socket.AF_INET6, ("::1", {listeners["port"]})), (socket.AF_UNIX, {listeners["unix_path"]!r}),
                    (socket.AF_UNIX, "\\0" + {listeners["abstract_name"]!r})]
        for family, address in attempts:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(2)
            try:
                s.connect(address)
                print("CONNECTED", address)
            except OSError as err:
                print("refused", type(err).__name__)
        """,
    )
    assert ended.returncode == 0, ended.stderr_tail
    assert "CONNECTED" not in out and out.count("refused") == 5
    assert nobody_connected(listeners)


def test_tmp_is_private_and_inputs_are_read_only(sandbox, work):
    marker = f"/tmp/causeway-escape-{uuid.uuid4().hex}"
    data = work / "input.bin"
    data.write_bytes(b"weights")
    runtime.seal_file(data, SANDBOX_UID)
    ended, out = run(
        sandbox,
        f"""
        open({marker!r}, "w").write("inside")
        print(open("/input/model.bin").read())
        try:
            open("/input/model.bin", "a").write("tampered")
            print("WROTE")
        except OSError as err:
            print("read-only", err.errno)
        """,
        binds=[Bind(str(data), "/input/model.bin")],
    )
    assert ended.returncode == 0, ended.stderr_tail
    assert "weights" in out and "read-only" in out and "WROTE" not in out
    assert not os.path.exists(marker)
    assert data.read_bytes() == b"weights"


@pytest.mark.parametrize(
    "action",
    [
        "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
        "import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)",
        "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)",
        "import os; os.execv('/usr/bin/python3.11', ['python3.11', '-c', 'print(1)'])",
        "import ctypes; ctypes.CDLL(None, use_errno=True).syscall(101, 0, 1, 0, 0)",  # ptrace(TRACEME)
    ],
)
def test_seccomp_kills_network_exec_and_ptrace(sandbox, code_dir, action):
    ended, out = run(sandbox, action + "\nprint('SURVIVED')", seccomp_dir=code_dir)
    assert "HARDENED" in out and "SURVIVED" not in out
    assert ended.returncode == 128 + signal.SIGSYS


def test_seccomp_refuses_new_processes_and_namespaces_but_not_threads(sandbox, code_dir):
    ended, out = run(
        sandbox,
        """
        import ctypes, os, threading
        box = []
        t = threading.Thread(target=lambda: box.append("thread ran")); t.start(); t.join()
        print(box[0])
        libc = ctypes.CDLL(None, use_errno=True)
        def unshare():
            if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                raise OSError(ctypes.get_errno(), "unshare")
        for name, call in (("fork", os.fork), ("unshare", unshare)):
            try:
                call(); print("ALLOWED", name)
            except OSError as err:
                print("refused", name, err.errno)
        """,
        seccomp_dir=code_dir,
    )
    assert ended.returncode == 0, ended.stderr_tail
    assert "thread ran" in out and "ALLOWED" not in out and out.count("refused") == 2


def test_rlimits_bite(sandbox):
    small = Limits(memory_bytes=512 << 20, cpu_seconds=2, max_file_bytes=1 << 20, wall_seconds=60)
    ended, out = run(
        sandbox,
        """
        import os
        try:
            bytearray(1 << 30); print("ALLOCATED")
        except MemoryError:
            print("memory refused")
        try:
            open("/tmp/big", "wb").write(b"x" * (2 << 20)); print("WROTE")
        except OSError as err:
            print("file refused", err.errno)
        handles = []
        try:
            while True:
                handles.append(open("/dev/null"))
        except OSError:
            print("files", len(handles))
        """,
        limits=small,
    )
    assert ended.returncode == 0, ended.stderr_tail
    assert "memory refused" in out and "file refused 27" in out  # EFBIG
    assert int(out.split("files ")[1].split()[0]) < 256
    ended, _ = run(sandbox, "while True: pass", limits=small)
    assert ended.returncode == 128 + signal.SIGXCPU
    quick = Limits(memory_bytes=512 << 20, cpu_seconds=30, max_file_bytes=1 << 20, wall_seconds=2)
    ended, _ = run(sandbox, "import time; time.sleep(60)", limits=quick)
    assert ended.killed_by == "wall_time" and ended.seconds < 10


def test_fail_closed_when_the_sandbox_cannot_be_built(work):
    missing = Sandbox(SandboxSettings(bwrap="/nonexistent/bwrap", python=PYTHON, runtime_paths=(PYTHON,)))
    with pytest.raises(SandboxUnavailable, match="bwrap not found or not executable at /nonexistent/bwrap"):
        missing.start([], [PYTHON, "-c", "print(1)"], LIMITS, b"")
    runtime_in_tmp = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        in_tmp = Sandbox(SandboxSettings(python=PYTHON, runtime_paths=(PYTHON, str(runtime_in_tmp))))
        with pytest.raises(SandboxUnavailable, match=f"runtime path {runtime_in_tmp} is under /tmp"):
            in_tmp.start([], [PYTHON, "-c", "print(1)"], LIMITS, b"")
    finally:
        runtime_in_tmp.rmdir()
    unreachable = Sandbox(SandboxSettings(python=PYTHON, runtime_paths=runtime.default_runtime_paths(PYTHON)))
    hidden = Path(tempfile.mkdtemp(dir="/tmp"))
    (hidden / "x").write_text("x")
    # Root's workers run as the sandbox user: a 0700 directory of the service's stops them. An
    # unprivileged service's workers run as the service itself: only a directory it may not
    # search stops them.
    mode = 0o700 if os.geteuid() != SANDBOX_UID else 0o000
    os.chmod(hidden, mode)
    try:
        with pytest.raises(SandboxUnavailable, match=f"cannot read {hidden}/x: blocked at {hidden} \\(mode {mode:04o}"):
            unreachable.preflight([str(hidden / "x")])
    finally:
        os.chmod(hidden, 0o700)
        shutil.rmtree(hidden)


def test_the_worker_refuses_to_run_outside_a_sandbox():
    # Here (host network; as root or as the service user) the worker's self-check must refuse
    # before touching any artifact.
    expected = "uid 0" if os.geteuid() == 0 else "network interfaces visible"
    with pytest.raises(hardening.HardeningError, match=expected):
        hardening.verify_isolation()
