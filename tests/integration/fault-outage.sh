#!/usr/bin/env bash
# Backend outage (issue 8 "backend outage", issue 5 "backpressure"), nfs
# backend: the ganesha server goes away for STAGEFS_OUTAGE_SECS (default
# 35) seconds while a writer streams into an open file and a reader reads
# cached data (O_DIRECT, so every read reaches the daemon).
#   - the writer keeps going into the cache and gets no error;
#   - reads of cached data keep going and are right;
#   - a fresh open+read of a cached file and a read of an uncached file,
#     both started during the outage, wait and then succeed once the
#     server is back (they must not hang for ever);
#   - after the restart everything flushes, flush_retries > 0, and the
#     export holds exactly what was written.
# STAGEFS_OUTAGE_MODE=stop (default: ganesha is stopped and started again,
# connections are refused meanwhile) or freeze (SIGSTOP: calls hang).
#
# Then a server restart during a large fsync'ed write (issue 13): a fresh
# mount, `dd conv=fsync` of STAGEFS_RESTART_MIB (default 512) MiB written
# at STAGEFS_RESTART_RATE_MIB (default 64) MiB/s, and in the middle of it
# ganesha stops, stays down 5 s and starts
# again (a new write verifier: uncommitted writes are lost); the stop
# starts once 64 MiB are on the export.
#   - its fsync returns within STAGEFS_RESTART_DRAIN_MAX (default 120) s of the
#     restart, or the test fails (it once never ended: a livelock);
#   - the upload is back at half its speed before the outage within 10 s
#     of the restart (or done by then);
#   - the export holds exactly the bytes written, and flush_errors did
#     not grow: lost unstable writes are sent again (flush_rewrites), not
#     counted as errors.
# Its figure: "drain after restart: S s" (from the restart to the fsync's return).
# STAGEFS_OUTAGE_RESTART_ONLY=1 runs only this part.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp
secs=${STAGEFS_OUTAGE_SECS:-35}
mode=${STAGEFS_OUTAGE_MODE:-stop}
rate_mib=4   # MiB per second from the writer

# A server restart during a large write with conv=fsync (see the top).
restart_during_fsync() {
	local size_mib=${STAGEFS_RESTART_MIB:-512} drain_max=${STAGEFS_RESTART_DRAIN_MAX:-120}
	local down=5 rmnt big_sum errors0 errors rewrites0 rewrites sampler ddpid
	local t_stop t_up t_end ended i rc drain pre back post dirty_stop
	local rate=${STAGEFS_RESTART_RATE_MIB:-64}
	make_backend nfs
	rmnt=$TEST_TMP/rmnt
	mount_stagefs "$BACKEND" "$rmnt" "$TEST_TMP/rcache"
	dd if=/dev/urandom of="$TEST_TMP/big.src" bs=1M count="$size_mib" status=none
	big_sum=$(xxh "$TEST_TMP/big.src")
	errors0=$(ctr "$rmnt" flush_errors)
	rewrites0=$(ctr "$rmnt" flush_rewrites)

	# Samples of bytes_flushed, ten a second, from the control socket.
	python3 - "$(ctl_sock "$rmnt")" "$TEST_TMP/rsamples" "$TEST_TMP/rstop" <<'PY' &
import json, os, socket, sys, time
sock, out, stop = sys.argv[1:4]
with open(out, "w") as f:
    while not os.path.exists(stop):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(sock)
            s.sendall(b"stats json\n")
            b = b""
            while True:
                r = s.recv(65536)
                if not r:
                    break
                b += r
            s.close()
            st = json.loads(b.decode().split("\n", 1)[1])
            print(f"{time.time():.3f} {st['bytes_flushed']} {st['dirty_bytes']}", file=f, flush=True)
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.1)
PY
	sampler=$!
	at_exit "touch '$TEST_TMP/rstop'; kill $sampler 2>/dev/null || true"
	# dd conv=fsync, paced so that the restart falls in the middle of it
	# however fast this machine uploads.
	python3 - "$TEST_TMP/big.src" "$rmnt/big" "$rate" 2>"$TEST_TMP/dd.err" <<'PY' &
import os, sys, time
src, dst, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
fi = open(src, "rb")
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0, k = time.time(), 0
while True:
    b = fi.read(1 << 20)
    if not b:
        break
    os.write(fd, b)
    k += 1
    d = t0 + k / rate - time.time()
    if d > 0:
        time.sleep(d)
