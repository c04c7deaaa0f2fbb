#!/usr/bin/env bash
# The main job: set up, check the machine, and spawn a process through a pidfd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/pidsafe doctor
echo
echo "pidsafe run: a child held by its pidfd from clone3 to waitid(P_PIDFD)"
.venv/bin/pidsafe run -- sh -c 'echo "hello from pid $$ (parent $PPID)"; exit 3' || status=$?
echo "exit status: ${status:-0} (expected 3)"
[ "${status:-0}" = 3 ]
