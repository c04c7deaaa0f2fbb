#!/bin/bash
# containerd.sh [--runtime BINARY] [--v1-view] [--keep]: Debian's containerd (1.6) drives pidsafe-runc through its runc
# shim (io.containerd.runc.v2), end to end.  Opt-in, root only, not part of CI: it installs containerd and busybox-static
# with apt-get when missing, starts a private containerd (own root, state and socket under $WORK, default
# /tmp/pidsafe-containerd), imports a hand-made OCI image of busybox (no network), and checks, through `ctr`:
#   run --rm (stdout, exit status), run -d, task exec (also with a terminal), task ps, the cgroup containerd asks for (/<namespace>/<id>),
#   pause (the kernel's freezer says frozen) and resume, metrics (real memory and pids figures from that cgroup),
#   an out-of-memory kill reaching `ctr events` as /tasks/oom, kill --all, rm, and run -t (a terminal).
# Every argv the shim passes to the runtime is logged (through a wrapper) and printed at the end.
#   --runtime BINARY  the runtime to drive (default: this checkout's .venv/bin/pidsafe-runc; runc or crun work too)
#   --v1-view         run everything in a private mount namespace without /sys/fs/cgroup/unified (a pure cgroup v1 view,
#                     for crun 1.8, which refuses hybrid cgroups)
#   --keep            keep $WORK (logs, argv log) afterwards
# Exit status 0 iff every check passed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
RT=$HERE/.venv/bin/pidsafe-runc
V1VIEW=0; KEEP=0
ARGS=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RT=$2; shift ;;
    --v1-view) V1VIEW=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--runtime BINARY] [--v1-view] [--keep]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
RT=$(command -v "$RT") || { echo "no such runtime: $RT (run scripts/bootstrap.sh first?)" >&2; exit 2; }

for p in containerd busybox-static; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >&2
done

if [ "$V1VIEW" = 1 ] && [ -z "${CONTAINERD_SH_PRIVATE:-}" ]; then
  exec env CONTAINERD_SH_PRIVATE=1 unshare -m --propagation private \
    sh -c 'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec bash "$0" "$@"' "$0" "${ARGS[@]}"
fi

W=${WORK:-/tmp/pidsafe-containerd}
SOCK=$W/containerd.sock
NS=pidsafe-test
IMAGE=localhost/pidsafe-busybox:latest

if [ -f "$W/containerd.pid" ] && kill -0 "$(cat "$W/containerd.pid")" 2>/dev/null; then
  echo "a containerd from an earlier run is still alive (pid $(cat "$W/containerd.pid")); stop it first" >&2; exit 1
fi
awk -v r="$W/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
rm -rf "$W"; mkdir -p "$W"/{root,state,tmp,runtime-root,rootfs}

# ---- the runtime, wrapped: every argv the shim passes is logged ----
ARGV_LOG=$W/runtime-argv.log
cat > "$W/runtime" <<EOF
#!/bin/bash
printf '%s %s\n' "\$(date +%T.%3N)" "\$(printf '%q ' "\$@")" >> $ARGV_LOG
exec $RT "\$@"
EOF
chmod +x "$W/runtime"

# ---- a busybox image (OCI archive, no network) ----
BB=$(command -v busybox)
R=$W/rootfs
mkdir -p "$R"/{bin,dev,etc,proc,root,run,sys,tmp,usr,var/tmp}
chmod 1777 "$R/tmp" "$R/var/tmp"
ln -s bin "$R/sbin"; ln -s ../bin "$R/usr/bin"; ln -s ../bin "$R/usr/sbin"
cp "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$R/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > "$R/etc/group"
python3 "$HERE/scripts/oci_image.py" "$R" "$W/image.tar" "$IMAGE"

# ---- a private containerd ----
cat > "$W/config.toml" <<EOF
version = 2
root = "$W/root"
state = "$W/state"
temp = "$W/tmp"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/opt"
EOF
containerd --config "$W/config.toml" > "$W/containerd.log" 2>&1 &
CPID=$!
echo "$CPID" > "$W/containerd.pid"
EVPID=""

