#!/usr/bin/env bash
# One file, many nodes (issue 11): 2 and 4 stagefs mounts of one nfs export
# stand for nodes.  A file is created through the first mount; then one
# process per mount opens it read-write and writes its own records,
# interleaved with the others' (record k goes to mount k % N), none
# overlapping: MPI-IO, IOR's shared-file mode, one region per rank.  Once
# all have closed, the export and every mount must hold every record.
#
# Rounds (record sizes 1, 4096, 47008, 65536 and 1 MiB):
#   - 2 and 4 mounts, flush_on_close=sync: checked right after the closes;
#   - 2 mounts, flush_on_close=async: checked after stagefsctl flush;
#   - 2 mounts, async, one daemon killed -9 right after its writer closed
#     and started again on the same cache dir: the journal's byte ranges
#     go out at the restart, and no record is lost;
#   - 2 and 4 mounts, "create": no file beforehand, every writer opens it
#     with O_CREAT, so the first one creates it empty, and with
#     passthrough=auto (on Linux 6.9+) the writers that find it empty write it
#     through the kernel: their uploads must leave the others' records
#     alone (records of 64 bytes and more; docs/consistency.md);
#   - 2 mounts, "create-kill": as "create", with the server frozen while
#     the writers write and close, so that nothing is uploaded; mount 1 is
#     killed -9 once its release has hashed what the kernel wrote, mount 0
#     uploads its records after the thaw, and then mount 1 starts again on
#     its cache dir: its replay must send its records as its uploads would
#     have, without the zeros between them (where mount 0's records are).
# A line per round gives the records wrong on the export (the table of
# the issue); any wrong record fails the test.
#
# Then tail -F: a process on mount A appends a line to a log and fsyncs it
# every 0.3 s, keeping the file open; `tail -F` of the log on mount B must
# print each line within twice attr_timeout.
#
# STAGEFS_SHARED_SIZES overrides the record sizes (e.g. "65536 1048576").
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
need_cmd tail
setup_tmp

