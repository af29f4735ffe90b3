#!/usr/bin/env bash
# Never stuck, never crashed (issue 14), nfs backend: two stagefs mounts of
# one export (node A with flush_on_close=sync and offline=serve, node B with
# async and offline=wait; both with entry_timeout=0,attr_timeout=0 so that
# a read on one node after a close on the other sees it, close-to-open)
# each run a seeded writer
# (chaos-worker.py: open/pwrite at sparse offsets/ftruncate/pread/fsync/
# close/rename/unlink on its own subtree, reads of the other node's closed
# files, `stagefsctl evict` of its open files, and `rm -rf` of one of its
# directories straight on the export while descriptors there are open).
# Meanwhile this driver injects, one at a time at seeded moments:
#   nfs    ganesha stops, stays down 2-6 s, starts again
#   kill   kill -9 of one daemon, restart on the same cache dir
#   full   the node's cache file system (a tmpfs of its own) filled up
#          by another file for 2-6 s
# The mountpoints sit on a read-only tmpfs: while a killed daemon is being
# restarted, the writers' calls fail instead of landing on local disk.
#
# The oracle:
#   - no call hangs: none lasts longer than HANG_BOUND = FAULT_MAX (10 s,
#     the longest fault: down or full for at most 6 s, plus ganesha's
#     start) + retry_deadline_ms (60 s, backend/nfs.c NFS_DEF_RETRY_MS) +
#     a 30 s margin.  The backend is `hard`: during an outage calls wait
#     for the server, so the bound counts from the call's start and covers
#     an outage that starts just after it.  A watchdog reads each writer's
#     current call once a second and fails the test (with every thread's
#     stack of both daemons) when one passes the bound; the writers report
#     their slowest call of each kind, and that must be under it too;
#   - no daemon dies but by our kill -9 (checked every second), each exits
#     0 when unmounted at the end, and no daemon log holds a sanitizer
#     report (the ASan build: tests/run --sanitize);
#   - a read (own descriptor, own mount, or the other node after a close
#     that acknowledged the data) never returns bytes other than those
#     written.  One exception, documented in docs/consistency.md: node A
#     (offline=serve) may open its cached copy of B's file without the
#     close-to-open check while the server is down; a read on A that
#     overlaps an outage (or its first 15 s after) and shows older bytes is
#     counted in the summary instead.  B (offline=wait) has no exception
#     but one open bug: a read through B across an outage returned the
#     older bytes once in a 2,400 s run (seed 2492680924); such a read is
#     counted as xreads_stale_wait_bug with a WARNING line, and fails the
#     test with STAGEFS_CHAOS_STRICT=1 (set by the soak run) until fixed;
#   - at the end the faults stop, each writer settles (closes its files,
#     rewrites the ones whose state a failed call left unknown, fsyncs the
#     rest, and reads all back through both nodes: here every call must
#     succeed), both mounts are unmounted, and the export holds exactly
#     every acknowledged file (fsync, or close on node A), no deleted one
#     and nothing else.  Calls that fail while a fault runs are expected:
#     they are counted by errno in the summary and only make the files they
#     touched unknown.
#
# Environment: STAGEFS_CHAOS_SECS (how long faults are injected, default
# 180; -Dsoak=true registers soak-chaos with 3600), STAGEFS_CHAOS_SEED
# (default: a new one each run, printed; the fault schedule and the
# writers' ops follow it, their timing does not).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
need_cmd fallocate util-linux
need_stagefsctl
setup_tmp

