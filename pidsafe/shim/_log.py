"""The daemon's log: logrus's text format on fd 2, the bundle's ``log`` FIFO.

containerd copies what a shim writes to its ``log`` FIFO into its own log
(runtime/v2/shim/shim_unix.go), as the Go shim's logrus lines.  These lines are written
here without the ``logging`` module, which would cost every daemon's start
~10 ms it rarely uses; library code that does use ``logging`` (a hook's
warning, the wire layer's errors) reaches the same fd 2 through logging's
last-resort handler.
"""

from __future__ import annotations

import os
import time

#: Set by the daemon for ``-debug``.
debug = False


def log(level: str, message: str) -> None:
    """One line at ``level`` (``debug``, ``info``, ``warning``, ``error``); never raises."""
    if level == "debug" and not debug:
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"
    text = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    line = (f'time="{stamp}" level={level} msg="{text}" runtime=io.containerd.pidsafe.v1 '
            f"pid={os.getpid()}\n")
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        pass   # containerd went away: nobody reads the log


def exception(message: str) -> None:
    """``message`` and the exception being handled, with its traceback, at error level."""
    import traceback

    log("error", f"{message}: {traceback.format_exc().strip()}")
