"""The GitOps repository writer: one atomic commit per change, compare-and-swap publication.

A change is built from a snapshot of the branch head, written as git objects with a private
index (the working tree is never touched), and published by moving the branch only if it still
points at the snapshot's commit: `git update-ref NEW OLD` for a local repository, a plain
(never forced) `git push` for a remote, which the server refuses unless it fast-forwards. If
someone else moved the branch first, the change is rebuilt on the new head (the builder decides
whether the other change conflicts with it) and tried again.

Crash safety follows from the order: objects first, the ref last. A process killed at any point
leaves the branch at either the old or the new commit, never in between; what it wrote before
the ref moved is unreachable garbage that `git gc` removes. Writers in this process and in other
processes sharing the directory are serialized by an flock (released by the kernel if the holder
dies), so they do not even race for the CAS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from libs.errors.domain_errors import Aborted, Unavailable
from services.deployer.domain import failpoints
from services.deployer.storage.git_cli import Git, GitError

ZERO = "0" * 40
_STALE_REF_LOCK_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class CommitInfo:
    sha: str
    time: dt.datetime
    author: str
    message: str


@dataclasses.dataclass(frozen=True)
class Change:
    """What a builder wants committed: path -> bytes (None deletes), the message, the author."""

    files: Mapping[str, bytes | None]
    message: str
    author_name: str
    author_email: str


@dataclasses.dataclass(frozen=True)
class Published:
    commit: str
    base: str
    branch: str
    paths: tuple[str, ...]


class Snapshot:
    """Read-only view of one commit, handed to change builders."""

    def __init__(self, git: Git, commit: str | None) -> None:
        self.git = git
        self.commit = commit

    def read(self, path: str) -> bytes | None:
        if self.commit is None:
            return None
        proc = self.git.run("cat-file", "blob", f"{self.commit}:{path}", check=False)
        return proc.stdout if proc.returncode == 0 else None

    def files_under(self, directory: str) -> dict[str, bytes]:
        """path -> content of every file below `directory` (recursive)."""
        if self.commit is None:
            return {}
        listing = self.git.run("ls-tree", "-r", "-z", self.commit, "--", directory.rstrip("/") + "/").stdout
        out = {}
        for entry in filter(None, listing.split(b"\0")):
            meta, _, path = entry.partition(b"\t")
            _mode, kind, sha = meta.decode().split()
            if kind == "blob":
                out[path.decode()] = self.git.run("cat-file", "blob", sha).stdout
        return out

    def subdirectories(self, directory: str) -> list[str]:
        """Names of the directories directly below `directory`."""
        if self.commit is None:
            return []
        proc = self.git.run("ls-tree", "-z", self.commit, "--", directory.rstrip("/") + "/", check=False)
        names = []
        for entry in filter(None, proc.stdout.split(b"\0")):
            meta, _, path = entry.partition(b"\t")
            if meta.split()[1] == b"tree":
                names.append(path.decode().rsplit("/", 1)[-1])
        return sorted(names)


class GitopsRepo:
    """A local bare repository (single machine) or a bare mirror of a remote (cluster)."""

    def __init__(
        self,
        path: Path,
        *,
        remote: str = "",
        branch: str = "main",
        committer: tuple[str, str] = ("Causeway Deployer", "deployer@causeway.localhost"),
        auth_header: Callable[[], str] | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.remote = remote
        self.branch = branch
        self.committer = committer
        self.lock_timeout = lock_timeout
        self._auth_header = auth_header
        self._thread_lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self.git = Git(self.path)

    @property
    def location(self) -> str:
        return self.remote or str(self.path)

    # ---- setup -----------------------------------------------------------------------------
    def open(self, seed: Path | None = None, seed_prefix: str = "gitops") -> GitopsRepo:
        """Create the repository if needed; a new local one starts with `seed` copied under `seed_prefix`."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "causeway-tmp").mkdir(exist_ok=True)
        with self._locked():
            if not (self.path / "HEAD").exists():
                self.git.run("init", "--bare", "--quiet", f"--initial-branch={self.branch}")
                if self.remote:
                    self.git.run("remote", "add", "origin", self.remote)
                    self.git.run("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
                elif seed is not None:
                    self._seed(seed, seed_prefix)
            self._clean_tmp()
        return self

    def _seed(self, seed: Path, prefix: str) -> None:
        files = {}
        for path in sorted(Path(seed).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"{prefix}/{path.relative_to(seed).as_posix()}"] = path.read_bytes()
        change = Change(files, "gitops: initial tree\n", *self.committer)
        commit = self._write_commit(None, change)
        self.git.run("update-ref", f"refs/heads/{self.branch}", commit, ZERO)

    def _clean_tmp(self) -> None:
        # Private index files of writers killed mid-change; live writers hold the flock we hold.
        for leftover in (self.path / "causeway-tmp").iterdir():
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    # ---- locking -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize writers: threads by a mutex, processes by an flock the kernel drops on death."""
        if not self._thread_lock.acquire(timeout=self.lock_timeout):
            raise Unavailable("the GitOps writer is busy; retry")
        try:
            with open(self.path / "causeway-writer.lock", "a+") as handle:
                deadline = time.monotonic() + self.lock_timeout
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise Unavailable("another deployer process holds the GitOps writer lock") from None
                        time.sleep(0.01)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    # ---- reading ----------------------------------------------------------------------------
    def _remote_env(self) -> dict[str, str]:
        if not self._auth_header:
            return {}
        # Through the environment, never argv: process listings must not show the token.
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": self._auth_header(),
        }

    def refresh(self, branch: str | None = None) -> str | None:
        """The branch head now (fetched first for a remote); None if the branch does not exist."""
        branch = branch or self.branch
        if self.remote:
            # Readers fetch too; two fetches at once in one mirror would race for the ref locks.
            with self._fetch_lock:
                self.git.run("fetch", "--quiet", "--prune", "origin", env=self._remote_env())
            ref = f"refs/remotes/origin/{branch}"
        else:
            ref = f"refs/heads/{branch}"
        proc = self.git.run("rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False)
        return proc.stdout.decode().strip() or None

    def snapshot(self, commit: str | None) -> Snapshot:
        return Snapshot(self.git, commit)

    def log(self, path: str, *, ref: str | None = None, skip: int = 0, limit: int = 50) -> list[CommitInfo]:
        """Commits on `ref` (default: the branch head) that touched `path`, newest first."""
        ref = ref or self.refresh()
        if ref is None:
            return []
        fmt = "%H%x1f%ct%x1f%an <%ae>%x1f%B%x1e"
        out = self.git.run(
            "log", f"--format={fmt}", f"--skip={skip}", f"--max-count={limit}", ref, "--", path
        ).stdout.decode()
        commits = []
        for record in filter(None, (r.strip("\n") for r in out.split("\x1e"))):
            sha, ctime, author, message = record.split("\x1f", 3)
            commits.append(CommitInfo(sha, dt.datetime.fromtimestamp(int(ctime), dt.UTC), author, message))
        return commits

    def is_ancestor(self, commit: str, of: str) -> bool:
        return self.git.run("merge-base", "--is-ancestor", commit, of, check=False).returncode == 0

    def commit_exists(self, sha: str) -> bool:
        return self.git.run("cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode == 0

    # ---- writing ----------------------------------------------------------------------------
    def update(
        self,
        build: Callable[[Snapshot], Change],
        *,
        branch: str | None = None,
        base_branch: str | None = None,
        attempts: int = 8,
    ) -> Published:
        """Commit `build(snapshot)` on `branch` atomically; rebuild and retry if the branch moved.

        With `base_branch`, `branch` is a new branch created from `base_branch`'s head (a pull
        request branch); it must not exist yet. `build` may raise to refuse (a conflicting
        concurrent change, a failed precondition); nothing is published then.
        """
        branch = branch or self.branch
        with self._locked():
            for attempt in range(attempts):
                base = self.refresh(base_branch or branch)
                change = build(self.snapshot(base))
                commit = self._write_commit(base, change)
                failpoints.hit("git-objects-written")
                expected = ZERO if base_branch else base
                if self._publish(branch, commit, expected):
                    failpoints.hit("git-published")
                    return Published(commit, base or "", branch, tuple(sorted(change.files)))
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise Aborted(f"the GitOps branch {branch} kept moving under {attempts} attempts; retry the request")

    def _write_commit(self, base: str | None, change: Change) -> str:
        tmp = Path(tempfile.mkdtemp(prefix=f"change-{uuid.uuid4().hex[:8]}-", dir=self.path / "causeway-tmp"))
        try:
            env = {"GIT_INDEX_FILE": str(tmp / "index")}
            self.git.run("read-tree", *([base] if base else ["--empty"]), env=env)
            writes = {p: c for p, c in change.files.items() if c is not None}
            blob_files = []
            for i, (_path, content) in enumerate(sorted(writes.items())):
                blob = tmp / f"blob-{i}"
                blob.write_bytes(content)
                blob_files.append(str(blob))
            shas = []
            if blob_files:
                shas = self.git.out("hash-object", "-w", "--stdin-paths", input="\n".join(blob_files).encode()).split()
            lines = [f"100644 {sha}\t{path}" for sha, path in zip(shas, sorted(writes), strict=True)]
            lines += [f"0 {ZERO}\t{path}" for path, c in sorted(change.files.items()) if c is None]
            if lines:
                self.git.run("update-index", "--index-info", input=("\n".join(lines) + "\n").encode(), env=env)
            tree = self.git.out("write-tree", env=env)
            ident = {
                "GIT_AUTHOR_NAME": change.author_name,
                "GIT_AUTHOR_EMAIL": change.author_email,
                "GIT_COMMITTER_NAME": self.committer[0],
                "GIT_COMMITTER_EMAIL": self.committer[1],
            }
            parents = ["-p", base] if base else []
            return self.git.out("commit-tree", tree, *parents, "-F", "-", input=change.message.encode(), env=ident)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, branch: str, commit: str, expected: str | None) -> bool:
        """Move `branch` to `commit` iff it is at `expected` (ZERO: must not exist). False if it moved."""
        if self.remote:
            proc = self.git.run(
                "push", "--porcelain", "origin", f"{commit}:refs/heads/{branch}", env=self._remote_env(), check=False
            )
            if proc.returncode == 0:
                return True
            text = (proc.stdout + proc.stderr).decode(errors="replace")
            refused = [line for line in proc.stdout.decode(errors="replace").splitlines() if line.startswith("!")]
            # A ref the server refused because it moved (stale, or a concurrent receive-pack won the
            # ref lock) is a lost race: rebuild and retry. Hooks and permissions are real errors.
            if refused and "hook declined" not in text and "protected" not in text:
                return False
            raise GitError(["push", "origin"], proc.returncode, text)
        ref = f"refs/heads/{branch}"
        proc = self.git.run("update-ref", ref, commit, expected or ZERO, check=False)
        if proc.returncode == 0:
            return True
        text = proc.stderr.decode(errors="replace")
        if "File exists" in text and self._remove_stale_ref_lock(ref):
            return self._publish(branch, commit, expected)
        if "but expected" in text or "is at" in text or "reference already exists" in text or "File exists" in text:
            return False
        raise GitError(["update-ref", ref], proc.returncode, text)

    def _remove_stale_ref_lock(self, ref: str) -> bool:
        """A ref lock left by a writer killed inside update-ref. We hold the writer flock, so an old
        one belongs to nobody alive among the deployers; a fresh one may be a person's git."""
        lock = self.path / f"{ref}.lock"
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        if age < _STALE_REF_LOCK_SECONDS:
            return False
        lock.unlink(missing_ok=True)
        return True
