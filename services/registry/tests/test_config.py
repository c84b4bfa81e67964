import pytest

from libs.config.settings import ConfigError
from services.registry.config import REGISTRY_MAX_MESSAGE_BYTES, load_config

BASE = {"CAUSEWAY_REGISTRY_AUTH_JWKS": "/etc/causeway/jwks.json"}


def test_defaults_fit_a_4_mib_upload_chunk():
    config = load_config(BASE)
    assert config.server.max_message_bytes == REGISTRY_MAX_MESSAGE_BYTES > 4 * 1024 * 1024 + 1024
    explicit = load_config(BASE | {"CAUSEWAY_REGISTRY_MAX_MESSAGE_BYTES": "5000000"})
    assert explicit.server.max_message_bytes == 5_000_000


def test_every_problem_of_every_section_is_reported():
    with pytest.raises(ConfigError) as err:
        load_config({"CAUSEWAY_REGISTRY_PORT": "x", "CAUSEWAY_REGISTRY_DB_URL": "postgresql://u:pw@h/db"})
    text = str(err.value)
    assert "CAUSEWAY_REGISTRY_PORT='x': expected an integer" in text
    assert "CAUSEWAY_REGISTRY_DB_URL is a secret" in text and "pw@" not in text
    assert "CAUSEWAY_REGISTRY_AUTH_JWKS is required" in text
