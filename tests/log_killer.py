"""A child process that logs calls into a routing log, flushing every 50, until it is SIGKILLed (both log backends)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = """
from hybrid_router import Answered, RouteDecision
from hybrid_router.traffic.routing_log import RoutingLog
d = RouteDecision("large", 0.1, 0.5, "default:quality_threshold", 0.5)
a = Answered(d, "large", None, ("s", "l"))
log = RoutingLog({target!r})
i = 0
while True:
    for _ in range(50):
        log.log_call("query number " + str(i), a, "answer " * 50)
        i += 1
    log.flush()
    print(i, flush=True)
"""


def kill_after_flushes(target: str, at_least: int = 1000) -> int:
    """Run the child on ``target`` (a path or URL), SIGKILL it right after a flush once ``at_least`` rows are
    flushed, while it keeps logging; the number of rows its last reported flush committed."""
    child = textwrap.dedent(CHILD.format(target=target))
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    flushed = 0
    for line in proc.stdout:
        flushed = int(line)
        if flushed >= at_least:
            break
    proc.kill()
    proc.wait(10)
    return flushed
