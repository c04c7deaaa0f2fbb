"""pidsafe._owned: the base of every object that owns something."""

from __future__ import annotations

import gc
import warnings
from typing import List, Optional

import pytest

import pidsafe
from pidsafe._owned import Closable, Owned


class Thing(Closable):
    """Owns one token until close()."""

    def __init__(self, log: List[str]) -> None:
        self.log = log
        self.open = True

    def close(self) -> None:
        if self.open:
            self.open = False
            self.log.append("closed")

    def _release_dropped(self) -> Optional[str]:
        if not self.open:
            return None
        self.open = False
        self.log.append("released")
        return "unclosed Thing"


def test_with_closes_and_returns_the_object() -> None:
    log: List[str] = []
    with Thing(log) as t:
        assert isinstance(t, Thing) and t.open
    assert log == ["closed"]


def test_with_closes_when_the_block_raises() -> None:
    log: List[str] = []
    with pytest.raises(KeyError):
        with Thing(log):
            raise KeyError("x")
    assert log == ["closed"]


def test_dropped_open_is_released_with_a_resource_warning() -> None:
    log: List[str] = []
    t = Thing(log)
    with pytest.warns(ResourceWarning, match="unclosed Thing"):
        del t
        gc.collect()
    assert log == ["released"]


def test_dropped_closed_is_silent() -> None:
    log: List[str] = []
    t = Thing(log)
    t.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del t
        gc.collect()
    assert log == ["closed"]


def test_an_owner_with_nothing_to_release_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Owned()
        gc.collect()


@pytest.mark.parametrize("cls", [pidsafe.OwnedFd, pidsafe.Process, pidsafe.Subscription,
                                 pidsafe.Claim, pidsafe.UsernsCache])
def test_pidsafes_closable_owners_share_the_base(cls: type) -> None:
    assert issubclass(cls, Closable)
    # One block, in the base: no class repeats it.
    assert not {"__enter__", "__del__"} & set(vars(cls))


def test_a_state_file_is_owned_but_closed_by_unlock() -> None:
    assert issubclass(pidsafe.StateFile, Owned) and not issubclass(pidsafe.StateFile, Closable)
