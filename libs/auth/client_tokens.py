"""Tokens a service presents when it calls another service (service-to-service identity).

In a cluster the token is a projected service-account/workload-identity token that the platform
rotates on disk; `FileTokenSource` re-reads the file when it changes. Locally the dev IdP writes
the same kind of file.
"""

from __future__ import annotations

import threading
from pathlib import Path

from libs.auth.interceptor import bearer
from libs.errors.domain_errors import Unauthenticated


class FileTokenSource:
    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._mtime_ns = -1
        self._token = ""

    def token(self) -> str:
        with self._lock:
            try:
                stat = self._path.stat()
                if stat.st_mtime_ns != self._mtime_ns:
                    self._token = self._path.read_text().strip()
                    self._mtime_ns = stat.st_mtime_ns
            except OSError as err:
                raise Unauthenticated(f"cannot read this service's token file {self._path}: {err.strerror}") from err
            return self._token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.token())
