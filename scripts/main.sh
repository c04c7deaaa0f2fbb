#!/usr/bin/env bash
# The main job: set up, check the machine, spawn a process through a pidfd,
# then run a busybox container in a user namespace on an idmapped rootfs,
# in-process (scripts/demo_container.py; as root, else it says what it skips).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/pidsafe doctor
echo
echo "pidsafe run: a child held by its pidfd from clone3 to waitid(P_PIDFD)"
.venv/bin/pidsafe run -- sh -c 'echo "hello from pid $$ (parent $PPID)"; exit 3' || status=$?
echo "exit status: ${status:-0} (expected 3)"
[ "${status:-0}" = 3 ]
echo
.venv/bin/python scripts/demo_container.py
