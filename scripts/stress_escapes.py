"""The escape racers of tests/container/test_escapes.py, for thousands of rounds.

    sudo .venv/bin/python scripts/stress_escapes.py [--rounds N] [--seconds S] [--race NAME]

Outside CI: the attack suite runs each race for a few seconds; this runs
the same racers (tests/container/escape_races.py, one module for both)
for as long as asked.  Each race creates containers from a busybox bundle
while ``escape_probe swap`` exchanges a name in the rootfs with a symlink
to the host (/dev/null while devices are made and paths masked,
/dev/console while the terminal is bound; a mount's target, with and
without a mount namespace, with a user namespace), and checks the host
after every create.  It prints, per race, the rounds, the
creates the race made fail (init refused the racer's symlink) and every
escape found; it exits 1 if any race found an escape or an error it does
not explain, 0 otherwise.

Needs root, a C compiler with static glibc and a static busybox
(scripts/bootstrap.sh installs them).  Leaves nothing: its bundles and
state live in a temporary directory it removes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

TESTS = pathlib.Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "container")]

import escape_races  # noqa: E402
from bundles import BUSYBOX, build_busybox_rootfs, runc_spec  # noqa: E402

#: name -> how to run that race: (probe, make_bundle, state_dir, tmp, rounds, seconds) -> Tally
RACES: Dict[str, Callable[..., escape_races.Tally]] = {
    "dev-chmod": lambda p, mb, sd, tmp, n, s: escape_races.device_chmod(p, mb, sd, tmp, n, s),
    "masked-null": lambda p, mb, sd, tmp, n, s: escape_races.masked_null(p, mb, sd, n, s),
    "console": lambda p, mb, sd, tmp, n, s: escape_races.console(p, mb, sd, n, s),
    "mount-target": lambda p, mb, sd, tmp, n, s: escape_races.mount_target(
        p, mb, sd, tmp, n, s),
    "mount-target-host-mount-ns": lambda p, mb, sd, tmp, n, s: escape_races.mount_target(
        p, mb, sd, tmp, n, s, with_mountns=False),
    "mount-target-userns": lambda p, mb, sd, tmp, n, s: escape_races.mount_target(
        p, mb, sd, tmp, n, s, with_userns=True),
}


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2000, help="creates per race (2000)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="at most this long per race (default: no limit)")
    ap.add_argument("--race", action="append", choices=sorted(RACES),
                    help="only this race (repeatable; default: all)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("stress_escapes: needs root (containers, mounts, cgroups)", file=sys.stderr)
        return 2
    if BUSYBOX is None:
        print("stress_escapes: needs a static busybox (scripts/bootstrap.sh)", file=sys.stderr)
        return 2
    base = pathlib.Path(tempfile.mkdtemp(prefix="pidsafe-stress-escapes-"))
    os.chmod(base, 0o755)   # a user namespace's root walks to its rootfs
    failed = False
    try:
        probe = escape_races.build_probe(base)
        if probe is None:
            print("stress_escapes: needs a C compiler (scripts/bootstrap.sh)", file=sys.stderr)
            return 2
        image = build_busybox_rootfs(base / "image", BUSYBOX)
        for name in args.race or list(RACES):
            work = base / name
            work.mkdir()
            state = work / "state"
            state.mkdir()
            count = [0]

            def make_bundle(cmd: List[str], edit: Callable[[Dict[str, Any]], None]
                            = lambda d: None, work: pathlib.Path = work) -> pathlib.Path:
                count[0] += 1
                bundle = work / f"bundle{count[0]}"
                shutil.copytree(image, bundle / "rootfs", symlinks=True)
                os.chmod(bundle / "rootfs", 0o755)
                doc = copy.deepcopy(runc_spec(cmd))
                edit(doc)
                (bundle / "config.json").write_text(json.dumps(doc))
                return bundle

            start = time.monotonic()
            tally = RACES[name](probe, make_bundle, state, work, args.rounds, args.seconds)
            took = time.monotonic() - start
            print(f"{name}: {tally.rounds} rounds in {took:.0f} s, {tally.refused} refused, "
                  f"{tally.followed} followed inside the root, "
                  f"{len(tally.escapes)} escapes", flush=True)
            for what in tally.escapes:
                print(f"  ESCAPE {what}")
            for what in tally.unexpected:
                print(f"  UNEXPECTED {what}")
            if not tally.refused:
                print("  (the racer never won a round: this race proved nothing)")
            left = sorted(os.listdir(state))
            if left:
                print(f"  LEFT in the state directory: {left}")
            failed = failed or bool(tally.escapes or tally.unexpected or left)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
