#!/usr/bin/env bash
# Eviction and backpressure (issue 5 "eviction", "backpressure"), nfs
# backend, -o cache_size=64M,chunk_size=4M (dirty_max defaults to 32M):
#
# 1. Reading 3 x 64 MiB of backend files through the mount keeps
#    cache_used_bytes, sampled all along, and the disk space the cache dir
#    really uses, within cache_size + one eviction batch (16 chunks), with
#    chunks_evicted > 0 and every byte right.
# 2. Writing 3 x 64 MiB through the mount: the same bound, and everything
#    lands on the backend.
# 3. Dirty data is never evicted and writers wait: with the server frozen,
#    a writer of 96 MiB (more than cache_size) blocks without error once
#    dirty_bytes passes dirty_max; cache_used_bytes stays >= dirty_bytes.
#    After the thaw the writer finishes and every byte lands.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp
csize=$((64 << 20))
chunk=$((4 << 20))
limit=$((csize + 16 * chunk))
verified=0

make_backend nfs
mnt=$TEST_TMP/mnt
cache=$TEST_TMP/cache
# The daemon path: a passthrough writer is not held back by cache_size
# (docs/tuning.md), and passthrough reads need no eviction of their own.
mount_stagefs "$BACKEND" "$mnt" "$cache" cache_size=64M chunk_size=4M passthrough=off

# sample_usage OUT: every 0.1 s, "cache_used_bytes dirty_bytes du_bytes".
sample_usage() {
	local sock
	sock=$(ctl_sock "$mnt")
	python3 - "$sock" "$cache/data" "$1" <<'PY' &
import json, os, socket, sys, time
sock, data, out = sys.argv[1:4]
with open(out, "w") as f:
    while True:
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(sock)
            s.sendall(b"stats json\n"); b = b""
            while True:
                x = s.recv(65536)
                if not x: break
                b += x
            s.close()
            st = json.loads(b.split(b"\n", 1)[1])
            du = sum(os.stat(os.path.join(data, n)).st_blocks * 512 for n in os.listdir(data))
            f.write(f"{st['cache_used_bytes']} {st['dirty_bytes']} {du}\n"); f.flush()
        except Exception as e:
            f.write(f"# {e}\n"); f.flush()
        time.sleep(0.1)
PY
	SAMPLER=$!
	at_exit "kill $SAMPLER 2>/dev/null || true"
	# The sampler is sampling before the I/O starts (python starts
	# slowly on a loaded machine, and a warm read can take under 1 s).
	wait_secs 20 test -s "$1" || fail "the usage sampler did not start"
}
# check_usage FILE WHAT: max of the samples within the limit.
check_usage() {
	local max
	kill "$SAMPLER" 2>/dev/null || true
	wait "$SAMPLER" 2>/dev/null || true
	max=$(awk '!/^#/ { if ($1 > u) u = $1; if ($3 > d) d = $3 } END { print u + 0, d + 0, NR }' "$1")
	set -- $max "$2"
	info "$4: max cache_used_bytes $1, max disk use of data/ $2 ($3 samples; limit $limit)"
	[[ $3 -ge 3 ]] || fail "$4: too few usage samples ($3)"
	[[ $1 -le $limit ]] || fail "$4: cache_used_bytes reached $1, over cache_size + one batch ($limit)"
	[[ $2 -le $limit ]] || fail "$4: cache data files used $2 bytes of disk, over cache_size + one batch ($limit)"
}

# 1. reads
for i in 1 2 3; do
	dd if=/dev/urandom of="$BACKEND_DIR/r$i" bs=1M count=64 status=none
done
sample_usage "$TEST_TMP/use.read"
for i in 1 2 3; do
	[[ $(xxh "$mnt/r$i") == "$(xxh "$BACKEND_DIR/r$i")" ]] || fail "read: r$i differs"
	verified=$((verified + (64 << 20)))
