"""`buf lint` (STANDARD + comment rules, protos/buf.yaml) and `buf format` over every proto.

The sources are copied out of the runfiles into a writable temp tree (buf wants real files and a
cache dir), linted there, and then deliberately broken to prove that the lint can fail: a test
that cannot fail proves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

WORKSPACE = "causeway_monorepo"
OIP = "inference/grpc_service.proto"


def _runfile(rootpath: str) -> Path:
    # $(rootpath) of an external file is "../<repo>/<path>", relative to our workspace's runfiles.
    return (Path(os.environ["TEST_SRCDIR"]) / WORKSPACE / rootpath).resolve()


BUF = _runfile(os.environ["BUF"])
LOCK = _runfile(os.environ["BUF_LOCK"])


@pytest.fixture()
def module() -> Path:
    """A writable copy of protos/ (buf.yaml and every .proto) from the runfiles."""
    src = Path(os.environ["TEST_SRCDIR"]) / WORKSPACE / "protos"
    dst = Path(tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))) / "protos"
    files = [p for p in src.rglob("*") if p.name == "buf.yaml" or p.suffix == ".proto"]
    assert any(p.suffix == ".proto" for p in files)
    for path in files:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)  # follows the runfiles symlink
    return dst


def _buf(module: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cache = module.parent / "buf-cache"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cache), "BUF_CACHE_DIR": str(cache)}
    return subprocess.run(
        [str(BUF), *args], cwd=module, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _lint(module: Path) -> list[dict[str, object]]:
    """Lint findings as dicts with path, start_line, type (the rule id) and message."""
    res = _buf(module, "lint", "--error-format=json")
    findings = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    if res.returncode == 0:
        assert not findings
    else:
        assert findings, f"buf lint failed without findings (rc {res.returncode}):\n{res.stderr}"
    return findings


def test_buf_is_the_pinned_version() -> None:
    lock = json.loads(LOCK.read_text())
    pinned = {p["version"] for name, p in lock["packages"].items() if name.startswith("node_modules/@bufbuild/")}
    out = subprocess.run([str(BUF), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert pinned == {out}


def test_lint_passes(module: Path) -> None:
    findings = _lint(module)
    assert findings == [], "\n".join(f"{f['path']}:{f['start_line']}: {f['type']}: {f['message']}" for f in findings)


def test_format_is_canonical(module: Path) -> None:
    res = _buf(module, "format", "--diff", "--exit-code")
    assert res.returncode == 0, "run `buf format -w` in protos/:\n" + res.stdout + res.stderr


def test_lint_catches_violations(module: Path) -> None:
    bad = module / "causeway/common/v1/bad.proto"
    bad.write_text(
        """syntax = "proto3";

package causeway.common.v1;

// Colors.
enum Color {
  // Red.
  RED = 0;
}

// A service with a misnamed request.
service Paint {
  // Paints.
  rpc Paint(Color2) returns (PaintResponse);
}

// Not a request name.
message Color2 {
  // Bad field name.
  string FieldName = 1;
}

// Response.
message PaintResponse {}
"""
    )
    rules = {f["type"] for f in _lint(module) if f["path"] == "causeway/common/v1/bad.proto"}
    assert {
        "ENUM_ZERO_VALUE_SUFFIX",
        "ENUM_VALUE_PREFIX",
        "SERVICE_SUFFIX",
        "RPC_REQUEST_STANDARD_NAME",
        "FIELD_LOWER_SNAKE_CASE",
    } <= rules


def test_lint_catches_missing_comments_and_wrong_directory(module: Path) -> None:
    stray = module / "causeway/registry/v1/stray.proto"
    stray.write_text('syntax = "proto3";\n\npackage causeway.runner.v1;\n\nmessage Uncommented {}\n')
    rules = {f["type"] for f in _lint(module) if f["path"] == "causeway/registry/v1/stray.proto"}
    assert {"PACKAGE_DIRECTORY_MATCH", "COMMENT_MESSAGE"} <= rules


def test_oip_exemption_is_narrow(module: Path) -> None:
    """The OIP file may skip PACKAGE_VERSION_SUFFIX only: other rules and other files still apply."""
    oip = module / OIP
    oip.write_text(oip.read_text() + "\n// Bad enum.\nenum Flavor {\n  // Zero.\n  SWEET = 0;\n}\n")
    extra = module / "inference/extra.proto"
    extra.write_text('syntax = "proto3";\n\npackage inference;\n\n// Extra.\nmessage Extra {}\n')
    findings = _lint(module)
    by_file = {(f["path"], f["type"]) for f in findings}
    assert (OIP, "ENUM_ZERO_VALUE_SUFFIX") in by_file
    assert (OIP, "PACKAGE_VERSION_SUFFIX") not in by_file
    assert ("inference/extra.proto", "PACKAGE_VERSION_SUFFIX") in by_file
