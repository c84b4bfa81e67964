"""The GitOps writer on real git repositories: atomic commits, no lost commits, no force pushes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from libs.errors.domain_errors import Aborted
from services.deployer.storage.gitops_repo import Change, GitopsRepo, Snapshot


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _seeded(tmp_path: Path, name: str = "gitops.git") -> GitopsRepo:
    seed = tmp_path / "seed"
    (seed / "models").mkdir(parents=True, exist_ok=True)
    (seed / "README.md").write_text("tree\n")
    return GitopsRepo(tmp_path / name).open(seed=seed)


def _write(path: str, content: str, message: str = "change"):
    def build(_snapshot: Snapshot) -> Change:
        return Change({path: content.encode()}, message + "\n", "Alice", "alice@example.com")

    return build


def test_a_change_is_one_commit_on_top_of_the_head(tmp_path) -> None:
    repo = _seeded(tmp_path)
    base = repo.refresh()
    published = repo.update(_write("gitops/models/a/release.env", "V=1\n"))
    assert published.base == base and git(repo.path, "rev-parse", "main") == published.commit
    assert git(repo.path, "rev-parse", f"{published.commit}^") == base
    assert git(repo.path, "show", "main:gitops/models/a/release.env") == "V=1"
    assert (
        git(repo.path, "log", "-1", "--format=%an <%ae>|%cn", "main") == "Alice <alice@example.com>|Causeway Deployer"
    )
    assert git(repo.path, "fsck", "--strict", "--no-dangling") == ""


def test_deletions_and_a_refusing_builder(tmp_path) -> None:
    repo = _seeded(tmp_path)
    repo.update(_write("gitops/x/a.yaml", "a"))
    repo.update(lambda s: Change({"gitops/x/a.yaml": None}, "rm\n", "A", "a@x"))
    assert git(repo.path, "ls-tree", "-r", "--name-only", "main") == "gitops/README.md"
    head = repo.refresh()

    def refuse(_s: Snapshot) -> Change:
        raise Aborted("no")

    with pytest.raises(Aborted):
        repo.update(refuse)
    assert repo.refresh() == head


def test_concurrent_writers_in_threads_lose_no_commit(tmp_path) -> None:
    repo = _seeded(tmp_path)
    errors: list[Exception] = []

    def worker(i: int) -> None:
        try:
            repo.update(_write(f"gitops/models/m{i}/release.env", f"V={i}\n", f"deploy m{i}"))
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert git(repo.path, "rev-list", "--count", "main") == "17"
    assert len(git(repo.path, "ls-tree", "-r", "--name-only", "main", "gitops/models").splitlines()) == 16


WRITER = """
import sys
from pathlib import Path
from services.deployer.storage.gitops_repo import Change, GitopsRepo
repo = GitopsRepo(Path(sys.argv[1])).open()
for i in range(int(sys.argv[3])):
    path = f"gitops/models/{sys.argv[2]}-{i}/release.env"
    repo.update(lambda s, p=path: Change({p: b"V=1\\n"}, f"deploy {p}\\n", "W", "w@x"))
"""


def test_concurrent_writer_processes_on_one_repository_lose_no_commit(tmp_path) -> None:
    repo = _seeded(tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(repo.path), f"p{n}", "10"], cwd=Path.cwd())
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert git(repo.path, "rev-list", "--count", "main") == "41"
    assert git(repo.path, "fsck", "--strict", "--no-dangling") == ""


def test_a_concurrent_change_elsewhere_is_kept_and_the_change_rebuilt(tmp_path) -> None:
    repo = _seeded(tmp_path)
    other = GitopsRepo(repo.path)  # another writer that does not share our lock (e.g. a person)
    calls = []

    def build(snapshot: Snapshot) -> Change:
        calls.append(snapshot.commit)
        assert snapshot.commit is not None
        if len(calls) == 1:  # someone commits while we build: our CAS publication must fail
            other_commit = other._write_commit(snapshot.commit, Change({"gitops/other": b"x"}, "other\n", "B", "b@x"))
            git(repo.path, "update-ref", "refs/heads/main", other_commit, snapshot.commit)
        return Change({"gitops/mine": b"y"}, "mine\n", "A", "a@x")

    published = repo.update(build)
    assert len(calls) == 2 and calls[0] != calls[1]
    assert git(repo.path, "log", "--format=%s", "main").splitlines()[:2] == ["mine", "other"]
    assert published.base == calls[1]


def test_a_conflicting_concurrent_change_is_refused_cleanly(tmp_path) -> None:
    repo = _seeded(tmp_path)
    repo.update(_write("gitops/models/m/release.env", "V=1\n"))

    def build(snapshot: Snapshot) -> Change:
        if snapshot.read("gitops/models/m/release.env") != b"V=1\n":
            raise Aborted("the model changed concurrently; retry")
        assert snapshot.commit is not None
        other = GitopsRepo(repo.path)._write_commit(
            snapshot.commit, Change({"gitops/models/m/release.env": b"V=9\n"}, "theirs\n", "B", "b@x")
        )
        git(repo.path, "update-ref", "refs/heads/main", other, snapshot.commit)
        return Change({"gitops/models/m/release.env": b"V=2\n"}, "mine\n", "A", "a@x")

    with pytest.raises(Aborted):
        repo.update(build)
    assert git(repo.path, "show", "main:gitops/models/m/release.env") == "V=9"
    assert git(repo.path, "fsck", "--strict", "--no-dangling") == ""


def test_pull_request_branches_are_created_never_overwritten(tmp_path) -> None:
    repo = _seeded(tmp_path)
    published = repo.update(_write("gitops/a", "1"), branch="causeway/deploy/x", base_branch="main")
    assert git(repo.path, "rev-parse", "causeway/deploy/x") == published.commit
    assert git(repo.path, "rev-list", "--count", "main") == "1"
    with pytest.raises(Aborted):
        repo.update(_write("gitops/a", "2"), branch="causeway/deploy/x", base_branch="main", attempts=2)
    assert git(repo.path, "rev-parse", "causeway/deploy/x") == published.commit


def test_remote_mirrors_push_fast_forward_only_and_lose_no_commit(tmp_path) -> None:
    origin = _seeded(tmp_path, "origin.git").path
    # The origin refuses anything but fast-forwards, like a protected branch on a git host.
    git(origin, "config", "receive.denyNonFastForwards", "true")
    git(origin, "config", "receive.denyDeletes", "true")
    mirrors = [GitopsRepo(tmp_path / f"mirror{i}.git", remote=str(origin)).open() for i in range(3)]
    errors: list[Exception] = []

    def worker(n: int) -> None:
        for i in range(5):
            try:
                mirrors[n].update(_write(f"gitops/models/r{n}-{i}/release.env", "V=1\n"))
            except Exception as err:  # noqa: BLE001
                errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert git(origin, "rev-list", "--count", "main") == "16"
    assert git(origin, "fsck", "--strict", "--no-dangling") == ""
