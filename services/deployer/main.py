"""The deployer process: config -> app -> libs.grpc_server.serve()."""

from __future__ import annotations

import json
import sys

from libs.config.settings import ConfigError
from libs.grpc_server.server import serve
from services.deployer.app import build_app
from services.deployer.config import load_config


def main() -> int:
    try:
        config = load_config()
    except ConfigError as err:
        print(json.dumps({"level": "error", "service": "deployer", "msg": str(err)}), file=sys.stderr)
        return 2
    app = build_app(config)
    return serve("deployer", app.bindings, config.server, interceptors=app.interceptors, on_shutdown=app.close)


if __name__ == "__main__":
    sys.exit(main())
