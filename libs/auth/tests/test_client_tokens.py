import os
from pathlib import Path

import pytest

from libs.auth.client_tokens import FileTokenSource
from libs.errors.domain_errors import Unauthenticated


def test_rotated_token_file_is_reread(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    source = FileTokenSource(path)
    assert source.metadata() == (("authorization", "Bearer first"),)
    path.write_text("second\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert source.token() == "second"


def test_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Unauthenticated, match="cannot read this service's token file"):
        FileTokenSource(tmp_path / "absent").token()
