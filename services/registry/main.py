"""The registry process: config -> app -> libs.grpc_server.serve()."""

from __future__ import annotations

import json
import sys

from libs.config.settings import ConfigError
from libs.grpc_server.server import serve
from services.registry.app import build_app
from services.registry.config import load_config


def main() -> int:
    try:
        config = load_config()
        app = build_app(config)  # also reads the policies file: a bad one is a ConfigError too
    except ConfigError as err:
        print(json.dumps({"level": "error", "service": "registry", "msg": str(err)}), file=sys.stderr)
        return 2
    return serve("registry", app.bindings, config.server, interceptors=app.interceptors, on_shutdown=app.close)


if __name__ == "__main__":
    sys.exit(main())