os.fsync(fd)
os.close(fd)
PY
	ddpid=$!
	at_exit "kill $ddpid 2>/dev/null || true"
	wait_secs 120 counter_ge "$rmnt" bytes_flushed $((64 << 20)) \
		|| fail "64 MiB did not reach the export within 120 s"
	t_stop=$(date +%s.%N)
	dirty_stop=$(ctr "$rmnt" dirty_bytes)
	at_exit "\"$SRC_ROOT/tests/nfs-server\" status >/dev/null 2>&1 || \"$SRC_ROOT/tests/nfs-server\" restart >/dev/null 2>&1 || true"
	nfs_server restart --down "$down" >"$TEST_TMP/restart.out" 2>&1 \
		|| fail "could not restart the NFS server: $(tail -n 5 "$TEST_TMP/restart.out")"
	t_up=$(date +%s.%N)
	info "ganesha stopped with $((dirty_stop >> 20)) MiB dirty, back after ${down} s with $(($(ctr "$rmnt" dirty_bytes) >> 20)) MiB dirty"
	ended=0
	for ((i = 0; i < drain_max * 10; i++)); do
		if ! kill -0 "$ddpid" 2>/dev/null; then
			ended=1
			break
		fi
		sleep 0.1
	done
	t_end=$(date +%s.%N)
	touch "$TEST_TMP/rstop"
	if [[ $ended -ne 1 ]]; then
		fail "the fsync still waits ${drain_max} s after the server came back: $(ctr "$rmnt" dirty_bytes) dirty bytes, flush_errors $(ctr "$rmnt" flush_errors), flush_queue $(ctr "$rmnt" flush_queue) (see $(stagefs_log "$rmnt"))"
	fi
	rc=0
	wait "$ddpid" || rc=$?
	[[ $rc -eq 0 ]] || fail "the write and fsync failed (status $rc): $(cat "$TEST_TMP/dd.err")"
	wait "$sampler" 2>/dev/null || true
	errors=$(ctr "$rmnt" flush_errors)
	rewrites=$(ctr "$rmnt" flush_rewrites)
	unmount_stagefs "$rmnt" || fail "daemon exit status $?"
	[[ $(xxh "$BACKEND_DIR/big") == "$big_sum" ]] \
		|| fail "the file written across the restart differs on the export"
	[[ $errors -eq $errors0 ]] \
		|| fail "flush_errors grew from $errors0 to $errors across a server restart: lost unstable writes are no error"

	# The figures: speed before the outage, and how soon after it was back.
	read -r drain pre back post < <(python3 - "$TEST_TMP/rsamples" "$t_stop" "$t_up" "$t_end" <<'PY'
import sys
rows = [tuple(map(float, l.split()[:2])) for l in open(sys.argv[1]) if len(l.split()) >= 2]
t_stop, t_up, t_end = map(float, sys.argv[2:5])
def at(t):  # bytes_flushed at time t (last sample before)
    v = rows[0][1]
    for ts, b in rows:
        if ts > t:
            break
        v = b
    return v
win = max(0.3, min(2, t_stop - rows[0][0]))       # up to 2 s before
pre = (at(t_stop) - at(t_stop - win)) / win
back = t_end - t_up                                # done, if never at speed
t = t_up
while t + 1 <= t_end:
    if at(t + 1) - at(t) >= pre / 2:
        back = t - t_up
        break
    t += 0.25
post = (at(t_end) - at(t_up)) / max(t_end - t_up, 0.001)
print(f"{t_end - t_up:.1f} {pre / 1e6:.0f} {back:.1f} {post / 1e6:.0f}")
PY
	)
	info "$(wc -l <"$TEST_TMP/rsamples") samples of bytes_flushed"
	info "drain after restart: ${drain} s (write of $size_mib MiB at $rate MiB/s + fsync, ganesha down ${down} s); upload ${pre} MB/s before the outage, back at half of it ${back} s after the restart, ${post} MB/s on average after it; flush_rewrites +$((rewrites - rewrites0)), flush_errors +0"
	python3 -c "import sys; sys.exit(0 if float('$back') <= 10 else 1)" \
		|| fail "the upload was not back at half its speed before the outage (${pre} MB/s) within 10 s of the restart: ${back} s"
	info "ok: $size_mib MiB written across a server restart are on the export; drain after restart ${drain} s"
}

if [[ ${STAGEFS_OUTAGE_RESTART_ONLY:-0} == 1 ]]; then
	restart_during_fsync
	exit 0
fi

make_backend nfs
mnt=$TEST_TMP/mnt
mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache"

