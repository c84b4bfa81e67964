"""Import every module a service's code imports, as the image's python: what is missing?

Run inside an image's root filesystem (tools/oci/check_service_images.sh feeds this file to the
image's python on stdin), with the image's PYTHONPATH:

    python3.11 - /app/runfiles/causeway_monorepo < image_imports.py

It walks the .py files under the given directory (the binary's runfiles, first-party code and
generated protos), collects every absolute `import x.y` and `from x.y import z` — also those
inside functions, which services use for heavy or optional-at-runtime libraries such as torch,
onnxruntime or boto3 — and imports each module. Exit 0 when all import; 1 with one line per
module that does not ("<module>: <error> (imported by <file>)"). Imports inside a `try` whose
handler catches ImportError are optional by construction and skipped.

Images have no ld.so.cache and no ldconfig (ADR 0002), so `ctypes.util.find_library` finds
nothing there; the services name such libraries explicitly (e.g. the validator loads
libseccomp.so.2 for pyseccomp). Here find_library falls back to the loader's default directories,
so a package that loads a shared library passes exactly when that library is in the image.
"""

from __future__ import annotations

import ast
import ctypes.util
import importlib
import sys
from pathlib import Path

_OPTIONAL_HANDLERS = {"ImportError", "ModuleNotFoundError"}
_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/lib")


def _find_library(name: str, original=ctypes.util.find_library) -> str | None:
    """find_library, else the first lib<name>.so* in the dynamic loader's default directories."""
    found = original(name)
    if found:
        return found
    for directory in _LIBRARY_DIRS:
        candidates = sorted(Path(directory).glob(f"lib{name}.so*")) if Path(directory).is_dir() else []
        if candidates:
            return candidates[0].name
    return None


def _optional(node: ast.Try) -> bool:
    for handler in node.handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(n, ast.Name) and n.id in _OPTIONAL_HANDLERS for n in names):
            return True
    return False


def imported_modules(tree: ast.AST) -> set[str]:
    """Absolute module names imported anywhere in `tree`, except under optional-import guards."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Try) and _optional(node):
            for handled in (*node.handlers, *node.orelse, *node.finalbody):
                visit(handled)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module != "__future__":
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    ctypes.util.find_library = _find_library
    wanted: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "external":
            continue
        for module in imported_modules(ast.parse(path.read_bytes(), filename=str(path))):
            wanted.setdefault(module, str(rel))
    missing = []
    for module, importer in sorted(wanted.items()):
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any failure to import is a finding
            missing.append(f"{module}: {type(err).__name__}: {err} (imported by {importer})")
    print(f"{len(wanted)} modules imported by {root}: {len(wanted) - len(missing)} import, {len(missing)} do not")
    for line in missing:
        print(line)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
