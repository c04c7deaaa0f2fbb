"""init/_start.py: the one decoder of the records pidsafe-init sends after the gate."""

from __future__ import annotations

import errno
from typing import Tuple

import pytest

import pidsafe
from pidsafe.container.init import _protocol, exec_error
from pidsafe.container.init._builder import InitPlan
from pidsafe.container.init._protocol import Op, StatusRecord
from pidsafe.container.init._start import start_init


@pytest.mark.parametrize("op,index,field", [
    (_protocol.STAGE_EXEC, 0, "process.args"),          # the exec itself, whatever the index
    (_protocol.OP_SECCOMP, 1, "process.seccomp"),       # an op of the plan: its own field
    (_protocol.OP_SECCOMP, -1, "linux.seccomp"),        # init's filter, no plan at hand
    (_protocol.OP_NO_NEW_PRIVS, 5, ""),                 # nothing to name
])
def test_exec_error_names_the_program_the_step_and_the_field(op: int, index: int,
                                                            field: str) -> None:
    ops = [Op(_protocol.OP_NO_NEW_PRIVS, field="process.noNewPrivileges"),
           Op(_protocol.OP_SECCOMP, field="process.seccomp")]
    exc = exec_error(StatusRecord(_protocol.RECORD_ERROR, index, op, errno.ENOENT), "exec",
                     "prog", ops)
    assert isinstance(exc, pidsafe.ContainerError) and isinstance(exc, FileNotFoundError)
    assert exc.errno == errno.ENOENT and exc.filename == "prog" and exc.field == field
    assert str(exc).startswith(f"[Errno 2] exec: {_protocol.OP_NAMES.get(op, 'exec')}")


@pytest.mark.parametrize("codes", [
    (_protocol.OP_CHDIR, _protocol.OP_EXEC),                     # no fork at all
    (_protocol.OP_HOOKS, _protocol.OP_FORK, _protocol.OP_EXEC),  # a report before the fork
])
def test_a_fork_socket_needs_every_report_after_the_fork(codes: Tuple[int, ...]) -> None:
    # The parent takes the child's pidfd when the first HOOKS or READY record
    # comes: one that pidsafe-init itself sent would leave it waiting.
    plan = InitPlan(0, tuple(Op(code) for code in codes))
    with pytest.raises(ValueError, match="OP_FORK"):
        start_init(plan, stdio=(-1, -1, -1), pass_fds=(), fork_socket=1000)
