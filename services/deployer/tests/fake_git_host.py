"""FakeGitHubServer and FakeGitLabServer: fake git hosts (their pull/merge-request REST subsets).

No git host runs on these machines, so these fakes stand in for api.github.com and GitLab: HTTP
servers on 127.0.0.1 that accept exactly the calls clients/git_host.py makes (open a pull or
merge request, comment, close it), check the token, record requests, and answer with
host-shaped JSON. They are test doubles, not implementations of GitHub or GitLab.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _FakeJsonServer:
    """A JSON-over-HTTP server on 127.0.0.1 whose subclass answers `handle()`; a context manager."""

    methods: tuple[str, ...] = ()
    base_path = ""

    def __init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _dispatch(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                code, reply = fake.handle(self.command, self.path, self.headers, body)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        for method in self.methods:
            setattr(Handler, f"do_{method}", Handler._dispatch)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def handle(self, method: str, path: str, headers, body: dict) -> tuple[int, dict]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{self.base_path}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeGitHubServer(_FakeJsonServer):
    methods = ("POST", "PATCH")

    def __init__(self, repository: str = "platform/causeway", token: str = "fake-token") -> None:  # noqa: S107 - test
        self.repository = repository
        self.token = token
        self.requests: list[tuple[str, str, dict]] = []
        self.pulls: dict[int, dict] = {}
        super().__init__()

    def handle(self, method: str, path: str, headers, body: dict) -> tuple[int, dict]:
        self.requests.append((method, path, body))
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}
        prefix = f"/repos/{self.repository}"
        if method == "POST" and path == f"{prefix}/pulls":
            number = len(self.pulls) + 1
            url = f"https://github.example/{self.repository}/pull/{number}"
            self.pulls[number] = {"number": number, "state": "open", "html_url": url, **body, "comments": []}
            return 201, {"number": number, "html_url": url, "state": "open"}
        if method == "POST" and path.startswith(f"{prefix}/issues/") and path.endswith("/comments"):
            number = int(path.split("/")[-2])
            self.pulls[number]["comments"].append(body["body"])
            return 201, {"id": len(self.pulls[number]["comments"])}
        if method == "PATCH" and path.startswith(f"{prefix}/pulls/"):
            number = int(path.rsplit("/", 1)[-1])
            self.pulls[number]["state"] = body.get("state", "open")
            return 200, {"number": number, "state": self.pulls[number]["state"]}
        return 404, {"message": "Not Found"}


class FakeGitLabServer(_FakeJsonServer):
    methods = ("POST", "PUT")
    base_path = "/api/v4"

    def __init__(self, project: str = "platform/causeway", token: str = "fake-token") -> None:  # noqa: S107 - test
        self.project = project
        self.token = token
        self.merge_requests: dict[int, dict] = {}
        super().__init__()

    def handle(self, method: str, path: str, headers, body: dict) -> tuple[int, dict]:
        if headers.get("PRIVATE-TOKEN") != self.token:
            return 401, {"message": "401 Unauthorized"}
        prefix = "/api/v4/projects/" + self.project.replace("/", "%2F")
        if method == "POST" and path == f"{prefix}/merge_requests":
            iid = len(self.merge_requests) + 1
            url = f"https://gitlab.example/{self.project}/-/merge_requests/{iid}"
            self.merge_requests[iid] = {"iid": iid, "state": "opened", "web_url": url, **body, "notes": []}
            return 201, {"iid": iid, "web_url": url}
        if method == "POST" and path.endswith("/notes"):
            self.merge_requests[int(path.split("/")[-2])]["notes"].append(body["body"])
            return 201, {"id": 1}
        if method == "PUT" and path.startswith(f"{prefix}/merge_requests/"):
            iid = int(path.rsplit("/", 1)[-1])
            if body.get("state_event") == "close":
                self.merge_requests[iid]["state"] = "closed"
            return 200, {"iid": iid, "state": self.merge_requests[iid]["state"]}
        return 404, {"message": "404 Not Found"}
