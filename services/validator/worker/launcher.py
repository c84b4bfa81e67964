"""Starting a process in the sandbox: setpriv → prlimit → bwrap (+ seccomp from inside the worker).

Measured on these hosts (docs/adr/0003-validator-sandbox.md): bwrap alone as root keeps host root,
`unshare --net` alone still reaches host Unix sockets. So the chain is:

1. `setpriv` drops to the sandbox uid/gid (65534), clears groups, inheritable and bounding
   capabilities and sets no_new_privs (only when the service runs as root; otherwise the service
   must already be an unprivileged user).
2. `prlimit` sets RLIMIT_AS / CPU / FSIZE / NOFILE / NPROC / CORE, inherited by everything below.
3. `bwrap --unshare-all --unshare-user --disable-userns --die-with-parent --new-session
   --cap-drop ALL --clearenv`: new user, pid, net, ipc, uts and cgroup namespaces; the file system
   is only the read-only runtime, the read-only inputs, a fresh /proc and /dev and a size-capped
   private tmpfs on /tmp.
4. The worker verifies all that from inside and installs its seccomp filter before it opens the
   artifact (worker/inside/hardening.py).

There is no fallback: when any of this cannot be set up, `SandboxUnavailable` says why and the run
errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from services.validator.domain.ports import SandboxUnavailable

STDERR_TAIL_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class SandboxSettings:
    bwrap: str = "/usr/bin/bwrap"
    setpriv: str = "/usr/bin/setpriv"
    prlimit: str = "/usr/bin/prlimit"
    uid: int = 65534
    gid: int = 65534
    python: str = "/usr/bin/python3.11"
    # Read-only binds at the same path: the interpreter, its stdlib and libraries, the venv.
    runtime_paths: tuple[str, ...] = ()
    # Extra sys.path entries for the worker (e.g. /app/site-packages in the OCI image).
    python_paths: tuple[str, ...] = ()
    max_open_files: int = 256
    max_processes: int = 512
    tmpfs_bytes: int = 64 * 1024 * 1024
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-run limits from the policy (causeway.validator.v1.SandboxLimits)."""

    memory_bytes: int
    cpu_seconds: int
    max_file_bytes: int
    wall_seconds: float


@dataclasses.dataclass(frozen=True)
class Bind:
    host: str
    dest: str