dd if=/dev/urandom of="$BACKEND_DIR/R" bs=1M count=32 status=none
dd if=/dev/urandom of="$BACKEND_DIR/U" bs=1M count=16 status=none
dd if=/dev/urandom of="$TEST_TMP/src" bs=1M count=64 status=none
r_sum=$(xxh "$BACKEND_DIR/R")
u_sum=$(xxh "$BACKEND_DIR/U")
[[ $(xxh "$mnt/R") == "$r_sum" ]] || fail "R: first read differs"
touch "$mnt/W"
# Node B, offline=wait, knows the name N; during the outage another node
# (here: the export directory itself) moves that file away and makes a
# new N.  B's open of N, started during the outage, must read the new N
# once the server is back, not the file the name led to before.
mntb=$TEST_TMP/mnt.b
mount_stagefs "$BACKEND" "$mntb" "$TEST_TMP/cache.b" offline=wait
echo "N before the outage" >"$BACKEND_DIR/N"
[[ $(cat "$mntb/N") == "N before the outage" ]] || fail "B: first read of N differs"

# The stream: writer and reader threads, one line per event with a time.
python3 - "$mnt" "$TEST_TMP/src" "$BACKEND_DIR/R" "$TEST_TMP/stop" "$rate_mib" >"$TEST_TMP/stream.out" 2>&1 <<'PY' &
import mmap, os, sys, threading, time
mnt, src, ref, stop, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
srcdata = open(src, "rb").read()
refdata = open(ref, "rb").read()
lock = threading.Lock()
def say(*a):
    with lock:
        print(f"{time.time():.3f}", *a, flush=True)
w = os.open(os.path.join(mnt, "W"), os.O_WRONLY)
r = os.open(os.path.join(mnt, "R"), os.O_RDONLY | os.O_DIRECT)
def writer():
    k = 0
    t0 = time.time()
    while not os.path.exists(stop):
        piece = srcdata[(k % 64) << 20:((k % 64) + 1) << 20]
        try:
            os.pwrite(w, piece, k << 20)
        except OSError as e:
            say("WERR", k, e.errno); return
        k += 1
        say("W", k)
        # pace: rate MiB/s
        d = t0 + k / rate - time.time()
        if d > 0:
            time.sleep(d)
    try:
        os.close(w)
        say("WCLOSED", k)
    except OSError as e:
        say("WCLOSEERR", e.errno)
def reader():
    buf = mmap.mmap(-1, 4 << 20)
    n = 0
    while not os.path.exists(stop):
        off = (n % 8) << 22
        try:
            got = os.preadv(r, [buf], off)
        except OSError as e:
            say("RERR", off, e.errno); return
        if got != 4 << 20 or buf[:] != refdata[off:off + (4 << 20)]:
            say("RBAD", off, got); return
        n += 1
        say("R", n)
        time.sleep(0.05)
    say("RDONE", n)
tw = threading.Thread(target=writer); tr = threading.Thread(target=reader)
tw.start(); tr.start(); tw.join(); tr.join()
say("DONE")
PY
spid=$!
at_exit "touch '$TEST_TMP/stop'; kill $spid 2>/dev/null || true"
wait_secs 30 grep -q ' R 3$' "$TEST_TMP/stream.out" || fail "the stream did not start: $(tail -n 5 "$TEST_TMP/stream.out")"
sleep 2
retries0=$(ctr "$mnt" flush_retries)

# ---- outage
case $mode in
stop)
	at_exit "\"$SRC_ROOT/tests/nfs-server\" status >/dev/null 2>&1 || \"$SRC_ROOT/tests/nfs-server\" restart >/dev/null 2>&1 || true"
	nfs_server stop >/dev/null 2>&1
	;;
freeze) freeze_nfs ;;
*) fail "STAGEFS_OUTAGE_MODE must be stop or freeze, not '$mode'" ;;
esac
t_down=$(date +%s.%N)
info "server down ($mode) for ${secs}s"
sleep 3
# Started during the outage: must wait and then succeed.
(xxh "$mnt/R" >"$TEST_TMP/open_cached.out" 2>&1; echo "rc=$?" >>"$TEST_TMP/open_cached.out") &
oc=$!
(xxh "$mnt/U" >"$TEST_TMP/read_uncached.out" 2>&1; echo "rc=$?" >>"$TEST_TMP/read_uncached.out") &
ru=$!
at_exit "kill $oc $ru 2>/dev/null || true"
mv "$BACKEND_DIR/N" "$BACKEND_DIR/N.moved"
echo "N made during the outage" >"$BACKEND_DIR/N"
(cat "$mntb/N" >"$TEST_TMP/read_renamed.out" 2>&1; echo "rc=$?" >>"$TEST_TMP/read_renamed.out") &
rn_pid=$!
at_exit "kill $rn_pid 2>/dev/null || true"
sleep $((secs - 3))
t_up=$(date +%s.%N)
dirty_out=$(ctr "$mnt" dirty_bytes)
case $mode in
stop) nfs_server restart >/dev/null 2>&1 || fail "could not start the NFS server again" ;;
freeze) thaw_nfs ;;
esac
info "server back after $(python3 -c "print(round($t_up - $t_down, 1))") s; dirty_bytes at the end of the outage: $dirty_out"

