"""Last layer of the sandbox, applied by the worker itself before it opens the artifact.

bwrap (namespaces, binds, no capabilities) and the rlimits are set up from outside; this module
checks that they really are in place (fail closed: a worker that finds itself with capabilities,
as root or with a network interface refuses to run) and installs a seccomp filter that kills the
process on network sockets, program execution and tracing, and refuses new processes. It runs
after the heavy imports (torch, onnxruntime), which need none of that.
"""

from __future__ import annotations

import ctypes.util
import errno
import os
import socket
from typing import Any

# socket(2) families other than AF_UNIX kill the process: there is no network namespace to reach
# anyway, so an attempt is a sign of a malicious artifact and must show up in the report.
KILL_SYSCALLS = ("execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev")
# Refused with EPERM: namespace and mount games, kernel attack surface nobody needs to score a model.
EPERM_SYSCALLS = (
    "fork",
    "vfork",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
)
CLONE_THREAD = 0x00010000


class HardeningError(RuntimeError):
    """The sandbox is not what it should be; the worker must not touch the artifact."""


def _status_fields() -> dict[str, str]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _interfaces() -> list[str]:
    """Network interfaces visible in this network namespace (/proc/net/dev is per namespace)."""
    with open("/proc/net/dev") as dev:
        lines = dev.read().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def verify_isolation() -> dict[str, Any]:
    """Facts about the sandbox as seen from inside; raises HardeningError if one is wrong."""
    fields = _status_fields()
    facts: dict[str, Any] = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
        "cap_eff": fields.get("CapEff", ""),
        "cap_bnd": fields.get("CapBnd", ""),
        "interfaces": _interfaces(),
        "pid": os.getpid(),
    }
    problems = []
    if facts["uid"] == 0 or os.geteuid() == 0:
        problems.append("worker runs as uid 0")
    if int(facts["cap_eff"] or "0", 16) != 0:
        problems.append(f"worker has capabilities (CapEff {facts['cap_eff']})")
    if any(name != "lo" for name in facts["interfaces"]):
        problems.append(f"network interfaces visible: {facts['interfaces']}")
    if problems:
        raise HardeningError("sandbox self-check failed: " + "; ".join(problems))
    return facts


def _import_pyseccomp():
    # pyseccomp looks its libraries up with ctypes.util.find_library, which would run ldconfig in a
    # subprocess; the sandbox has no ld.so.cache and processes are about to be forbidden anyway.
    original = ctypes.util.find_library
    known = {"seccomp": "libseccomp.so.2", "c": "libc.so.6"}
    ctypes.util.find_library = lambda name: known.get(name) or original(name)
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = original
    return pyseccomp


def install_seccomp() -> dict[str, Any]:
    """Install the filter (irrevocable, inherited by threads); returns what it does for the report."""
    sc = _import_pyseccomp()
    flt = sc.SyscallFilter(sc.ALLOW)
    flt.add_rule(sc.KILL_PROCESS, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    for name in KILL_SYSCALLS:
        flt.add_rule(sc.KILL_PROCESS, name)
    for name in EPERM_SYSCALLS:
        flt.add_rule(sc.ERRNO(errno.EPERM), name)
    # Threads are fine (torch and onnxruntime use them); a new process is not. glibc falls back
    # from clone3 (whose flags live in memory a filter cannot read) to clone on ENOSYS.
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    flt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    flt.load()
    return {
        "kill": ["socket(!AF_UNIX)", *KILL_SYSCALLS],
        "eperm": ["clone(!CLONE_THREAD)", *EPERM_SYSCALLS],
        "enosys": ["clone3"],
        "no_new_privs": _status_fields().get("NoNewPrivs", ""),
    }
