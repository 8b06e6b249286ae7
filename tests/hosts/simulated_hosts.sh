#!/usr/bin/env bash
# Simulated hosts on this machine (root): runs PROGRAM ARGS as an MPI job of HOSTS hosts x RANKS ranks. Each host
# is a network namespace with its own hostname and its own /dev/shm, its eth0 a veth on a bridge in a control
# namespace (a private /24 that exists only there); mpirun runs in the control namespace and starts each host's
# daemon through an rsh agent that enters the host. Passes when every rank prints "OK" or "equal to the reference",
# bytes crossed the links (the bridge ports' counters), and no host's /dev/shm keeps a moe_ep segment. Everything
# (processes, namespaces, scratch files) is torn down on exit, whatever happens.
#
#   simulated_hosts.sh HOSTS RANKS PROGRAM ARGS...     ("random" in ARGS: a fresh seed, printed first)
#
# MOE_EP_HOSTS_RELAY reaches the ranks: 1 two-level between hosts (the library's default), unset or 0 flat here,
# so that each test names the path it runs. MOE_EP_TIMEOUT_MS (default here 20000) and MOE_EP_HOSTS_MESSAGE_BYTES
# reach them too.
# MOE_EP_HOSTS_LIMIT_S=S: mpirun is ended after S seconds (default 240).
# MOE_EP_HOSTS_MIN_BYTES=N: more than N bytes must cross the links (default 64 KiB, less than any job moving rows).
# MOE_EP_HOSTS_SURVIVORS=N: a rank dies on purpose; N ranks must report success, then mpirun is ended here.
# MOE_EP_HOSTS_RATE=RATE (a tc rate such as 2gbit or 500mbit; unset: links as fast as the machine): shapes
#   every host's link to RATE in each direction with a token bucket filter (tc tbf, egress, burst 1 MB), on
#   the veth end inside the host (what it sends) and on its bridge port (what it receives), as a NIC of that
#   speed would. Ranks of one host still meet over shared memory, unshaped.
set -euo pipefail
if (($# < 3)); then
  echo "usage: simulated_hosts.sh HOSTS RANKS PROGRAM ARGS..." >&2
  exit 2
fi
for tool in ip unshare mpirun; do  # iproute2, util-linux, openmpi-bin: scripts/deps.sh iproute2 util-linux
  command -v "$tool" >/dev/null || { echo "simulated_hosts.sh needs '$tool' (scripts/deps.sh iproute2 util-linux)" >&2; exit 2; }
done
hosts=$1 per_host=$2
shift 2
np=$((hosts * per_host))
seed=${MOE_EP_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
args=()
for a in "$@"; do args+=("${a/random/$seed}"); done
echo "[moe_ep test] seed $seed (replay with MOE_EP_TEST_SEED=$seed)"

id=moeep$$                                 # prefix of every namespace this run makes
net=10.$((200 + $$ % 50)).$(($$ % 250)).0  # private /24 on the bridge only
prefix=${net%.0}
dir=$(mktemp -d /tmp/moe_ep_hosts.XXXXXX)
namespaces=("${id}ctl")
for i in $(seq 1 "$hosts"); do namespaces+=("${id}h$i"); done
cpu_group=""  # the CPU group every host's processes join (below)

cleanup() {
  set +e
  for ns in "${namespaces[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  for _ in $(seq 100); do  # a process leaves its namespace before it disappears: wait until all have
    local left=0
    for ns in "${namespaces[@]}"; do [[ -n "$(ip netns pids "$ns" 2>/dev/null)" ]] && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for ns in "${namespaces[@]}"; do
    ip netns delete "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  if [[ -n $cpu_group ]]; then  # a process outside the namespaces (timeout) may outlive them: end it first
    for _ in $(seq 20); do
      xargs -r kill -9 <"$cpu_group/cgroup.procs" 2>/dev/null
      rmdir "$cpu_group" 2>/dev/null && break
      sleep 0.1
    done
    [[ -d $cpu_group ]] && echo "[moe_ep test] warning: could not remove $cpu_group"
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

ctl=${id}ctl
ip netns add "$ctl"
ip -n "$ctl" link set lo up
ip -n "$ctl" link add br0 type bridge
ip -n "$ctl" addr add "$prefix.254/24" dev br0
ip -n "$ctl" link set br0 up
{
  echo "127.0.0.1 localhost"
  echo "$prefix.254 ctl"
  for i in $(seq 1 "$hosts"); do echo "$prefix.$i h$i"; done
} >"$dir/hosts"
for i in $(seq 1 "$hosts"); do
  ns=${id}h$i
  ip netns add "$ns"
  ip -n "$ctl" link add "p$i" type veth peer name eth0 netns "$ns"
  ip -n "$ctl" link set "p$i" master br0 up
  ip -n "$ns" addr add "$prefix.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
rate=${MOE_EP_HOSTS_RATE:-}
if [[ -n $rate ]]; then
  for i in $(seq 1 "$hosts"); do
    ip netns exec "${id}h$i" tc qdisc add dev eth0 root tbf rate "$rate" burst 1mb latency 50ms
    ip netns exec "$ctl" tc qdisc add dev "p$i" root tbf rate "$rate" burst 1mb latency 50ms
  done
  echo "[moe_ep test] every host's link shaped to $rate each way (tc tbf)"
fi
for ns in "${namespaces[@]}"; do
  mkdir -p "/etc/netns/$ns"
  cp "$dir/hosts" "/etc/netns/$ns/hosts"
done

# Every host's daemon and ranks share one CPU group (a cgroup of the cpu controller). Why: each host's daemon starts
# a session of its own, and the kernel schedules sessions as groups (autogroup). With more ranks than cores, ranks
# of one host that spin in a blocking MPI call (each turn a sched_yield) kept every rank of the other host off the
# cores for 35-40 s at a time on Linux 6.18, and moe_ep's deadline expired there (docs/hosts.md). Real hosts have
# cores of their own; these share the machine's, so they share them as one group.
if [[ -w /sys/fs/cgroup/cpu/cgroup.procs ]]; then  # cgroup v1
  cpu_group=/sys/fs/cgroup/cpu/$id
elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then  # cgroup v2, cpu controller on
  cpu_group=/sys/fs/cgroup/$id
fi
# (A group left by a run that was killed, whose pid this run got, is empty: removed and made again.) Jobs run at once
# get a group each, which the kernel shares fairly between them.
if [[ -n $cpu_group ]] && ! { mkdir "$cpu_group" || { rmdir "$cpu_group" && mkdir "$cpu_group"; }; } 2>/dev/null; then
  cpu_group=""
fi
[[ -n $cpu_group ]] || echo "[moe_ep test] warning: no cpu cgroup: each host's ranks are scheduled as a group of their own"
# Runs COMMAND in the CPU group, its children too (joined here: inside a namespace /sys is the namespace's own).
in_cpu_group() {
  if [[ -n $cpu_group ]] && ! echo "$BASHPID" 2>/dev/null >"$cpu_group/cgroup.procs"; then
    echo "[moe_ep test] warning: could not join $cpu_group: each host's ranks are scheduled as a group of their own"
  fi
  exec "$@"
}

# The rsh agent: `agent [-x] HOST COMMAND...` runs COMMAND in HOST's namespace with its hostname and a fresh
# /dev/shm (its ranks inherit both); afterwards it records any moe_ep segment left in that /dev/shm.
cat >"$dir/agent" <<EOF
#!/bin/sh
while [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1
shift
exec ip netns exec ${id}\$host unshare --uts --mount --propagation private sh -c '
  hostname "\$0"; mount -t tmpfs -o size=4g tmpfs /dev/shm; mkdir -p /dev/shm/ompi
  sh -c "\$1"; status=\$?
  ls -A /dev/shm | grep "^moe_ep" > "$dir/left.\$0" || true
  exit \$status' "\$host" "\$*"
EOF
chmod +x "$dir/agent"

before=0
for i in $(seq 1 "$hosts"); do before=$((before + $(ip netns exec "$ctl" cat "/sys/class/net/p$i/statistics/rx_bytes"))); done

# No leak check in sanitizer builds: Open MPI leaves allocations of plugins it has unloaded, which no
# suppression can name (the rest of the suite checks moe_ep's own leaks).
hostlist=$(for i in $(seq 1 "$hosts"); do printf 'h%s:%s,' "$i" "$per_host"; done)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$dir/tmp"
# With a rank that dies on purpose (MOE_EP_HOSTS_SURVIVORS < ranks) mpirun never exits by itself: it is ended
# here once the survivors have reported, as a launcher would.
expected=${MOE_EP_HOSTS_SURVIVORS:-$np}
status=0
in_cpu_group timeout -k 5 "${MOE_EP_HOSTS_LIMIT_S:-240}" ip netns exec "$ctl" mpirun -np "$np" -H "${hostlist%,}" \
  --mca plm_rsh_agent "$dir/agent" --mca plm_rsh_no_tree_spawn 1 \
  --mca btl tcp,vader,self --mca btl_tcp_if_include "$net/24" --mca oob_tcp_if_include "$net/24" \
  --mca btl_vader_backing_directory /dev/shm/ompi --mca orte_tmpdir_base "$dir/tmp" \
  --bind-to none --mca mpi_yield_when_idle 1 --mca orte_abort_on_non_zero_status 0 \
  -x MOE_EP_TIMEOUT_MS="${MOE_EP_TIMEOUT_MS:-20000}" -x MOE_EP_HOSTS_RELAY="${MOE_EP_HOSTS_RELAY:-0}" \
  -x MOE_EP_HOSTS_MESSAGE_BYTES="${MOE_EP_HOSTS_MESSAGE_BYTES:-}" \
  -x ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
  "${args[@]}" >"$dir/out" 2>&1 &
mpirun_pid=$!
while kill -0 "$mpirun_pid" 2>/dev/null; do
  if ((expected < np)) && (($(grep -cE "OK$|equal to the reference" "$dir/out" || true) >= expected)); then
    sleep 1
    kill -TERM "$mpirun_pid" 2>/dev/null || true
    break
  fi
  sleep 0.2
done
wait "$mpirun_pid" || status=$?
((expected < np)) && status=0  # ended by us; the survivors' reports are the verdict
cat "$dir/out"

after=0
for i in $(seq 1 "$hosts"); do after=$((after + $(ip netns exec "$ctl" cat "/sys/class/net/p$i/statistics/rx_bytes"))); done
crossed=$((after - before))
good=$(grep -cE "OK$|equal to the reference" "$dir/out" || true)
left=$(cat "$dir"/left.* 2>/dev/null || true)
echo "hosts: $hosts x $per_host ranks; $crossed bytes crossed the links; $good of $expected ranks reported success"
fail=0
[[ $status -eq 0 ]] || { echo "FAIL: mpirun exited $status"; fail=1; }
[[ $good -eq $expected ]] || { echo "FAIL: not every rank reported success"; fail=1; }
# Ended by this script, the job's status says nothing: a survivor's failure after its report is in its output.
if grep -qE "^FAIL|^MISMATCH|Sanitizer" "$dir/out"; then
  echo "FAIL: a rank reported a failure"
  fail=1
fi
min_bytes=${MOE_EP_HOSTS_MIN_BYTES:-65536}
[[ $crossed -gt $min_bytes ]] || { echo "FAIL: only $crossed bytes crossed the links: the job did not span hosts"; fail=1; }
[[ -z "$left" ]] || { echo "FAIL: segments left in a host's /dev/shm: $left"; fail=1; }
exit $fail
