#!/bin/bash
# conformance.sh [--peers] [--only REGEX]: the OCI runtime-tools validation suite (58 tests) against this checkout's
# pidsafe-runc, and with --peers against Debian's runc and crun too, then one table: test, then each runtime's result.
# Opt-in, root only, slow (minutes), not part of CI. The suite's source, its build and its runner are not in this
# repository: they come from a harness, oci_validation.sh, in the folder PIDSAFE_PEERS names (by default the one the
# development machines keep beside the checkout); this script only points it at absolute paths and puts the
# per-runtime summaries side by side.
#   --peers        also run /usr/sbin/runc and /usr/bin/crun (installed with apt-get when missing)
#   --only REGEX   only the tests whose name matches
# Environment: PIDSAFE_PEERS (the harness's folder), PEERS_WORK (scratch, default /tmp/pidsafe-peers), TEST_TIMEOUT
# (seconds per test, default 60).
# Exit status 0 iff pidsafe-runc passes every test that crun passes in the same run (with --peers), else iff the
# suite ran.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PIDSAFE_PEERS:-$HERE/../shared/peers}
ONLY=.
WITH_PEERS=0
while [ $# -gt 0 ]; do
  case $1 in
    --peers) WITH_PEERS=1 ;;
    --only) ONLY=$2; shift ;;
    *) echo "usage: $0 [--peers] [--only REGEX]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
[ -x "$PEERS/oci_validation.sh" ] || { echo "no $PEERS/oci_validation.sh: set PIDSAFE_PEERS to the harness's folder" >&2; exit 2; }
[ -x "$HERE/.venv/bin/pidsafe-runc" ] || bash "$HERE/scripts/bootstrap.sh"

RUNTIMES=("$HERE/.venv/bin/pidsafe-runc")
if [ "$WITH_PEERS" = 1 ]; then
  for pkg in runc crun; do
    dpkg -s "$pkg" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  done
  RUNTIMES+=(/usr/sbin/runc /usr/bin/crun)
fi
LOGROOT=${PEERS_WORK:-/tmp/pidsafe-peers}/oci-validation
for rt in "${RUNTIMES[@]}"; do
  echo "== $(basename "$rt")" >&2
  ONLY=$ONLY TEST_TIMEOUT=${TEST_TIMEOUT:-60} bash "$PEERS/oci_validation.sh" "$rt" | tail -3 >&2
done

# One row per test: the RESULT column of each runtime's summary.txt.
python3 - "$LOGROOT" "$(for rt in "${RUNTIMES[@]}"; do basename "$rt"; done)" <<'EOF'
import pathlib, sys
root, names = pathlib.Path(sys.argv[1]), sys.argv[2].split()
results = {}
for name in names:
    lines = (root / f"logs-{name}" / "summary.txt").read_text().splitlines()[2:]
    rows = [l.split() for l in lines]
    results[name] = {r[0]: r[1] for r in rows
                     if len(r) == 6 and r[1].startswith(("PASS", "FAIL", "ERROR", "SKIP"))}
tests = sorted(set().union(*results.values()))
print(f"{'TEST':<36}" + "".join(f"{n:<14}" for n in names))
for t in tests:
    print(f"{t:<36}" + "".join(f"{results[n].get(t, '-'):<14}" for n in names))
print(f"{'passed':<36}" + "".join(
    f"{sum(v.startswith('PASS') for v in results[n].values()):<14}" for n in names))
if "crun" in results:
    ours = results[names[0]]
    missing = [t for t, v in results["crun"].items()
               if v.startswith("PASS") and not ours.get(t, "").startswith("PASS")]
    print("crun passes, pidsafe-runc does not: " + (" ".join(missing) or "none"))
    sys.exit(1 if missing else 0)
EOF