our_shims() {   # containerd-shim processes started by our containerd (their argv has "-address $SOCK")
  local f; for f in /proc/[0-9]*/cmdline; do
    { tr '\0' '\n' < "$f"; } 2>/dev/null | awk -v s="$SOCK" 'NR == 1 && $0 !~ /containerd-shim/ { exit 1 }
      prev == "-address" && $0 == s { found = 1 } { prev = $0 } END { exit !found }' \
      && { f=${f#/proc/}; echo "${f%/cmdline}"; }
  done; true
}
C="timeout 60 ctr -a $SOCK -n $NS"
cleanup() {
  set +e
  [ -n "$EVPID" ] && kill "$EVPID" 2>/dev/null && wait "$EVPID" 2>/dev/null
  for c in $($C task ls -q 2>/dev/null); do $C task kill -s KILL "$c" >/dev/null 2>&1; $C task rm -f "$c" >/dev/null 2>&1; done
  for c in $($C container ls -q 2>/dev/null); do $C container rm "$c" >/dev/null 2>&1; done
  for p in $(our_shims); do kill "$p" 2>/dev/null; done
  kill "$CPID" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$CPID" 2>/dev/null; wait "$CPID" 2>/dev/null
  awk -v r="$W/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  [ -S /run/containerd/containerd.sock ] || { rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null; true; }
  [ "$KEEP" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

for _ in $(seq 100); do [ -S "$SOCK" ] && ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr -a "$SOCK" version >/dev/null || { echo "containerd did not come up:" >&2; cat "$W/containerd.log" >&2; exit 1; }
$C images import "$W/image.tar" >/dev/null
$C events > "$W/events.log" 2>&1 &
EVPID=$!

STATUS=0
RUNTIME="--runc-binary $W/runtime --runc-root $W/runtime-root"
step() {   # step NAME EXPECTED_RC EXPECTED_OUTPUT_REGEX CMD...
  local name=$1 want_rc=$2 want_out=$3 out rc; shift 3
  echo "--- $name" >> "$ARGV_LOG"
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  if [ "$rc" = "$want_rc" ] && [[ $out =~ $want_out ]]; then echo "  ok   $name"
  else echo "  FAIL $name: rc=$rc out=$(printf '%q' "$out")"; STATUS=1; fi
}
check() {   # check NAME COMMAND...: a shell test
  if "${@:2}"; then echo "  ok   $1"; else echo "  FAIL $1"; STATUS=1; fi
}
not() { ! "$@"; }
cgroup_path() {   # the task's cgroup: its v1 memory one, else its v2 one
  awk -F: '$2 ~ /(^|,)memory(,|$)/ { m = $3 } $1 == "0" { u = $3 } END { print (m != "" ? m : u) }' "/proc/$1/cgroup"
}
task_pid() { $C task ls | awk -v id="$1" '$1 == id { print $2 }'; }
# The directory of the task's cgroup for a v1 controller (or v2: controller ""), from /proc/PID/cgroup.
cgroup_dir() {
  local pid=$1 ctl=$2 line mnt
  if [ -z "$ctl" ]; then
    line=$(awk -F: '$1 == "0" { print $3 }' "/proc/$pid/cgroup")
    mnt=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
  else
    line=$(awk -F: -v c="$ctl" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' "/proc/$pid/cgroup")
    mnt=$(awk -v c="$ctl" '$9 == "cgroup" { n = split($NF, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) { print $5; exit } }' /proc/self/mountinfo)
  fi
  echo "$mnt$line"
}
kernel_frozen() {   # the task's cgroup is frozen by either freezer
  local pid=$1 d
  d=$(cgroup_dir "$pid" "")
  [ -f "$d/cgroup.events" ] && grep -qx 'frozen 1' "$d/cgroup.events" && return 0
  d=$(cgroup_dir "$pid" freezer)
  [ -f "$d/freezer.state" ] && [ "$(cat "$d/freezer.state")" = FROZEN ]
}

echo "runtime=$RT  containerd=$(containerd --version | awk '{print $3}')  cgroup-v1-view=$([ "$V1VIEW" = 1 ] && echo yes || echo no)"
step "run --rm: output and exit status" 3 '^ok$' $C run --rm $RUNTIME "$IMAGE" t-rm /bin/sh -c 'echo ok; exit 3'
step "run -d"                0 '^$'        $C run -d $RUNTIME "$IMAGE" t-d /bin/sleep 300
PID=$(task_pid t-d)
check "its cgroup is /$NS/t-d, as containerd asked" test "$(cgroup_path "$PID")" = "/$NS/t-d"
step "task exec"             5 'exec-ok'   $C task exec --exec-id e1 t-d /bin/sh -c 'echo exec-ok; exit 5'
step "task exec -t"          6 '/dev/pts/[0-9]' script -qec "$C task exec -t --exec-id e2 t-d /bin/sh -c 'tty; exit 6'" /dev/null
step "task ps"               0 "$PID"      $C task ps t-d
step "task pause"            0 '^$'        $C task pause t-d
step "task ls: PAUSED"       0 't-d +[0-9]+ +PAUSED' $C task ls
check "the kernel's freezer has it frozen" kernel_frozen "$PID"
step "task resume"           0 '^$'        $C task resume t-d
check "thawed" not kernel_frozen "$PID"
step "task metrics: memory and pids from its cgroup" 0 'memory.usage_in_bytes +[1-9][0-9]*.*pids.current +[1-9]' \
  bash -c "$C task metrics t-d | tr '\n' ' '"
step "task kill --all"       0 '^$'        $C task kill --all -s SIGKILL t-d
step "until STOPPED"         0 'STOPPED'   bash -c "for i in \$(seq 100); do $C task ls | grep -q 't-d.*STOPPED' && break; sleep 0.1; done; $C task ls"
step "task rm"               0 ''          $C task rm t-d
step "container rm"          0 '^$'        $C container rm t-d
# Out of memory: the shim watches the memory cgroup it finds through the task's pid (from Start on); an exec'd hog
# is OOM-killed in it and the kill reaches ctr events.
step "run -d with a 16 MiB limit" 0 '^$' $C run -d --memory-limit 16777216 $RUNTIME "$IMAGE" t-oom /bin/sleep 300
step "exec a memory hog: OOM-killed" 137 '' $C task exec --exec-id hog t-oom /bin/sh -c 'tail /dev/zero'
check "/tasks/oom in ctr events" bash -c "for i in \$(seq 50); do grep -q ' /tasks/oom .*t-oom' '$W/events.log' && exit 0; sleep 0.1; done; exit 1"
step "task kill, rm"         0 ''          bash -c "$C task kill -s KILL t-oom; for i in \$(seq 100); do $C task ls | grep -q 't-oom.*STOPPED' && break; sleep 0.1; done; $C task rm t-oom && $C container rm t-oom"
# A terminal: ctr needs a tty on its own stdin; script(1) gives it one.
step "run --rm -t"           4 '/dev/pts/0' script -qec "$C run --rm -t $RUNTIME $IMAGE t-tty /bin/sh -c 'tty; exit 4'" /dev/null

echo "runtime argv log:"
sed 's/^/  /' "$ARGV_LOG" 2>/dev/null || echo "  (the runtime was never called)"
[ "$STATUS" = 0 ] && echo PASS || echo FAIL
exit "$STATUS"
