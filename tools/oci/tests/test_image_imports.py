"""tools/oci/image_imports.py: finds every import (lazy ones too) and reports what is missing."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tools.oci import image_imports

SCRIPT = Path(image_imports.__file__)


def _modules(source: str) -> set[str]:
    return image_imports.imported_modules(ast.parse(textwrap.dedent(source)))


def test_imports_inside_functions_count_and_guarded_optional_ones_do_not():
    found = _modules(
        """
        from __future__ import annotations
        import json, os.path
        from collections import abc
        from . import sibling

        def lazy():
            import torch.nn
            from onnxruntime import InferenceSession

        try:
            import ujson
        except ImportError:
            ujson = None
        try:
            import must_have
        finally:
            pass
        """
    )
    assert found == {"json", "os.path", "collections", "torch.nn", "onnxruntime", "must_have"}


def _run(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60)


def test_reports_each_missing_module_with_its_importer_and_fails(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("import json\n\ndef later():\n    import no_such_module_here\n")
    result = _run(tmp_path)
    assert result.returncode == 1
    assert "2 modules imported" in result.stdout and "1 do not" in result.stdout
    assert "no_such_module_here: ModuleNotFoundError" in result.stdout
    assert "(imported by app/main.py)" in result.stdout


def test_passes_when_everything_imports_and_skips_external(tmp_path):
    (tmp_path / "main.py").write_text("import json\nimport ctypes.util\n")
    (tmp_path / "external").mkdir()
    (tmp_path / "external" / "dep.py").write_text("import no_such_module_here\n")
    result = _run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 do not" in result.stdout


def test_shared_libraries_resolve_from_the_loaders_default_directories():
    # As in an image: ctypes' own lookup (ldconfig) finds nothing; the fallback finds libc where
    # the loader would, and nothing for a library that is not there.
    nothing = lambda name: None  # noqa: E731
    found = image_imports._find_library("c", original=nothing)
    assert found is not None and found.startswith("libc.so")
    assert image_imports._find_library("no_such_library_anywhere", original=nothing) is None