make_backend nfs
SIZES=${STAGEFS_SHARED_SIZES:-1 4096 47008 65536 1048576}
WRITER=$TEST_TMP/writer.py
cat >"$WRITER" <<'PY'
# writer.py PATH NODE NNODES RECSIZE FILESIZE GO [create]: write this
# node's records (create: open with O_CREAT)
import os, sys, time
path, node, nn, rs, size, go = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
flags = os.O_RDWR | (os.O_CREAT if sys.argv[7:8] == ["create"] else 0)
def rec(k, n):
    b = (k * 2654435761 + 12345).to_bytes(8, "little")
    return (b * (n // 8 + 1))[:n]
fd = os.open(path, flags, 0o644)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
k = node
while k * rs < size:
    n = min(rs, size - k * rs)
    os.pwrite(fd, rec(k, n), k * rs)
    k += nn
os.close(fd)
print("CLOSED", flush=True)
PY
CHECK=$TEST_TMP/check.py
cat >"$CHECK" <<'PY'
# check.py PATH RECSIZE FILESIZE: print the number of wrong records
import sys
path, rs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def rec(k, n):
    b = (k * 2654435761 + 12345).to_bytes(8, "little")
    return (b * (n // 8 + 1))[:n]
data = open(path, "rb").read()
total = (size + rs - 1) // rs
wrong = 0 if len(data) == size else total
if not wrong:
    for k in range(total):
        n = min(rs, size - k * rs)
        if data[k * rs:k * rs + n] != rec(k, n):
            wrong += 1
print(f"{wrong} {total}")
PY

# A file of a size that keeps the 1-byte and 4 KiB rounds short: with two
# writers, each of their writes leaves a gap in its block and uploads the
# last one first.
file_size() {
	case $1 in
	1) echo 4096 ;;
	4096) echo $((1 << 20)) ;;
	*) echo $((16 << 20)) ;;
	esac
}

# all_closed N: writers 0..N-1 have written and closed.
all_closed() {
	local i
	for ((i = 0; i < $1; i++)); do
		grep -q CLOSED "$TEST_TMP/w$i.out" || return 1
	done
}

# round NMOUNTS RECSIZE MODE(sync|async|kill|create|create-kill): one
# shared-file round
round() {
	local n=$1 rs=$2 mode=$3 size i pids=() name res wrong total opt
	size=$(file_size "$rs")
	name=shared-$n-$rs-$mode
	opt=flush_on_close=sync
	[[ $mode == sync || $mode == create ]] || opt=flush_on_close=async
	[[ $mode != create* ]] || opt="$opt,passthrough=auto"
	for ((i = 0; i < n; i++)); do
		mount_stagefs "$BACKEND" "$TEST_TMP/m$i" "$TEST_TMP/c$name-$i" "$opt"
	done
	# Created through the first mount, with bytes that no record has.
	if [[ $mode != create* ]]; then
		head -c "$size" /dev/zero | tr '\0' '\356' >"$TEST_TMP/m0/$name"
		sync "$TEST_TMP/m0/$name"
	fi
	rm -f "$TEST_TMP/go"
	for ((i = 0; i < n; i++)); do
		python3 "$WRITER" "$TEST_TMP/m$i/$name" "$i" "$n" "$rs" "$size" \
			"$TEST_TMP/go" "$([[ $mode == create* ]] && echo create)" \
			>"$TEST_TMP/w$i.out" 2>&1 &
		pids+=($!)
		at_exit "kill ${pids[-1]} 2>/dev/null || true"
	done
	for ((i = 0; i < n; i++)); do
		wait_secs 30 grep -q READY "$TEST_TMP/w$i.out" \
			|| fail "$name: writer $i did not open the file: $(cat "$TEST_TMP/w$i.out")"
	done
	local frozen=0 pt0 pt1
	if [[ $mode == create-kill ]]; then
		# The writes go to the cache files without the daemons only
		# through passthrough; a write through a daemon may wait for
		# the server, and a frozen one would hold it for ever.
		pt0=$(ctr "$TEST_TMP/m0" passthrough_opens)
		pt1=$(ctr "$TEST_TMP/m1" passthrough_opens)
		if [[ $pt0 -ge 1 && $pt1 -ge 1 ]]; then
			freeze_nfs
			frozen=1
		else
			info "$name: the writers' opens are not both passthrough (mount 0: $pt0, mount 1: $pt1); no freeze"
		fi
	fi
	touch "$TEST_TMP/go"
	if ((frozen)) && ! wait_secs 60 all_closed "$n"; then
		# Say where each writer waits before the thaw lets it go.
		for ((i = 0; i < n; i++)); do
			info "$name: writer $i: $(tr '\n' ' ' <"$TEST_TMP/w$i.out"); in the kernel: $(tr '\n' ' ' </proc/"${pids[$i]}"/stack 2>/dev/null || true)"
			info "$name: mount $i: passthrough_opens $(ctr "$TEST_TMP/m$i" passthrough_opens), dirty_bytes $(ctr "$TEST_TMP/m$i" dirty_bytes); daemon threads waiting in:$(for t in /proc/"$(stagefs_pid "$TEST_TMP/m$i")"/task/*; do printf ' %s' "$(cat "$t"/comm)/$(cat "$t"/wchan)"; done 2>/dev/null)"
		done
		thaw_nfs
		fail "$name: the passthrough writers did not write and close within 60 s with the server frozen"
	fi
	for ((i = 0; i < n; i++)); do
		wait "${pids[$i]}" || fail "$name: writer $i failed: $(cat "$TEST_TMP/w$i.out")"
	done
	if ((frozen)); then
		# The release hashes what the kernel wrote: wait until mount 1
		# counts its half of the file dirty, then kill it.
		wait_secs 30 counter_ge "$TEST_TMP/m1" dirty_bytes $((size / 2 - rs)) \
			|| fail "$name: mount 1 has $(ctr "$TEST_TMP/m1" dirty_bytes) dirty bytes, not its records"
		info "$name: mount 1 has $(ctr "$TEST_TMP/m1" dirty_bytes) dirty bytes (passthrough: $(ctr "$TEST_TMP/m1" passthrough_opens) opens); kill -9"
		crash_stagefs "$TEST_TMP/m1"
		thaw_nfs
		sfs_flush "$TEST_TMP/m0" 120
		mount_stagefs "$BACKEND" "$TEST_TMP/m1" "$TEST_TMP/c$name-1" "$opt"
	fi
	if [[ $mode == kill ]]; then
		# Mount 1 dies with what it has not uploaded yet; it starts
		# again on its cache dir and replays the journal.
		info "$name: mount 1 has $(ctr "$TEST_TMP/m1" dirty_bytes) dirty bytes; kill -9"
		crash_stagefs "$TEST_TMP/m1"
		mount_stagefs "$BACKEND" "$TEST_TMP/m1" "$TEST_TMP/c$name-1" "$opt"
	fi
	if [[ $mode != sync ]]; then
		for ((i = 0; i < n; i++)); do
			sfs_flush "$TEST_TMP/m$i" 120
		done
	fi
	res=$(python3 "$CHECK" "$BACKEND_DIR/$name" "$rs" "$size")
	read -r wrong total <<<"$res"
	echo "[shared-file] record size $rs, $n mounts, $mode: $wrong of $total records wrong on the export"
	[[ $wrong -eq 0 ]] || fail "$name: $wrong of $total records wrong on the export"
	for ((i = 0; i < n; i++)); do
		res=$(python3 "$CHECK" "$TEST_TMP/m$i/$name" "$rs" "$size")
		read -r wrong total <<<"$res"
		[[ $wrong -eq 0 ]] || fail "$name: mount $i reads $wrong of $total records wrong"
	done
	for ((i = 0; i < n; i++)); do
		unmount_stagefs "$TEST_TMP/m$i" || fail "$name: mount $i: daemon exit status $?"
	done
}

for rs in $SIZES; do
	round 2 "$rs" sync
	round 4 "$rs" sync
	round 2 "$rs" async
	round 2 "$rs" kill
	if [[ $rs -ge 64 ]]; then
		round 2 "$rs" create
		round 4 "$rs" create
		round 2 "$rs" create-kill
	fi
done

# tail -F on B follows a log that A appends to, line by line.
AT=1
mount_stagefs "$BACKEND" "$TEST_TMP/mA" "$TEST_TMP/cA" attr_timeout=$AT
mount_stagefs "$BACKEND" "$TEST_TMP/mB" "$TEST_TMP/cB" attr_timeout=$AT
: >"$TEST_TMP/mA/job.log"
python3 - "$TEST_TMP/mA/job.log" "$TEST_TMP/go-log" "$TEST_TMP/sent" <<'PY' &
import os, sys, time
path, go, sent = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
while not os.path.exists(go):
    time.sleep(0.05)
with open(sent, "w") as log:
    for i in range(21):
        os.write(fd, f"step {i:02d} of the job\n".encode())
        os.fsync(fd)
        log.write(f"{i} {time.monotonic()}\n")
        log.flush()
        time.sleep(0.3)
    time.sleep(2 * 1 + 1)
os.close(fd)
PY
apid=$!
at_exit "kill $apid 2>/dev/null || true"
python3 - "$TEST_TMP/mB/job.log" "$TEST_TMP/got" <<'PY' &
import subprocess, sys, time
path, got = sys.argv[1:3]
p = subprocess.Popen(["tail", "-F", "-s", "0.2", path], stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL)
with open(got, "w") as log:
    for line in p.stdout:
        log.write(f"{line.decode().split()[1]} {time.monotonic()}\n")
        log.flush()
PY
tpid=$!
at_exit "kill $tpid 2>/dev/null || true"
sleep 1
touch "$TEST_TMP/go-log"
wait "$apid" || fail "tail: the appender on A failed"
sleep 1
kill "$tpid" 2>/dev/null || true
out=$(python3 - "$TEST_TMP/sent" "$TEST_TMP/got" "$AT" <<'PY'
import sys
sent = dict(l.split() for l in open(sys.argv[1]))
got = dict(l.split() for l in open(sys.argv[2]))
limit = 2 * float(sys.argv[3])
late = []
for i, t in sent.items():
    k = f"{int(i):02d}"
    if k not in got:
        late.append(f"line {k} never shown")
    elif float(got[k]) - float(t) > limit:
        late.append(f"line {k} shown {float(got[k]) - float(t):.2f} s after its write")
worst = max((float(got[f"{int(i):02d}"]) - float(t) for i, t in sent.items()
             if f"{int(i):02d}" in got), default=-1)
print(f"{len(got)} of {len(sent)} lines, worst delay {worst:.2f} s" +
      ("; " + ", ".join(late[:5]) if late else ""))
sys.exit(1 if late else 0)
PY
) || fail "tail -F on B: $out"
info "tail -F on B followed A's log: $out"
unmount_stagefs "$TEST_TMP/mA" || fail "A: daemon exit status $?"
unmount_stagefs "$TEST_TMP/mB" || fail "B: daemon exit status $?"
info "ok"