secs=${STAGEFS_CHAOS_SECS:-180}
seed=${STAGEFS_CHAOS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
RETRY_DEADLINE_S=60
FAULT_MAX=10
HANG_BOUND=$((FAULT_MAX + RETRY_DEADLINE_S + 30))
SETTLE_MAX=600
WORKER=$LIB_DIR/chaos-worker.py
RANDOM=$seed
info "seed $seed, faults for ${secs}s, hang bound ${HANG_BOUND}s" \
	"(STAGEFS_CHAOS_SEED=$seed STAGEFS_CHAOS_SECS=$secs to rerun)"

make_backend nfs
mp=$TEST_TMP/mp
mkdir "$mp"
mount -t tmpfs -o size=1m,mode=0755 tmpfs "$mp" || skip "cannot mount a tmpfs"
mkdir "$mp/A" "$mp/B"
mount -o remount,ro "$mp" || fail "cannot make $mp read-only"
declare -A cfs=([A]=$TEST_TMP/cfs.A [B]=$TEST_TMP/cfs.B)
for n in A B; do
	mkdir "${cfs[$n]}"
	mount -t tmpfs -o size=192m,mode=0700 tmpfs "${cfs[$n]}" || fail "cannot mount a tmpfs on ${cfs[$n]}"
done
declare -A opts=([A]="flush_on_close=sync offline=serve entry_timeout=0 attr_timeout=0"
	[B]="flush_on_close=async offline=wait entry_timeout=0 attr_timeout=0")
declare -A wpid=()
stop=$TEST_TMP/stop
# "down T" or "up T" around each server outage, for the writers.
export CHAOS_NFS_EPOCH=$TEST_TMP/nfs-epoch
echo "up 0" >"$CHAOS_NFS_EPOCH"

# shellcheck disable=SC2317  # called at exit
chaos_cleanup() {
	local n
	touch "$stop"
	for n in A B; do
		[[ -z "${wpid[$n]:-}" ]] || kill "${wpid[$n]}" 2>/dev/null || true
	done
	"$SRC_ROOT/tests/nfs-server" status >/dev/null 2>&1 \
		|| "$SRC_ROOT/tests/nfs-server" restart >/dev/null 2>&1 || true
	for n in A B; do
		[[ -z "$(stagefs_pid "$mp/$n")" ]] || unmount_stagefs "$mp/$n" || true
		rm -f "${cfs[$n]}/filler"
		umount "${cfs[$n]}" 2>/dev/null || umount -l "${cfs[$n]}" 2>/dev/null || true
	done
	umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
}
at_exit chaos_cleanup

# shellcheck disable=SC2086  # the options split on purpose
mount_node() { mount_stagefs "$BACKEND" "$mp/$1" "${cfs[$1]}/cache" ${opts[$1]}; }

# stacks: every thread's stack of both daemons and the writers' kernel stacks.
stacks() {
	local n pid
	for n in A B; do
		pid=$(stagefs_pid "$mp/$n")
		[[ -n "$pid" ]] || continue
		echo "--- threads of stagefs $n (pid $pid) ---" >&2
		timeout 60 gdb -p "$pid" -batch -nx -ex 'thread apply all bt' 2>/dev/null \
			| grep -E '^(Thread|#)' >&2 || true
		pid=${wpid[$n]:-}
		[[ -z "$pid" ]] || { echo "--- kernel stack of writer $n (pid $pid) ---" >&2; cat "/proc/$pid/stack" >&2 2>/dev/null || true; }
	done
}

# watch: one look at the daemons and the writers; fails the test on a dead
# daemon, a dead writer (before the end) or a call past the hang bound.
watch() {
	local n pid t0 op path now rc
	now=$(date +%s)
	for n in A B; do
		pid=$(stagefs_pid "$mp/$n")
		if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
			wait "$pid" 2>/dev/null && rc=0 || rc=$?
			log_tail "$mp/$n" 60
			fail "daemon $n (pid $pid) died with status $rc and nobody killed it (seed $seed)"
		fi
		if [[ ! -f "$stop" ]] && ! pid_alive "${wpid[$n]}"; then
			tail -n 20 "$TEST_TMP/worker.$n.out" >&2
			fail "writer $n exited before the end (seed $seed)"
		fi
		read -r t0 op path <"$TEST_TMP/status.$n" 2>/dev/null || continue
		[[ "$t0" != idle && -n "$t0" ]] || continue
		if ((now - ${t0%.*} > HANG_BOUND)); then
			stacks
			log_tail "$mp/A" 40
			log_tail "$mp/B" 40
			fail "writer $n: $op $path has been waiting $((now - ${t0%.*})) s, past the bound of ${HANG_BOUND} s (seed $seed; faults so far: $(fault_list))"
		fi
	done
}

# pause SECS: sleep while watching.
pause() {
	local end=$((SECONDS + $1))
	while ((SECONDS < end)); do
		watch
		sleep 1
	done
}

declare -A nfaults=([nfs]=0 [kill]=0 [full]=0)
fault_log=$TEST_TMP/faults.log
: >"$fault_log"
fault_list() { tr '\n' ';' <"$fault_log"; }
note() {
	local t
	t=$(date +%s.%N | cut -c1-14)
	echo "$t $*" >>"$fault_log"
	info "$t fault: $*"
}

f_nfs() {
	local down=$((2 + RANDOM % 5))
	note "ganesha down ${down}s"
	echo "down $(date +%s.%N)" >"$CHAOS_NFS_EPOCH"
	nfs_server restart --down "$down" >"$TEST_TMP/restart.out" 2>&1 \
		|| fail "could not restart the NFS server: $(tail -n 5 "$TEST_TMP/restart.out")"
	echo "up $(date +%s.%N)" >"$CHAOS_NFS_EPOCH"
	info "$(date +%s.%N | cut -c1-14) ganesha is back"
	nfaults[nfs]=$((nfaults[nfs] + 1))
}

f_kill() {
	local n=$1 pid gap=$((RANDOM % 3))
	pid=$(stagefs_pid "$mp/$n")
	pid_alive "$pid" || fail "daemon $n (pid $pid) was dead before the kill"
	note "kill -9 daemon $n (pid $pid), restart after ${gap}s"
	crash_stagefs "$mp/$n"
	sleep "$gap"
	mount_node "$n"
	nfaults[kill]=$((nfaults[kill] + 1))
}

f_full() {
	local n=$1 hold=$((2 + RANDOM % 5)) avail
	avail=$(df -B1 --output=avail "${cfs[$n]}" | tail -n1)
	note "cache fs of $n full for ${hold}s ($((avail >> 20)) MiB taken)"
	fallocate -l "$avail" "${cfs[$n]}/filler" 2>/dev/null \
		|| dd if=/dev/zero of="${cfs[$n]}/filler" bs=1M status=none 2>/dev/null || true
	pause "$hold"
	rm -f "${cfs[$n]}/filler"
	nfaults[full]=$((nfaults[full] + 1))
}

mount_node A
mount_node B
for n in A B; do
	other=B
	[[ $n == A ]] || other=A
	close_acks=0
	[[ $n == B ]] || close_acks=1
	: >"$TEST_TMP/status.$n"
	CHAOS_OTHER_STALE=0
	[[ $n == A ]] || CHAOS_OTHER_STALE=1
	CHAOS_OTHER_STALE=$CHAOS_OTHER_STALE python3 "$WORKER" run "$n" "$mp/$n" "$mp/$other" "$BACKEND_DIR" "$seed" "$close_acks" \
		"$STAGEFSCTL_BIN" "$TEST_TMP/status.$n" "$stop" "$TEST_TMP/model.$n.json" \
		>"$TEST_TMP/worker.$n.out" 2>&1 &
	wpid[$n]=$!
done

# ---- the faults
t_end=$((SECONDS + secs))
rounds=0
while ((SECONDS < t_end)); do
	pause $((2 + RANDOM % 7))
	((SECONDS < t_end)) || break
	node=A
	if ((RANDOM % 2)); then node=B; fi
	case $((RANDOM % 3)) in
	0) f_nfs ;;
	1) f_kill "$node" ;;
	2) f_full "$node" ;;
	esac
	rounds=$((rounds + 1))
