"""pidsafe.errors: one package holds every exception (its face names each); each keeps its
builtin base."""

from __future__ import annotations

import errno
import inspect
import pickle
import subprocess

import pytest

import pidsafe
from pidsafe import errors

BASES = {
    "UnsupportedError": OSError,
    "TimeoutExpired": subprocess.TimeoutExpired,
    "CalledProcessError": subprocess.CalledProcessError,
    "PrivilegeError": PermissionError,
    "IDMapError": ValueError,
    "HelperDiedError": ProcessLookupError,
    "InvalidMountError": ValueError,
    "MountError": OSError,
    "StateError": ValueError,
    "ReaperError": RuntimeError,
    "SubscriptionClosed": EOFError,
    "SubscriptionOverflow": RuntimeError,
    "ConfigError": ValueError,
    "CgroupError": OSError,
    "UnsupportedConfigError": ValueError,
    "StaleProcessError": ProcessLookupError,
    "ContainerError": OSError,
    "HookError": OSError,
    "ContainerStateError": RuntimeError,
    "ContainerLookupError": LookupError,
    "UsageError": ValueError,
    "ForeignChildWarning": RuntimeWarning,
    "IgnoredConfigWarning": UserWarning,
    "DecodeError": ValueError,
    "RpcError": RuntimeError,
    "ConnectionClosedError": ConnectionError,
}


def test_every_exception_lives_in_errors_and_is_a_pidsafe_error() -> None:
    defined = {name for name, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, BaseException) and obj.__module__ == errors.__name__}
    assert defined == set(BASES) | {"Error"}
    for name, base in BASES.items():
        cls = getattr(pidsafe, name)
        assert cls is getattr(errors, name)
        assert issubclass(cls, pidsafe.Error) and issubclass(cls, base), name
        assert name in pidsafe.__all__


def test_no_other_module_defines_an_exception() -> None:
    import pathlib
    import re

    root = pathlib.Path(pidsafe.__file__).parent
    pattern = re.compile(r"^class \w+\((?:[\w.]*(?:Error|Exception|Expired)\b)", re.M)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.relative_to(root).parts[0] != "errors" and pattern.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("err, base", [(errno.EPERM, PermissionError),
                                       (errno.ENOENT, FileNotFoundError),
                                       (errno.EINVAL, OSError)])
def test_mount_error_is_the_errnos_own_subclass_and_pickles(err: int, base: type) -> None:
    exc = errors.mount_error(err, "unable to attach mount tree to /x", "/x", "a hint")
    assert isinstance(exc, pidsafe.MountError) and isinstance(exc, base)
    assert isinstance(exc, pidsafe.Error)
    assert exc.step == "unable to attach mount tree to /x" and exc.path == "/x"
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and back.step == exc.step


@pytest.mark.parametrize("err, base", [(errno.EBUSY, OSError),
                                       (errno.ETIMEDOUT, TimeoutError),
                                       (errno.ENOENT, FileNotFoundError)])
def test_cgroup_error_is_the_errnos_own_subclass_and_pickles(err: int, base: type) -> None:
    exc = errors.cgroup_error(err, "unable to write '1' to /c/x", "/c/x", value="1")
    assert isinstance(exc, pidsafe.CgroupError) and isinstance(exc, base)
    assert exc.step == "unable to write '1' to /c/x" and exc.path == "/c/x" and exc.value == "1"
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and back.value == "1"


@pytest.mark.parametrize("err, code, base, says", [
    (errno.ECHILD, 3, ChildProcessError, "exited with status 3: out"),
    (errno.ETIMEDOUT, -9, TimeoutError, "timed out and was killed"),
    (errno.ECHILD, -15, ChildProcessError, "was killed by signal 15"),
    (errno.ENOENT, None, FileNotFoundError, "could not be run: No such file or directory")])
def test_hook_error_says_what_happened_and_pickles(err: int, code: "int | None", base: type,
                                                   says: str) -> None:
    exc = errors.hook_error(err, "poststart", 1, "/bin/h", code, b"out\n")
    assert isinstance(exc, pidsafe.HookError) and isinstance(exc, pidsafe.ContainerError)
    assert isinstance(exc, base)
    assert str(exc).startswith(f"[Errno {err}] poststart hook /bin/h (hooks.poststart[1]) {says}")
    assert (exc.kind, exc.index, exc.returncode, exc.output) == ("poststart", 1, code, b"out\n")
    assert exc.field == "hooks.poststart[1]" and exc.path == "/bin/h"
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert (back.kind, back.index, back.returncode, back.output, back.field) == \
        (exc.kind, exc.index, exc.returncode, exc.output, exc.field)


