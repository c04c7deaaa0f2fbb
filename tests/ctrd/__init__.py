"""A private containerd (and its CRI) for the tests, as pytest fixtures.

daemon.py     Containerd: the daemon, ctr, images, what is left; Runtime, RUNC, PIDSAFE
fixtures.py   the fixtures (tests/conftest.py registers them) and RUNTIMES, HANDLERS
events.py     ``ctr events`` recorded: EventView.wait(topic, **fields)
config.py     its config.toml (CRI on, runtime handlers runc and pidsafe)
supervisor.py, supervisor_main.py   the subreaper that runs containerd in a mount namespace
cri.py        CriClient: CRI over gRPC (imports grpc; cri_api/ is generated)
pause.c       the CRI sandbox image's program
"""

from .daemon import (BUSYBOX_IMAGE, CRI_NAMESPACE, PAUSE_IMAGE, PIDSAFE, RUNC, Containerd,
                     CtrResult, Runtime)
from .events import Event, EventView

__all__ = ["BUSYBOX_IMAGE", "CRI_NAMESPACE", "PAUSE_IMAGE", "PIDSAFE", "RUNC", "Containerd",
           "CtrResult", "Event", "EventView", "Runtime"]