done
pause 2

# ---- the end: settle, unmount, check the export
info "faults over after $rounds rounds; the writers settle"
"$SRC_ROOT/tests/nfs-server" status >/dev/null 2>&1 || fail "the NFS server is not up at the end"
touch "$stop"
end=$((SECONDS + SETTLE_MAX))
while pid_alive "${wpid[A]}" || pid_alive "${wpid[B]}"; do
	((SECONDS < end)) || { stacks; fail "the writers did not settle within ${SETTLE_MAX} s (seed $seed)"; }
	watch
	sleep 1
done
wrc=0
for n in A B; do
	grep -E 'after the server deleted|rm -rf' "$TEST_TMP/worker.$n.out" || true
	rc=0
	wait "${wpid[$n]}" || rc=$?
	wpid[$n]=
	if [[ $rc -ne 0 ]]; then
		grep -E 'VIOLATION|Traceback|Error' "$TEST_TMP/worker.$n.out" | head -n 30 >&2 || true
		grep -vE 'VIOLATION|after the server deleted|rm -rf' "$TEST_TMP/worker.$n.out" | tail -n 5 >&2
		echo "FAIL: $TEST_NAME: writer $n exited with status $rc (seed $seed)" >&2
		wrc=1
	fi
done
for n in A B; do
	rc=0
	unmount_stagefs "$mp/$n" || rc=$?
	[[ $rc -eq 0 ]] || { echo "FAIL: $TEST_NAME: daemon $n exited with status $rc at unmount (seed $seed)" >&2; wrc=1; }
