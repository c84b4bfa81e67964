"""The validator process: config -> app -> libs.grpc_server.serve()."""

from __future__ import annotations

import json
import sys

from libs.config.settings import ConfigError
from libs.grpc_server.server import serve
from libs.telemetry import logging_json
from services.validator.app import build_app
from services.validator.config import load_config


def main() -> int:
    try:
        config = load_config()
        app = build_app(config)
    except ConfigError as err:
        # A bad policy file lands here too: each problem names the file and the line.
        print(json.dumps({"level": "error", "service": "validator", "msg": str(err)}), file=sys.stderr)
        return 2
    logging_json.configure("validator", config.server.log_level)
    app.start()
    return serve("validator", app.bindings, config.server, interceptors=app.interceptors, on_shutdown=app.close)


if __name__ == "__main__":
    sys.exit(main())