def _describe(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as err:
        return f"{path}: {err.strerror}"
    return f"{path} (mode {stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid})"


def _reachable_by_self(path: str) -> str | None:
    """None if this process can reach `path` (x on every ancestor, r on the leaf); else where not.

    An unprivileged service runs its workers as itself, so what it cannot read they cannot either.
    """
    current = os.path.abspath(path)
    ancestors = []
    while current != "/":
        current = os.path.dirname(current)
        ancestors.append(current)
    for part in reversed(ancestors):
        if not os.access(part, os.X_OK):
            return _describe(part)
    if os.path.lexists(path) and not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
        return _describe(path)
    return None


def _reachable(path: str, uid: int, gid: int) -> str | None:
    """None if `uid`/`gid` can reach `path` (x on every ancestor, r on the leaf); else why not."""
    current = os.path.abspath(path)
    parts = [current]
    while current != "/":
        current = os.path.dirname(current)
        parts.append(current)
    for index, part in enumerate(reversed(parts)):
        try:
            st = os.stat(part)
        except OSError as err:
            return f"{part}: {err.strerror}"
        leaf = index == len(parts) - 1
        need = stat.S_IXOTH  # ancestors: search; the leaf: read (and search for a directory)
        if leaf:
            need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
        if st.st_uid == uid and (st.st_mode >> 6) & need == need:
            continue
        if st.st_gid == gid and (st.st_mode >> 3) & need == need:
            continue
        if st.st_mode & need == need:
            continue
        return f"{part} (mode {stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid})"
    return None


class Sandbox:
    """Builds and starts sandboxed processes; `preflight()` says whether that can work at all."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.as_root = os.geteuid() == 0

    def describe(self) -> str:
        s = self.settings
        who = f"uid {s.uid}" if self.as_root else f"uid {os.getuid()} (service user)"
        return f"bwrap+seccomp, no network, {who}, no capabilities, read-only runtime, private /tmp"

    def preflight(self, extra_paths: Sequence[str] = ()) -> None:
        """Raise SandboxUnavailable naming the first thing that makes the sandbox impossible."""
        s = self.settings
        tools = [("bwrap", s.bwrap, "bubblewrap"), ("prlimit", s.prlimit, "util-linux")]
        if self.as_root:
            tools.append(("setpriv", s.setpriv, "util-linux"))
        elif os.getuid() == 0:
            raise SandboxUnavailable("sandbox unavailable: the service has euid != uid 0; run it as root or as a user")
        for name, path, package in tools:
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise SandboxUnavailable(
                    f"sandbox unavailable: {name} not found or not executable at {path} "
                    f"(install the Debian package {package}); refusing to load models without isolation"
                )
        if not os.path.isfile(s.python):
            raise SandboxUnavailable(f"sandbox unavailable: worker interpreter {s.python} does not exist")
        for path in s.runtime_paths:
            if os.path.abspath(path) == "/tmp" or os.path.abspath(path).startswith("/tmp/"):  # noqa: S108
                raise SandboxUnavailable(
                    f"sandbox unavailable: runtime path {path} is under /tmp, which the sandbox replaces with "
                    "its private tmpfs; put the interpreter and venv elsewhere (e.g. CAUSEWAY_VENV_ROOT=/var/tmp/...)"
                )
        for path in (*s.runtime_paths, *extra_paths):
            # As the service user, a path behind a directory it may not search looks missing: say where.
            if not self.as_root and (why := _reachable_by_self(path)):
                raise SandboxUnavailable(
                    f"sandbox unavailable: the service user uid {os.getuid()} (the workers run as it) "
                    f"cannot read {path}: blocked at {why}"
                )
            if not os.path.exists(path):
                raise SandboxUnavailable(f"sandbox unavailable: runtime path {path} does not exist")
            if self.as_root and (why := _reachable(path, s.uid, s.gid)):
                raise SandboxUnavailable(
                    f"sandbox unavailable: the sandbox user {s.uid}:{s.gid} cannot read {path}: blocked at {why}"
                )

    def command(self, binds: Sequence[Bind], argv: Sequence[str], limits: Limits, env: Mapping[str, str]) -> list[str]:
        s = self.settings
        cmd: list[str] = []
        if self.as_root:
            cmd += [
                s.setpriv,
                f"--reuid={s.uid}",
                f"--regid={s.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        cmd += [
            s.prlimit,
            f"--as={limits.memory_bytes}",
            # soft < hard: the kernel sends SIGXCPU at the soft limit (reported as a CPU-time
            # violation) and SIGKILL only one second later if that is ignored.
            f"--cpu={max(1, int(limits.cpu_seconds))}:{max(1, int(limits.cpu_seconds)) + 1}",
            f"--fsize={limits.max_file_bytes}",
            f"--nofile={s.max_open_files}",
            f"--nproc={s.max_processes}",
            "--core=0",
            "--",
            s.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--hostname",
            "causeway-sandbox",
        ]
        for key, value in sorted(env.items()):
            cmd += ["--setenv", key, value]
        for path in s.runtime_paths:
            cmd += ["--ro-bind", path, path]
        for link in ("/lib", "/lib64", "/bin"):
            if os.path.islink(link):
                cmd += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link) and link != "/bin":
                cmd += ["--ro-bind", link, link]
        # /tmp here is the sandbox's own size-capped tmpfs, not the host's.
        cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(s.tmpfs_bytes), "--tmpfs", "/tmp"]  # noqa: S108
        for bind in binds:
            cmd += ["--ro-bind", bind.host, bind.dest]
        cmd += ["--chdir", "/tmp", "--", *argv]  # noqa: S108 - inside the sandbox
        return cmd

    def environment(self) -> dict[str, str]:
        threads = str(self.settings.threads)
        return {
            "PATH": "/usr/bin",
            "HOME": "/tmp",  # noqa: S108 - the sandbox's private tmpfs
            "TMPDIR": "/tmp",  # noqa: S108
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
        }

    def start(self, binds: Sequence[Bind], argv: Sequence[str], limits: Limits, stdin: bytes) -> SandboxProcess:
        """Start `argv` in the sandbox with `stdin` as its input; the caller reads `proc.stdout`."""
        self.preflight([b.host for b in binds])
        cmd = self.command(binds, argv, limits, self.environment())
        try:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                start_new_session=True,
                close_fds=True,
            )
        except OSError as err:
            raise SandboxUnavailable(f"sandbox unavailable: cannot start {cmd[0]}: {err.strerror}") from err
        return SandboxProcess(popen, stdin, limits.wall_seconds)


@dataclasses.dataclass(frozen=True)
class Exit:
    returncode: int
    killed_by: str  # "" | "wall_time" | "cancelled" | "protocol"
    stderr_tail: str
    seconds: float


class SandboxProcess:
    """A running sandboxed process with a wall-clock watchdog and a bounded stderr tail."""

    def __init__(self, popen: subprocess.Popen, stdin: bytes, wall_seconds: float) -> None:
        assert popen.stdout is not None and popen.stderr is not None  # started with both piped
        self.popen = popen
        self.stdout = popen.stdout
        self.started = time.monotonic()
        self._killed_by = ""
        self._lock = threading.Lock()
        self._stderr = bytearray()
        self._done = threading.Event()
        threading.Thread(target=self._feed, args=(stdin,), daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        threading.Thread(target=self._watchdog, args=(wall_seconds,), daemon=True).start()

    def _feed(self, data: bytes) -> None:
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.write(data)
            self.popen.stdin.close()
        except OSError:
            pass  # the process died before reading its job; its exit says why

    def _drain_stderr(self) -> None:
        stderr = self.popen.stderr
        assert stderr is not None
        for chunk in iter(lambda: stderr.read(8192), b""):
            self._stderr += chunk
            if len(self._stderr) > STDERR_TAIL_BYTES:
                del self._stderr[: len(self._stderr) - STDERR_TAIL_BYTES]

    def _watchdog(self, wall_seconds: float) -> None:
        try:
            self.popen.wait(timeout=wall_seconds)
        except subprocess.TimeoutExpired:
            self.kill("wall_time")
        self._done.set()

    def kill(self, reason: str) -> None:
        """SIGKILL the whole chain; bwrap's --die-with-parent takes the sandboxed tree with it."""
        with self._lock:
            if self.popen.poll() is not None:
                return
            self._killed_by = self._killed_by or reason
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> Exit:
        returncode = self.popen.wait(timeout=timeout)
        self._stderr_thread.join(timeout=5)
        return Exit(
            returncode=returncode,
            killed_by=self._killed_by,
            stderr_tail=bytes(self._stderr).decode("utf-8", "replace"),
            seconds=time.monotonic() - self.started,
        )
