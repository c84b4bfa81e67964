"""A repository rule that builds one Python venv from the hash-locked lock file and registers it
as the Python toolchain (docs/adr/0001-build.md).

The venv lives outside Bazel's output base, keyed by the sha256 of the lock and the interpreter,
so that a second checkout, the image rule and the sandboxed validator worker all share one
read-only copy. The toolchain's interpreter is a tiny launcher script that `exec`s the venv's
python: putting the venv's thousands of files into every test's runfiles would cost seconds of
sandbox setup per action. The launcher embeds the lock's sha256, so a lock change invalidates
every cached test result.
"""

_DEFAULT_ROOTS = ["/var/cache/causeway/venvs"]

def _venv_root(rctx):
    root = rctx.os.environ.get("CAUSEWAY_VENV_ROOT", "")
    if root:
        return root
    for candidate in _DEFAULT_ROOTS:
        res = rctx.execute(["mkdir", "-p", candidate])
        if res.return_code == 0 and rctx.execute(["test", "-w", candidate]).return_code == 0:
            return candidate
    home = rctx.os.environ.get("HOME", "/tmp")
    return home + "/.cache/causeway/venvs"

def _python_venv_impl(rctx):
    lock = rctx.path(rctx.attr.lock)
    maker = rctx.path(rctx.attr._make_venv)
    python = rctx.attr.python
    if rctx.execute(["test", "-x", python]).return_code != 0:
        fail("%s not found: install Debian's python3.11 and python3.11-venv (run tools/bootstrap.sh)" % python)

    root = _venv_root(rctx)
    res = rctx.execute(
        [python, str(maker), "--lock", str(lock), "--python", python, "--root", root],
        timeout = 3600,
        quiet = False,
    )
    if res.return_code != 0:
        fail("building the Python venv failed:\n" + res.stdout + res.stderr)
    lines = res.stdout.strip().split("\n")
    venv_dir = lines[-1].strip()
    lock_sha = venv_dir.split("/")[-1]

    rctx.file(
        "python3",
        content = "\n".join([
            "#!/bin/sh",
            "# Causeway toolchain launcher (tools/bazel/python/venv.bzl).",
            "# lock+interpreter key: %s" % lock_sha,
            'exec "%s/bin/python3" "$@"' % venv_dir,
            "",
        ]),
        executable = True,
    )
    rctx.file("venv_path.txt", venv_dir + "\n")
    rctx.file(
        "BUILD.bazel",
        content = """
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

exports_files(["python3", "venv_path.txt"])

py_runtime(
    name = "py3_runtime",
    interpreter = ":python3",
    python_version = "PY3",
    stub_shebang = "#!{python}",
    visibility = ["//visibility:public"],
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""".format(python = python),
    )

python_venv = repository_rule(
    implementation = _python_venv_impl,
    attrs = {
        "lock": attr.label(mandatory = True, allow_single_file = True),
        "python": attr.string(default = "/usr/bin/python3.11"),
        "_make_venv": attr.label(default = "//tools/bazel/python:make_venv.py"),
    },
    environ = ["CAUSEWAY_VENV_ROOT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"],
)
