"""Entry point of the smoke image: proves imports from every layer work inside the image."""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import ssl
import sys
import zlib

import six
from greeting import WORDS


def main() -> int:
    report = {
        "words": WORDS,
        "six": six.__version__,
        "greeting_env": os.environ.get("GREETING", ""),
        "sqlite": sqlite3.sqlite_version,
        "ssl_cas": ssl.create_default_context().cert_store_stats()["x509_ca"],
        "zlib": zlib.ZLIB_VERSION,
        "ctypes_libc": bool(ctypes.CDLL("libc.so.6")),
        "executable": sys.executable,
    }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
