"""Named points where a test can freeze the deployer to kill -9 it there (crash-safety tests).

CAUSEWAY_DEPLOYER_FAILPOINTS=name[,name...] makes `hit(name)` log a "failpoint" line and sleep
until the process is killed. Unset (always, outside tests) it is a dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("causeway.deployer.failpoints")
_ARMED = frozenset(filter(None, os.environ.get("CAUSEWAY_DEPLOYER_FAILPOINTS", "").split(",")))


def hit(name: str) -> None:
    if name in _ARMED:
        log.warning("failpoint", extra={"failpoint": name})
        while True:  # until SIGKILL
            time.sleep(3600)