done
sleep 0.5
check_usage "$TEST_TMP/use.read" "read 192 MiB"
ev=$(ctr "$mnt" chunks_evicted)
[[ $ev -gt 0 ]] || fail "read 192 MiB with cache_size=64M: chunks_evicted is 0"
info "read: ok, chunks_evicted=$ev"

# 2. writes
for i in 1 2 3; do
	dd if=/dev/urandom of="$TEST_TMP/w$i" bs=1M count=64 status=none
done
sample_usage "$TEST_TMP/use.write"
for i in 1 2 3; do
	dd if="$TEST_TMP/w$i" of="$mnt/w$i" bs=1M status=none || fail "write: w$i failed"
done
sfs_flush "$mnt" 120
sleep 0.5
check_usage "$TEST_TMP/use.write" "write 192 MiB"
ev2=$(ctr "$mnt" chunks_evicted)
[[ $ev2 -gt $ev ]] || fail "write 192 MiB with cache_size=64M: chunks_evicted did not grow ($ev)"
for i in 1 2 3; do
	same_file "$TEST_TMP/w$i" "$BACKEND_DIR/w$i"
	verified=$((verified + (64 << 20)))
done
info "write: ok, chunks_evicted=$ev2"

# 3. frozen server: writers wait, dirty data stays
dmax=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("dirty_max", 33554432))' "$(sfs_stats "$mnt")")
dd if=/dev/urandom of="$TEST_TMP/big" bs=1M count=96 status=none
python3 - "$mnt/big" "$TEST_TMP/big" "$TEST_TMP/go" >"$TEST_TMP/w.out" 2>&1 <<'PY' &
import os, sys, time
path, src, go = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
done = 0
with open(src, "rb") as f:
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        os.write(fd, b)
        done += len(b)
        with open(go + ".progress", "w") as p:
            p.write(str(done))
print("WRITTEN", flush=True)
os.close(fd)
print("CLOSED", flush=True)
PY
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
wait_secs 30 grep -q READY "$TEST_TMP/w.out" || fail "frozen: writer did not start: $(cat "$TEST_TMP/w.out")"
sample_usage "$TEST_TMP/use.frozen"
freeze_nfs
touch "$TEST_TMP/go"
sleep 8
pid_alive "$wpid" || fail "frozen: the writer ended while the server was frozen: $(cat "$TEST_TMP/w.out")"
grep -q WRITTEN "$TEST_TMP/w.out" && fail "frozen: 96 MiB were accepted with the server frozen (dirty_max $dmax did not hold the writer)"
prog=$(cat "$TEST_TMP/go.progress" 2>/dev/null || echo 0)
dirty=$(ctr "$mnt" dirty_bytes)
used=$(ctr "$mnt" cache_used_bytes)
info "frozen: writer waits after $prog bytes; dirty_bytes=$dirty used=$used dirty_max=$dmax"
[[ $dirty -gt 0 ]] || fail "frozen: nothing dirty"
[[ $dirty -le $((dmax + (2 << 20))) ]] || fail "frozen: dirty_bytes $dirty is over dirty_max $dmax"
[[ $used -ge $dirty ]] || fail "frozen: cache_used_bytes $used < dirty_bytes $dirty (dirty data evicted?)"
thaw_nfs
wait_secs 120 grep -q CLOSED "$TEST_TMP/w.out" || fail "frozen: the writer did not finish within 120 s of the thaw"
wait "$wpid" || fail "frozen: the writer got an error: $(cat "$TEST_TMP/w.out")"
sfs_flush "$mnt" 120
kill "$SAMPLER" 2>/dev/null || true
# dirty never above what is present
awk '!/^#/ && $2 > $1 { print "sample: used " $1 " < dirty " $2; bad = 1 } END { exit bad }' "$TEST_TMP/use.frozen" \
	|| fail "frozen: cache_used_bytes fell below dirty_bytes"
unmount_stagefs "$mnt" || fail "daemon exit status $?"
same_file "$TEST_TMP/big" "$BACKEND_DIR/big"
verified=$((verified + (96 << 20)))
info "ok: $verified bytes verified"
