"""Pull requests through a git host's REST API: GitHub and GitLab behind one interface.

Only what the deployer needs: open a pull (merge) request from a deployment branch, and close it
with a comment when the deployment is aborted. The token is read from a file on every call
(rotated by the platform) and sent only in the Authorization header.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

import httpx

from libs.errors.domain_errors import Unavailable


class GitHostError(Unavailable):
    pass


def _check(response: httpx.Response, what: str) -> dict:
    if response.status_code >= 300:
        raise GitHostError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json() if response.content else {}


class GitHubPullRequests:
    """GitHub REST v3: POST /repos/{owner}/{repo}/pulls, PATCH .../pulls/{n}, POST .../issues/{n}/comments."""

    def __init__(self, api_url: str, repository: str, token: Callable[[], str], timeout: float = 15.0) -> None:
        self._base = f"{api_url.rstrip('/')}/repos/{repository}"
        self._token = token
        self._timeout = timeout

    def _client(self) -> httpx.Client:
        headers = {
            "Authorization": f"Bearer {self._token()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        return httpx.Client(headers=headers, timeout=self._timeout)

    def open(self, branch: str, base: str, title: str, body: str) -> str:
        with self._client() as http:
            data = _check(
                http.post(f"{self._base}/pulls", json={"title": title, "head": branch, "base": base, "body": body}),
                "open pull request",
            )
        return data["html_url"]

    def close(self, url: str, comment: str) -> None:
        number = url.rstrip("/").rsplit("/", 1)[-1]
        with self._client() as http:
            _check(http.post(f"{self._base}/issues/{number}/comments", json={"body": comment}), "comment")
            _check(http.patch(f"{self._base}/pulls/{number}", json={"state": "closed"}), "close pull request")


class GitLabMergeRequests:
    """GitLab REST v4: POST /projects/{id}/merge_requests, PUT .../merge_requests/{iid}, POST .../notes."""

    def __init__(self, api_url: str, project: str, token: Callable[[], str], timeout: float = 15.0) -> None:
        self._base = f"{api_url.rstrip('/')}/projects/{urllib.parse.quote(project, safe='')}"
        self._token = token
        self._timeout = timeout

    def _client(self) -> httpx.Client:
        return httpx.Client(headers={"PRIVATE-TOKEN": self._token()}, timeout=self._timeout)

    def open(self, branch: str, base: str, title: str, body: str) -> str:
        payload = {"source_branch": branch, "target_branch": base, "title": title, "description": body}
        with self._client() as http:
            data = _check(http.post(f"{self._base}/merge_requests", json=payload), "open merge request")
        return data["web_url"]

    def close(self, url: str, comment: str) -> None:
        iid = url.rstrip("/").rsplit("/", 1)[-1]
        with self._client() as http:
            _check(http.post(f"{self._base}/merge_requests/{iid}/notes", json={"body": comment}), "comment")
            _check(http.put(f"{self._base}/merge_requests/{iid}", json={"state_event": "close"}), "close merge request")


def make(kind: str, api_url: str, repository: str, token: Callable[[], str]):
    """The client for `kind` ("github" or "gitlab")."""
    if kind == "github":
        return GitHubPullRequests(api_url, repository, token)
    if kind == "gitlab":
        return GitLabMergeRequests(api_url, repository, token)
    raise ValueError(f"unknown git host {kind!r}: github or gitlab")
