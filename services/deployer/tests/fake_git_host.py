"""FakeGitHubServer: a fake git host (GitHub's pull-request REST subset) for tests.

No git host runs on these machines, so this fake stands in for api.github.com: it is an HTTP
server on 127.0.0.1 that accepts exactly the calls clients/git_host.py makes (open a pull
request, comment, close it), checks the bearer token, records every request, and answers with
GitHub-shaped JSON. It is a test double, not an implementation of GitHub.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeGitHubServer:
    def __init__(self, repository: str = "platform/causeway", token: str = "fake-token") -> None:  # noqa: S107 - test
        self.repository = repository
        self.token = token
        self.requests: list[tuple[str, str, dict]] = []
        self.pulls: dict[int, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((method, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._reply(401, {"message": "Bad credentials"})
                prefix = f"/repos/{fake.repository}"
                if method == "POST" and self.path == f"{prefix}/pulls":
                    number = len(fake.pulls) + 1
                    url = f"https://github.example/{fake.repository}/pull/{number}"
                    fake.pulls[number] = {"number": number, "state": "open", "html_url": url, **body, "comments": []}
                    return self._reply(201, {"number": number, "html_url": url, "state": "open"})
                if method == "POST" and self.path.startswith(f"{prefix}/issues/") and self.path.endswith("/comments"):
                    number = int(self.path.split("/")[-2])
                    fake.pulls[number]["comments"].append(body["body"])
                    return self._reply(201, {"id": len(fake.pulls[number]["comments"])})
                if method == "PATCH" and self.path.startswith(f"{prefix}/pulls/"):
                    number = int(self.path.rsplit("/", 1)[-1])
                    fake.pulls[number]["state"] = body.get("state", "open")
                    return self._reply(200, {"number": number, "state": fake.pulls[number]["state"]})
                return self._reply(404, {"message": "Not Found"})

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeGitHubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeGitLabServer:
    """A fake GitLab (merge-request REST subset: open, note, close) for tests; a test double."""

    def __init__(self, project: str = "platform/causeway", token: str = "fake-token") -> None:  # noqa: S107 - test
        self.project = project
        self.token = token
        self.merge_requests: dict[int, dict] = {}
        fake = self
        prefix = "/api/v4/projects/" + project.replace("/", "%2F")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.headers.get("PRIVATE-TOKEN") != fake.token:
                    return self._reply(401, {"message": "401 Unauthorized"})
                if method == "POST" and self.path == f"{prefix}/merge_requests":
                    iid = len(fake.merge_requests) + 1
                    url = f"https://gitlab.example/{fake.project}/-/merge_requests/{iid}"
                    fake.merge_requests[iid] = {"iid": iid, "state": "opened", "web_url": url, **body, "notes": []}
                    return self._reply(201, {"iid": iid, "web_url": url})
                if method == "POST" and self.path.endswith("/notes"):
                    fake.merge_requests[int(self.path.split("/")[-2])]["notes"].append(body["body"])
                    return self._reply(201, {"id": 1})
                if method == "PUT" and self.path.startswith(f"{prefix}/merge_requests/"):
                    iid = int(self.path.rsplit("/", 1)[-1])
                    if body.get("state_event") == "close":
                        fake.merge_requests[iid]["state"] = "closed"
                    return self._reply(200, {"iid": iid, "state": fake.merge_requests[iid]["state"]})
                return self._reply(404, {"message": "404 Not Found"})

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/api/v4"

    def __enter__(self) -> FakeGitLabServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