def _features_named_in_unsupported_errors() -> "set[str]":
    """Every literal feature name the package passes to UnsupportedError (or to the
    mount layer's ``_unsupported`` helper, which makes one)."""
    import ast
    import pathlib

    names = set()
    for path in pathlib.Path(pidsafe.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("UnsupportedError", "_unsupported")):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        names.add(arg.value)
                        break
    return names


def test_every_unsupported_feature_is_described_without_a_question_mark() -> None:
    from pidsafe._feature_names import FEATURES, OTHER_FEATURES, describe

    named = _features_named_in_unsupported_errors()
    assert {"clone3", "pidfd_info_exit", "overlay_layer_fds", "pidsafe_init"} <= named
    for feature in named | set(FEATURES):
        assert feature in FEATURES or feature in OTHER_FEATURES, feature
        assert "?" not in describe(feature), feature
    assert str(pidsafe.UnsupportedError("overlay_layer_fds")).endswith("(Linux 6.15)")
    # Not a kernel feature: no kernel version at all.
    assert "Linux" not in str(pidsafe.UnsupportedError("pidsafe_init"))
    assert describe("no_such_feature") == "no_such_feature"


def test_privilege_errors_pickle_and_keep_their_fields() -> None:
    for exc in (errors.privilege_error("create a container", "CAP_SYS_ADMIN", "why"),
                errors.cgroup_error(13, "unable to create cgroup /c", "/c", privilege="root"),
                errors.mount_error(1, "unable to attach", "/x", privilege="CAP_SYS_ADMIN")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert isinstance(back, pidsafe.PrivilegeError) and isinstance(back, PermissionError)
        assert (back.operation, back.capability) == (exc.operation, exc.capability)


def _one_of_each() -> "list[BaseException]":
    mount = pidsafe.Mount("/b", "/a", "bind")
    return [
        errors.Error("x"), errors.UnsupportedError("clone3", "a detail", errno.EPERM),
        errors.TimeoutExpired(["a"], 1.5, b"o", b"e"), errors.CalledProcessError(2, ["a"], b"o", b"e"),
        errors.privilege_error("op", "CAP_X", "why", path="/p"), errors.IDMapError("m"),
        errors.HelperDiedError(errno.ESRCH, "h"), errors.InvalidMountError(1, mount, "why"),
        errors.mount_error(errno.ENOENT, "s", "/p", "h"), errors.StateError("s"),
        errors.ReaperError("r"), errors.ForeignChildWarning("f"), errors.SubscriptionClosed("c"),
        errors.SubscriptionOverflow(3), errors.ConfigError("a.b", "why"),
        errors.UnsupportedConfigError("a.b", "what"), errors.IgnoredConfigWarning("a.c", "why"),
        errors.container_error(errno.EACCES, "s", "/p", "f"),
        errors.hook_error(errno.ECHILD, "poststart", 1, "/h", 3, b"o"),
        errors.ContainerStateError("s"), errors.ContainerLookupError("l"),
        errors.StaleProcessError(5, "why"), errors.cgroup_error(errno.EBUSY, "s", "/p", value="v"),
        errors.UsageError("u"), errors.DecodeError("d"), errors.RpcError(5, "nf"),
        errors.ConnectionClosedError()]


def test_every_exception_pickles_back_to_itself() -> None:
    samples = _one_of_each()
    made = {type(s) for s in samples} | {type(s).__bases__[0] for s in samples}
    missing = {name for name in BASES if getattr(errors, name) not in made}
    # A new exception: add one to _one_of_each(); if its __init__ takes fields
    # rather than the message, give it a __reduce__ that rebuilds it from them.
    assert not missing, f"no sample of {sorted(missing)} in _one_of_each()"
    for exc in samples:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc), exc
        assert (str(back), back.args, vars(back)) == (str(exc), exc.args, vars(exc)), exc
