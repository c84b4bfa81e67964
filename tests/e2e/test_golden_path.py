"""Register → validate → deploy → infer → approve → promote → audit, on the real binaries."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.devstack import golden_path
from tools.devstack.services import all_services
from tools.devstack.stack import Stack


def _commit_subjects(repo_root: Path) -> str:
    gitdirs = [p.parent for p in repo_root.rglob("HEAD") if (p.parent / "objects").is_dir()]
    assert gitdirs, f"no git repository under {repo_root}"
    return subprocess.run(
        ["git", "--git-dir", str(gitdirs[0]), "log", "--all", "--format=%s%n%b"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_golden_path_on_one_machine():
    root = Path(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
    # The validator's sandbox user (uid 65534) must reach its work directory: not under pytest's
    # 0700 temporary root.
    tmp_path = Path(tempfile.mkdtemp(prefix="causeway-e2e-"))
    tmp_path.chmod(0o755)
    lines: list[str] = []
    try:
        with Stack(tmp_path / "stack", root) as stack:
            for spec in all_services():
                stack.start(spec)
            result = golden_path.run(stack.state_dir, tmp_path / "work", say=lines.append)
            log = _commit_subjects(stack.data_dir("deployer"))
    finally:
        print("\n".join(lines))
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert result["validation"]["verdict"] == "VALIDATION_VERDICT_PASSED"
    assert result["deployment"]["state"] == "DEPLOYMENT_STATE_SUCCEEDED"
    probability = result["prediction"]["probability"]["data"][0]
    assert 0.0 <= probability <= 1.0
    assert result["approval"]["signer"]["subject"] == "quinn"
    assert result["audit"]["verdict"] == "CHAIN_VERDICT_INTACT"
    # The deploy and the promotion are commits in the local GitOps repository naming the version.
    assert log.count("tox21") >= 2, log
    commit = result["deployment"]["git_change"]["commit_sha"]
    assert len(commit) == 40