# What the stream did while the server was away.
read -r wn rn errs < <(python3 - "$TEST_TMP/stream.out" "$t_down" "$t_up" <<'PY'
import sys
t0, t1 = float(sys.argv[2]) + 1, float(sys.argv[3])
w = r = 0; errs = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 2: continue
    if f[1] in ("WERR", "RERR", "RBAD", "WCLOSEERR"): errs.append(line.strip())
    try: t = float(f[0])
    except ValueError: continue
    if t0 <= t <= t1:
        if f[1] == "W": w += 1
        if f[1] == "R": r += 1
print(w, r, "|".join(errs).replace(" ", "_") or "-")
PY
)
[[ $errs == - ]] || fail "errors in the stream during the outage: $errs"
want=$(( (secs - 2) * rate_mib / 2 ))
[[ $wn -ge $want ]] || fail "the writer made $wn MiB of progress during the ${secs}s outage (expected >= $want at $rate_mib MiB/s): writes stalled"
[[ $rn -ge 20 ]] || fail "only $rn cached reads completed during the outage: reads of cached data stalled"
info "during the outage: $wn MiB written, $rn cached 4 MiB reads verified"

# The opens/reads started during the outage finish now.
wait_secs 90 bash -c "! kill -0 $oc 2>/dev/null && ! kill -0 $ru 2>/dev/null" \
	|| fail "an open or read started during the outage still hangs 90 s after the server came back"
grep -q "^$r_sum" "$TEST_TMP/open_cached.out" && grep -q 'rc=0' "$TEST_TMP/open_cached.out" \
	|| fail "open+read of a cached file during the outage: $(cat "$TEST_TMP/open_cached.out")"
grep -q "^$u_sum" "$TEST_TMP/read_uncached.out" && grep -q 'rc=0' "$TEST_TMP/read_uncached.out" \
	|| fail "read of an uncached file during the outage: $(cat "$TEST_TMP/read_uncached.out")"
wait_secs 90 bash -c "! kill -0 $rn_pid 2>/dev/null" \
	|| fail "B: the open of N started during the outage still hangs 90 s after the server came back"
[[ $(cat "$TEST_TMP/read_renamed.out") == $'N made during the outage\nrc=0' ]] \
	|| fail "B (offline=wait): the open of N started during the outage read '$(cat "$TEST_TMP/read_renamed.out")', not the N made during the outage"
info "B (offline=wait): an open of a name changed during the outage reads the new file"
unmount_stagefs "$mntb" || fail "B: daemon exit status $?"

# Stop the stream; the close (flush_on_close=sync) uploads the rest.
sleep 2
touch "$TEST_TMP/stop"
wait_secs 180 grep -q DONE "$TEST_TMP/stream.out" || fail "the stream did not finish within 180 s of the restart (close waiting for the upload?)"
wait "$spid" || true
grep -q WCLOSED "$TEST_TMP/stream.out" || fail "closing W failed: $(tail -n 3 "$TEST_TMP/stream.out")"
sfs_flush "$mnt" 120
retries=$(ctr "$mnt" flush_retries)
nw=$(awk '$2 == "WCLOSED" { print $3 }' "$TEST_TMP/stream.out")
unmount_stagefs "$mnt" || fail "daemon exit status $?"
out=$(python3 - "$BACKEND_DIR/W" "$TEST_TMP/src" "$nw" <<'PY'
import sys
w, src, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
data = open(w, "rb").read()
if len(data) != n << 20:
    print(f"W has {len(data)} bytes on the export, {n << 20} written"); sys.exit(1)
for k in range(n):
    if data[k << 20:(k + 1) << 20] != src[(k % 64) << 20:((k % 64) + 1) << 20]:
        print(f"W differs in MiB {k}"); sys.exit(1)
print(n << 20)
PY
) || fail "after the outage: $out"
[[ $(xxh "$BACKEND_DIR/R") == "$r_sum" && $(xxh "$BACKEND_DIR/U") == "$u_sum" ]] || fail "R or U changed on the export"
info "$out bytes written across the outage are on the export"
[[ $((retries - retries0)) -gt 0 ]] || fail "flush_retries did not grow during a ${secs}s outage with dirty data ($retries0 -> $retries)"
info "ok: $out bytes written across the outage verified on the export, flush_retries +$((retries - retries0))"

restart_during_fsync
