"""The registered toolchain is the venv built from the lock file, and nothing else."""

import importlib.metadata
import os
import re
import sys
from pathlib import Path


def _lock_pins() -> dict[str, str]:
    lock = Path(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"], "third_party/python/requirements_lock.txt")
    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_interpreter_is_python_311_in_a_venv():
    assert sys.version_info[:2] == (3, 11)
    assert sys.prefix != sys.base_prefix, "tests must run in the locked venv, not the system Python"


def test_installed_versions_match_the_lock():
    pins = _lock_pins()
    assert len(pins) > 50
    for name in ["grpcio", "protobuf", "numpy", "pytest", "mlflow", "torch"]:
        assert importlib.metadata.version(name) == pins[name], name


def test_the_venv_holds_exactly_the_lock():
    """Nothing more (no resolver added anything) and nothing else (every pin as locked)."""
    pins = _lock_pins()
    found = {
        dist.metadata["Name"].lower().replace("_", "-").replace(".", "-"): dist.version
        for dist in importlib.metadata.distributions()
    }
    normalized = {name.replace(".", "-"): version for name, version in pins.items()}
    extra = set(found) - set(normalized) - {"pip", "setuptools"}
    assert not extra, f"installed but not locked: {sorted(extra)}"
    wrong = {name: (found[name], pin) for name, pin in normalized.items() if found.get(name) != pin}
    assert not wrong, f"installed != locked (installed, locked): {wrong}"


def test_torch_is_the_cpu_build():
    import torch

    assert torch.__version__.endswith("+cpu")
