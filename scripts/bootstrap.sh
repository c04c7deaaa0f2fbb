#!/usr/bin/env bash
# Set up everything pidsafe needs, from a fresh clone on a fresh Debian
# machine.  Idempotent: a second run only rebuilds the extension.
#
#   - Debian packages: gcc,
#     libseccomp-dev (linux.seccomp filters; without it pidsafe builds but
#     refuses them),
#     libc6-dev (static libc.a for the helper programs, csrc/helper/ and
#     csrc/init/), busybox-static (the container tests' image, as root),
#     containerd and runc (the containerd and CRI tests, as root: Debian 12
#     has containerd 1.6.20 and runc 1.1.5).
#     Installed with apt-get when we are root; otherwise we say what to run.
#   - .venv with pidsafe (editable, the cffi extension built in place) and
#     the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# libc6-dev: headers, and libc.a for the static helper (csrc/helper/).
dpkg -s libc6-dev >/dev/null 2>&1 || missing+=(libc6-dev)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
# libseccomp's headers: pidsafe._libseccomp compiles seccomp filters with them.
# Optional: without, pidsafe builds and refuses linux.seccomp by name.
if ! dpkg -s libseccomp-dev >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        missing+=(libseccomp-dev)
    else
        echo "pidsafe: optional: libseccomp-dev (apt-get install libseccomp-dev) for seccomp filters" >&2
    fi
fi
# musl-tools: the helper programs are built with musl where it is there
# (setup.py says why: glibc's static start-up costs ~350 us of each
# container start and exec in a VM).  Optional: without, glibc's libc.a.
if ! command -v musl-gcc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        missing+=(musl-tools)
    else
        echo "pidsafe: optional: musl-tools (apt-get install musl-tools): faster helper programs" >&2
    fi
fi
# Only the (root-only) container tests need busybox: install it when we can.
if [ "$(id -u)" = 0 ] && ! dpkg -s busybox-static >/dev/null 2>&1; then
    missing+=(busybox-static)
fi
# The containerd and CRI tests (tests/containerd.py, as root) start a private
# containerd and drive runc through its runc shim; without, they skip.
# Installed without recommends (runc's would bring criu).
bare=()
if [ "$(id -u)" = 0 ]; then
    command -v containerd >/dev/null 2>&1 || bare+=(containerd)
    command -v runc >/dev/null 2>&1 || bare+=(runc)
fi
# Optional: a test watches spawn's clone3 flags through strace (skipped without).
if ! command -v strace >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        missing+=(strace)
    else
        echo "pidsafe: optional: strace (apt-get install strace) for one test" >&2
    fi
fi
if ((${#missing[@]} + ${#bare[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "pidsafe: installing Debian packages: ${missing[*]} ${bare[*]}" >&2
        apt-get update -qq
        if ((${#missing[@]})); then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        fi
        if ((${#bare[@]})); then
            # Debian's containerd ships only a systemd unit, which its postinst
            # starts only when systemd runs (/run/systemd/system) and
            # policy-rc.d allows it.  The tests never use a system containerd:
            # theirs has its own sockets, root and state (tests/containerd.py).
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${bare[@]}" >/dev/null
            if [ -S /run/containerd/containerd.sock ]; then
                echo "pidsafe: note: a system containerd runs (/run/containerd/containerd.sock);" \
                     "the tests use a private one and leave it alone" >&2
            fi
        fi
    else
        echo "pidsafe: missing Debian packages: ${missing[*]}" >&2
        echo "pidsafe: the helper programs need gcc and a static libc;" >&2
        echo "pidsafe: as root run:" >&2
        echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Editable install: builds pidsafe/_native in place from csrc/.  "compat"
# mode: a plain .pth line (this checkout on sys.path) instead of setuptools'
# default import finder, whose module imports pathlib (and re, fnmatch,
# urllib ...) at every interpreter start: ~13 ms CPU of each pidsafe-runc
# command.  The checkout's other top-level folders (tests,
# scripts, benchmarks, csrc) become importable namespaces; nothing uses them.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
# Bytecode now, as pip does for a regular install: an editable install only
# writes it on first import, and never under PYTHONDONTWRITEBYTECODE; without
# it every pidsafe-runc command compiles the package from source (~100 ms).
.venv/bin/python -m compileall -q pidsafe
