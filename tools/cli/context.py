"""Where the CLI finds the stack and who it acts as.

A stack directory (default `var/devstack`, or CAUSEWAY_STACK) holds `stack.json` with the
services' addresses and the development identity provider's state. `--as USER` picks a profile
saved by `causeway login`; every command gets a freshly signed token, so e-signatures always meet
the registry's re-authentication window on a single machine. In a cluster, pass a token from
your identity provider with CAUSEWAY_TOKEN instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import grpc

from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer

MAX_MESSAGE = 64 * 1024 * 1024


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclasses.dataclass
class Context:
    stack_dir: Path
    user: str

    @property
    def stack(self) -> dict:
        path = self.stack_dir / "stack.json"
        if not path.exists():
            raise CliError(f"no stack at {self.stack_dir}: start one with `./dev up` or set CAUSEWAY_STACK")
        return json.loads(path.read_text())

    def address(self, service: str) -> str:
        try:
            return self.stack["services"][service]
        except KeyError:
            raise CliError(f"the stack at {self.stack_dir} has no {service} service running") from None

    def channel(self, service: str) -> grpc.Channel:
        options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
        return grpc.insecure_channel(self.address(service), options=options)

    def _profiles_path(self) -> Path:
        return self.stack_dir / "profiles.json"

    def profiles(self) -> dict:
        path = self._profiles_path()
        return json.loads(path.read_text()) if path.exists() else {}

    def save_profile(self, user: str, roles: list[str], teams: list[str]) -> None:
        profiles = self.profiles()
        profiles[user] = {"roles": roles, "teams": teams}
        self._profiles_path().write_text(json.dumps(profiles, indent=2, sort_keys=True))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        token = os.environ.get("CAUSEWAY_TOKEN")
        if token:
            return bearer(token)
        profile = self.profiles().get(self.user)
        if profile is None:
            raise CliError(f"unknown user {self.user!r}: run `causeway login {self.user} --roles ... --teams ...`")
        idp = DevIdentityProvider(Path(self.stack["idp_dir"]))
        return bearer(idp.issue(self.user, profile["roles"], teams=profile["teams"]))
