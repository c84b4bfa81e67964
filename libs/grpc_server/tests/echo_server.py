"""`python -m libs.grpc_server.tests.echo_server`: the echo service run by the real bootstrap."""

import sys

from libs.config.settings import load
from libs.grpc_server.server import serve
from libs.grpc_server.settings import ServerSettings
from libs.grpc_server.tests import echo

if __name__ == "__main__":
    sys.exit(serve("echo", [echo.binding()], load(ServerSettings, prefix="ECHO_")))