done
if grep -lE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' \
	"$TEST_TMP"/stagefs.*.log >"$TEST_TMP/san.txt" 2>/dev/null; then
	while read -r f; do
		echo "--- sanitizer report in $f ---" >&2
		grep -A 30 -m 1 -E 'ERROR: |runtime error:' "$f" >&2
	done <"$TEST_TMP/san.txt"
	echo "FAIL: $TEST_NAME: a daemon log holds a sanitizer report (seed $seed)" >&2
	wrc=1
fi
check_out=$(python3 "$WORKER" check "$BACKEND_DIR" "$TEST_TMP/model.A.json" "$TEST_TMP/model.B.json" 2>&1) \
	|| { echo "$check_out" | head -n 40 >&2; echo "FAIL: $TEST_NAME: the export differs from what was acknowledged (seed $seed)" >&2; wrc=1; }
read -r _ vbytes vfiles < <(grep '^verified' <<<"$check_out" || echo "verified 0 0")

# ---- the summary
python3 - "$TEST_TMP/model.A.json" "$TEST_TMP/model.B.json" "$seed" "$secs" "$rounds" \
	"${nfaults[nfs]}" "${nfaults[kill]}" "${nfaults[full]}" "$vbytes" "$vfiles" "$HANG_BOUND" <<'PY' || true
import json, sys
ms = []
for f in sys.argv[1:3]:
    try:
        ms.append(json.load(open(f)))
    except (OSError, ValueError):
        pass
seed, secs, rounds, fn, fk, ff, vb, vf, bound = sys.argv[3:12]
S = lambda k: sum(m["counters"][k] for m in ms)
slow = max((m["counters"]["slowest"] + [m["node"]] for m in ms), default=[0, "-", "-", "-"])
errs = {}
for m in ms:
    for k, v in m["counters"]["errors"].items():
        errs[k] = errs.get(k, 0) + v
print(f"chaos summary: seed {seed}, {secs} s of faults, {rounds} rounds")
print(f"  faults: ganesha restart {fn}, kill -9 {fk}, cache full {ff}, "
      f"server-side rm -rf {S('server_deletes')}, evict of open files {S('evicts_ok')} ok / {S('evicts_err')} refused")
print(f"  ops {S('ops')}, acknowledgements {S('acks')} (sum of the file sizes at each: {S('bytes_acked')} bytes), "
      f"reads verified: own {S('reads_ok')}, other node {S('xreads_ok')} ({S('xreads_err')} failed during faults, "
      f"{S('xreads_stale_outage')} stale on A during an outage, "
      f"{S('xreads_stale_wait_bug')} stale on B across an outage: the open bug)")
print(f"  closes after the server deleted the file: {S('orphan_closes_ok')} returned 0, {S('orphan_closes_err')} an error")
print(f"  calls failed during faults: " + (", ".join(f"{k} {v}" for k, v in sorted(errs.items())) or "none"))
print(f"  verified at the end: {vb} bytes in {vf} files on the export, {S('settle_bytes')} bytes read back through the mounts")
print(f"  max call latency {slow[0]} s ({slow[1]} {slow[2]} on node {slow[3]}; bound {bound} s)")
for m in ms:
    print(f"  node {m['node']} slowest by call: " +
          ", ".join(f"{k} {v}" for k, v in sorted(m["counters"]["max_lat"].items())))
PY
for n in A B; do
	[[ -f "$TEST_TMP/model.$n.json" ]] || continue
	lat=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"]["slowest"][0])' "$TEST_TMP/model.$n.json")
	python3 -c "import sys; sys.exit(0 if $lat <= $HANG_BOUND else 1)" \
		|| { echo "FAIL: $TEST_NAME: writer $n had a call of $lat s, past the bound of $HANG_BOUND s" >&2; wrc=1; }
done
[[ $wrc -eq 0 ]] || fail "see above (seed $seed; STAGEFS_CHAOS_SEED=$seed to rerun the schedule)"
info "ok (seed $seed)"
