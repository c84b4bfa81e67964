import dataclasses
import enum
from pathlib import Path

import pytest

from libs.config.settings import ConfigError, Secret, describe, load, setting


class Mode(enum.Enum):
    EMBEDDED = "embedded"
    CLUSTER = "cluster"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Example:
    port: int = setting("PORT", default=50051, minimum=0, maximum=65535, help="gRPC port")
    store_dir: Path = setting("STORE_DIR", help="where artifacts live")
    debug: bool = setting("DEBUG", default=False)
    ratio: float = setting("RATIO", default=0.5)
    roles: tuple[str, ...] = setting("ROLES", default=())
    mode: Mode = setting("MODE", default=Mode.EMBEDDED)
    dsn: Secret | None = setting("DB_DSN", default=None, help="the database DSN")
    token: Secret = setting("TOKEN", help="the API token")


def _secret(tmp_path: Path, value: str = "s3cr3t\n") -> str:
    path = tmp_path / "token"
    path.write_text(value)
    return str(path)


def test_loads_typed_values_and_defaults(tmp_path: Path) -> None:
    env = {
        "X_STORE_DIR": "/var/lib/x",
        "X_DEBUG": "yes",
        "X_ROLES": "reviewer, qa-approver,",
        "X_MODE": "CLUSTER",
        "X_TOKEN_FILE": _secret(tmp_path),
    }
    cfg = load(Example, prefix="X_", environ=env)
    assert cfg.port == 50051
    assert cfg.store_dir == Path("/var/lib/x")
    assert cfg.debug is True
    assert cfg.roles == ("reviewer", "qa-approver")
    assert cfg.mode is Mode.CLUSTER
    assert cfg.dsn is None
    assert cfg.token.reveal() == "s3cr3t"


def test_secret_never_shows_in_repr(tmp_path: Path) -> None:
    cfg = load(Example, prefix="X_", environ={"X_STORE_DIR": "/d", "X_TOKEN_FILE": _secret(tmp_path)})
    assert "s3cr3t" not in repr(cfg)
    assert "s3cr3t" not in str(cfg.token)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    env = {"X_PORT": "seventy", "X_DEBUG": "maybe", "X_MODE": "hybrid", "X_RATIO": "1e"}
    with pytest.raises(ConfigError) as err:
        load(Example, prefix="X_", environ=env)
    problems = "\n".join(err.value.problems)
    assert "X_PORT='seventy': expected an integer" in problems
    assert "X_DEBUG='maybe': expected a boolean" in problems
    assert "X_MODE='hybrid': expected one of cluster, embedded" in problems
    assert "X_RATIO='1e': expected a number" in problems
    assert "X_STORE_DIR is required: where artifacts live" in problems
    assert "X_TOKEN_FILE is required" in problems
    assert len(err.value.problems) == 6


def test_range_is_checked(tmp_path: Path) -> None:
    env = {"X_PORT": "70000", "X_STORE_DIR": "/d", "X_TOKEN_FILE": _secret(tmp_path)}
    with pytest.raises(ConfigError, match="X_PORT='70000': must be at most 65535"):
        load(Example, prefix="X_", environ=env)


def test_secret_in_plain_environment_is_refused(tmp_path: Path) -> None:
    env = {"X_STORE_DIR": "/d", "X_TOKEN": "leaked"}
    with pytest.raises(ConfigError) as err:
        load(Example, prefix="X_", environ=env)
    assert "X_TOKEN is a secret and is only read from a file" in str(err.value)
    assert "leaked" not in str(err.value)


def test_unreadable_secret_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    env = {"X_STORE_DIR": "/d", "X_TOKEN_FILE": str(missing)}
    with pytest.raises(ConfigError, match=r"X_TOKEN_FILE='.*nope': cannot read the secret file"):
        load(Example, prefix="X_", environ=env)


def test_describe_lists_variables() -> None:
    rows = {var: (default, help_) for var, default, help_ in describe(Example, prefix="X_")}
    assert rows["X_PORT"] == ("50051", "gRPC port")
    assert rows["X_TOKEN_FILE"][0] == "required"
    assert "X_DB_DSN_FILE" in rows


@dataclasses.dataclass(frozen=True, kw_only=True)
class Other:
    workers: int = setting("WORKERS", default=2, minimum=1)


def test_load_sections_collects_problems_of_every_section(tmp_path: Path) -> None:
    from libs.config.settings import load_sections

    env = {"X_WORKERS": "0", "X_PORT": "abc"}
    parts, problems = load_sections({"example": Example, "other": Other}, prefix="X_", environ=env)
    assert parts == {}
    assert any(p.startswith("X_WORKERS='0': must be at least 1") for p in problems)
    assert any(p.startswith("X_PORT='abc'") for p in problems)
    parts, problems = load_sections({"other": Other}, prefix="X_", environ={})
    assert problems == [] and parts["other"].workers == 2
