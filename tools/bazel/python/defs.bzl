"""Python macros shared by every package: `py_pytest` runs pytest on a test's sources."""

def py_pytest(name, srcs, deps = [], data = [], env = {}, tags = [], size = "small", run_as = "", **kwargs):
    """A py_test that runs pytest over `srcs` (test files named test_*.py).

    Test tiers are tags (see docs/STYLE.md): `size = "small"` for unit tests next to the code,
    "medium" for tests that start real servers, and tag "slow" for what `--config=quick` skips.

    `run_as = "root"` makes the target fail unless Bazel runs it as root; `run_as = "<uid>"` runs
    the tests as that unprivileged uid (tools/bazel/python/pytest_main.py).
    """
    files = ",".join([native.package_name() + "/" + s for s in srcs if not s.startswith(":")])
    all_env = {"CAUSEWAY_PYTEST_FILES": files}
    if run_as:
        all_env["CAUSEWAY_TEST_USER"] = run_as
    all_env.update(env)
    native.py_test(
        name = name,
        srcs = srcs + ["//tools/bazel/python:pytest_main.py"],
        main = "//tools/bazel/python:pytest_main.py",
        deps = deps,
        data = data,
        env = all_env,
        tags = tags,
        size = size,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
