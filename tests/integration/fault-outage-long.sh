#!/usr/bin/env bash
# A backend outage longer than every deadline (issue 15), nfs backend:
# ganesha stopped for STAGEFS_LONG_OUTAGE_SECS (default 150) s, longer
# than retry_deadline (60 s) and the drain's 60 s without progress.
#
# Three mounts of one export, each with its own cache dir:
#   H: hard (the default).  During the outage a reader opens by path,
#      fstat()s and reads files that are whole in the cache, again and
#      again, also after the kernel dropped its dentries and inodes
#      (drop_caches, as memory pressure would); a writer writes on through
#      a descriptor opened before, and creates and writes new files (in a
#      directory of their own: a create that waits for the server holds
#      its directory's lock); `ls -l` runs on a listed directory;
#      `stat` of a path this mount never looked up waits.  No call
#      returns an error; the reader's data is right and it keeps going
#      while the server is away (outage_wait, offline=serve: stale_opens
#      grows); the uncached stat returns once the server is back; every
#      byte written reaches the export.  The log says "not responding,
#      still trying" and then "OK"; `stagefsctl status` shows how long
#      the server has not answered.
#   S: soft.  The uncached stat fails after the retry deadline; the
#      cached reads go on.
#   W: offline=wait.  An open of a cached file waits for the server, and
#      then reads the right bytes; stale_opens stays 0.
#   U: hard, flush_on_close=async, with dirty data, unmounted during the
#      outage: the daemon stops waiting for the server, `stagefsctl U
#      status` and `stagefsctl CACHE_DIR status` still answer (they name
#      the drain), and it exits 1 within the bound; the journal keeps the data, and a mount of the same
#      cache dir after the outage uploads it.
#   V: the same, with SIGTERM to the daemon instead of an unmount.
# The timeline of every call (start, end, result; seconds from the stop)
# is printed.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp
secs=${STAGEFS_LONG_OUTAGE_SECS:-150}

make_backend nfs
mkdir "$BACKEND_DIR/D" "$BACKEND_DIR/N"
for i in 1 2 3 4; do
	dd if=/dev/urandom of="$BACKEND_DIR/C$i" bs=1M count=8 status=none
done
for i in $(seq 1 20); do echo "$i" >"$BACKEND_DIR/D/f$i"; done
echo uncached >"$BACKEND_DIR/X"
echo uncached >"$BACKEND_DIR/Y"
cp "$BACKEND_DIR"/C? "$TEST_TMP/"

H=$TEST_TMP/H S=$TEST_TMP/S U=$TEST_TMP/U W=$TEST_TMP/W V=$TEST_TMP/V
mount_stagefs "$BACKEND" "$H" "$TEST_TMP/cache.H"
mount_stagefs "$BACKEND" "$S" "$TEST_TMP/cache.S" soft
mount_stagefs "$BACKEND" "$W" "$TEST_TMP/cache.W" offline=wait
mount_stagefs "$BACKEND" "$U" "$TEST_TMP/cache.U" flush_on_close=async
mount_stagefs "$BACKEND" "$V" "$TEST_TMP/cache.V" flush_on_close=async
for m in "$H" "$S" "$W"; do
	for i in 1 2 3 4; do
		cmp -s "$m/C$i" "$TEST_TMP/C$i" || fail "$m/C$i: first read differs"
	done
	ls -l "$m/D" >/dev/null
done
touch "$H/W"
dd if=/dev/urandom of="$TEST_TMP/u.old" bs=1M count=8 status=none
dd if=/dev/urandom of="$TEST_TMP/u.src" bs=1M count=8 status=none
cp "$TEST_TMP/u.old" "$U/dirty"
cp "$TEST_TMP/u.old" "$V/vdirty"
sfs_flush "$U" 60
sfs_flush "$V" 60

# The calls, one line each: "<start> <end> <what> <result>", seconds
# from the stop (t0 is written when the server goes).
python3 - "$H" "$S" "$TEST_TMP" "$secs" "$W" >"$TEST_TMP/timeline" 2>&1 <<'PY' &
import os, subprocess, sys, threading, time
H, S, tmp, secs, W = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
while not os.path.exists(f"{tmp}/t0"):
    time.sleep(0.05)
t0 = float(open(f"{tmp}/t0").read())
stop = f"{tmp}/stop"
lock = threading.Lock()
ref = {i: open(f"{tmp}/C{i}", "rb").read() for i in range(1, 5)}

def rec(start, what, res):
    with lock:
        print(f"{start - t0:7.1f} {time.time() - t0:7.1f} {what} {res}", flush=True)

def call(what, fn):
    start = time.time()
    try:
        res = fn()
    except OSError as e:
        res = f"ERR:{e.errno}:{e.strerror}"
    rec(start, what, res)

def read_cached(m, i):
    def f():
        fd = os.open(f"{m}/C{i}", os.O_RDONLY)
        try:
            st = os.fstat(fd)
            data = b""
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                data += b
        finally:
            os.close(fd)
        return "ok" if data == ref[i] and st.st_size == len(ref[i]) else f"BAD:{len(data)}"
    return f

def reader(m, tag):
    k = 0
    while not os.path.exists(stop):
        i = k % 4 + 1
        call(f"{tag}:read:C{i}", read_cached(m, i))
        k += 1
        time.sleep(0.5)

def writer():
    fd = os.open(f"{H}/W", os.O_WRONLY)
    piece = os.urandom(1 << 20)
    open(f"{tmp}/W.piece", "wb").write(piece)
    k = 0
    while time.time() - t0 < secs + 10:
        def w():
            return "ok" if os.pwrite(fd, piece, k << 20) == len(piece) else "SHORT"
        call(f"H:write:W@{k}MiB", w)
        k += 1
        time.sleep(1)
    def c():
        os.close(fd)
        return f"ok:{k}"
    call("H:close:W", c)

def creator():
    time.sleep(10)
    for n in range(3):
        def cr():
            with open(f"{H}/N/new{n}", "wb") as f:
                f.write(piece_n(n))
            return "ok"
        call(f"H:create+write:new{n}", cr)

def piece_n(n):
    return bytes([n + 65]) * (1 << 20)

def ls(m, tag):
    time.sleep(15)
    def f():
        r = subprocess.run(["ls", "-l", f"{m}/D"], capture_output=True, text=True)
        return "ok" if r.returncode == 0 and r.stdout.count("\n") == 21 else f"ERR:ls:{r.returncode}:{r.stderr.strip()}"
    call(f"{tag}:ls-l:D", f)

def strict_open():
    time.sleep(10)
    call("W:read:C2", read_cached(W, 2))

def stat_uncached(m, tag, name):
    time.sleep(5)
    call(f"{tag}:stat:{name}", lambda: "ok" if os.stat(f"{m}/{name}").st_size == 9 else "BAD")

readers = [threading.Thread(target=reader, args=(H, "H")),
           threading.Thread(target=reader, args=(S, "S"))]
ts = [threading.Thread(target=writer), threading.Thread(target=creator),
      threading.Thread(target=ls, args=(H, "H")),
      threading.Thread(target=stat_uncached, args=(H, "H", "X")),
      threading.Thread(target=stat_uncached, args=(S, "S", "Y")),
      threading.Thread(target=strict_open)]
for t in readers + ts:
    t.start()
for t in ts:
    t.join()
open(stop, "w").close()     # the readers end with the other calls
for t in readers:
    t.join()
print("DONE", flush=True)
PY
tl=$!
at_exit "touch '$TEST_TMP/stop'; kill $tl 2>/dev/null || true"
at_exit "\"$SRC_ROOT/tests/nfs-server\" status >/dev/null 2>&1 || \"$SRC_ROOT/tests/nfs-server\" restart >/dev/null 2>&1 || true"

nfs_server stop >/dev/null 2>&1
date +%s.%N >"$TEST_TMP/t0.tmp"
mv "$TEST_TMP/t0.tmp" "$TEST_TMP/t0"
t0=$(cat "$TEST_TMP/t0")
since() { python3 -c "import time; print(round(time.time() - $t0, 1))"; }
info "server stopped for ${secs}s"

# U: written during the outage (an open served from the cache), then
# unmounted with that dirty data.
sleep 20
# In the background: a call that waits for the server would hold up the
# script, and so the restart (the at_exit restart ends the wait).
for f in "$U/dirty" "$V/vdirty"; do
	dd if="$TEST_TMP/u.src" of="$f" bs=1M conv=notrunc status=none &
	ddpid=$!
	wait_secs 60 bash -c "! kill -0 $ddpid 2>/dev/null" \
		|| fail "$f: a write to a cached file did not end within 60 s, during the outage; dd is in: $(cat /proc/$ddpid/stack 2>&1 | head -n 6 | tr '\n' ' ')"
	wait "$ddpid" || fail "$f: writing a cached file during the outage failed"
done
upid=$(stagefs_pid "$U")
u_dirty=$(ctr "$U" dirty_bytes)
[[ $u_dirty -gt 0 ]] || fail "U: no dirty data after a write during the outage"

fusermount3 -u "$U" || fail "fusermount3 -u $U failed during the outage"
info "U unmounted at $(since) s with $u_dirty dirty bytes"
# V: SIGTERM instead of an unmount, at the same time.
vpid=$(stagefs_pid "$V")
v_dirty=$(ctr "$V" dirty_bytes)
[[ $v_dirty -gt 0 ]] || fail "V: no dirty data after a write during the outage"
kill -TERM "$vpid"
info "V: SIGTERM at $(since) s with $v_dirty dirty bytes"
sleep 2
ust=$("$STAGEFSCTL_BIN" "$U" status 2>&1) || fail "stagefsctl $U status after the unmount: $ust"
grep -q "state *unmounted" <<<"$ust" || fail "stagefsctl status of an unmounted, draining daemon does not say so: $ust"
info "U after the unmount: $(grep state <<<"$ust")"
ust=$("$STAGEFSCTL_BIN" "$TEST_TMP/cache.U" status 2>&1) \
	|| fail "stagefsctl CACHE_DIR status after the unmount: $ust"
grep -q "state *unmounted" <<<"$ust" || fail "stagefsctl CACHE_DIR status of the draining daemon: $ust"
grep -q "unreachable" <<<"$ust" \
	|| fail "stagefsctl status does not show the server unreachable: $ust"
_lib_wait_exit "$upid" 150 || fail "U's daemon did not exit within 150 s of the unmount during the outage"
urc=$_LIB_RC
_lib_forget "$(_lib_abs "$U")"
info "U's daemon exited with $urc at $(since) s"
[[ $urc -eq 1 ]] || fail "U's daemon exited $urc with dirty data it could not upload (expected 1)"
grep -q "could not be uploaded (.*); they stay in" "$(stagefs_log "$U")" \
	|| fail "U's log does not say the dirty data stays for the next start"
_lib_wait_exit "$vpid" 150 || fail "V's daemon did not exit within 150 s of SIGTERM during the outage"
vrc=$_LIB_RC
_lib_forget "$(_lib_abs "$V")"
is_mounted "$V" && fusermount3 -uz "$V"
info "V's daemon (SIGTERM) exited with $vrc at $(since) s"
[[ $vrc -eq 1 ]] || fail "V's daemon exited $vrc after SIGTERM with dirty data it could not upload (expected 1)"
grep -q "could not be uploaded (.*); they stay in" "$(stagefs_log "$V")" \
	|| fail "V's log does not say the dirty data stays for the next start"

# The kernel drops its unused dentries and inodes (memory pressure does
# the same): the readers' next opens need a LOOKUP of a name whose inode
# the daemon was told to forget; it must still answer from what it knew.
echo 2 >/proc/sys/vm/drop_caches
t_drop=$(since)
info "dentries and inodes dropped at $t_drop s"
# Where the calls wait 20 s later, for a failure's report.
(sleep 20; for t in /proc/$tl/task/*; do echo "== $(cat "$t/comm") $(cat "$t/wchan" 2>/dev/null)"; cat "$t/stack" 2>/dev/null | head -n 8; done) >"$TEST_TMP/stacks" 2>&1 &

# H's status names the outage.
hst=$("$STAGEFSCTL_BIN" "$H" status 2>&1) || fail "stagefsctl $H status during the outage: $hst"
grep -q "^unreachable .*no answer for" <<<"$hst" || fail "H's status during the outage does not show it: $hst"
info "H during the outage: $(grep '^unreachable' <<<"$hst")"

sleep $((secs - $(since | cut -d. -f1)))
# From here on the server may answer: the calls that waited for it end
# after this moment.
t_up=$(since)
nfs_server restart >/dev/null 2>&1 || fail "could not start the NFS server again"
info "server restarted at ${t_up} s (up at $(since) s)"
wait_secs 240 grep -q '^DONE' "$TEST_TMP/timeline" \
	|| fail "the calls did not end within 240 s of the restart: $(tail -n 5 "$TEST_TMP/timeline")"
touch "$TEST_TMP/stop"
wait "$tl" || true

echo "--- timeline (seconds from the stop; server restarted at ${t_up} s): start end call result"
# The readers' lines, folded: one per run of the same result.
python3 - "$TEST_TMP/timeline" "$t_up" <<'PY'
import sys
lines = [l.split(None, 3) for l in open(sys.argv[1]) if l[0] != "D"]
runs = {}
for s, e, what, res in lines:
    tag = what.split(":")[0] + ":" + what.split(":")[1]
    if what.split(":")[1] in ("read", "write"):
        key = (tag, res.strip())
        r = runs.get(key)
        if r:
            r[1] = e; r[2] += 1; r[3] = max(r[3], float(e) - float(s))
        else:
            runs[key] = [s, e, 1, float(e) - float(s)]
    else:
        print(f"{s:>7} {e:>7} {what} {res.strip()}")
for (tag, res), (s, e, n, longest) in sorted(runs.items(), key=lambda kv: float(kv[1][0])):
    print(f"{s:>7} {e:>7} {tag} x{n} (longest {longest:.1f} s) {res}")
PY
echo "---"
errs=$(awk '$4 != "ok" && $4 !~ /^ok:/ && $3 != "S:stat:Y" && $1 != "DONE"' "$TEST_TMP/timeline")
[[ -z $errs ]] || fail "calls failed or read wrong data: $errs"
# H: the reader kept going while the server was away.
during=$(awk -v up="$t_up" '$3 ~ /^H:read/ && $1 > 10 && $2 < up - 5 && $4 == "ok"' "$TEST_TMP/timeline" | wc -l)
[[ $during -ge 20 ]] || fail "H: only $during cached reads ended while the server was away"
for tag in H S; do
	after=$(awk -v d="$t_drop" -v up="$t_up" -v t="$tag:read" \
		'index($3, t) == 1 && $1 > d + 1 && $2 < up - 5 && $4 == "ok"' "$TEST_TMP/timeline" | wc -l)
	[[ $after -ge 10 ]] || fail "$tag: only $after cached reads ended between the drop of the kernel's dentries ($t_drop s) and the restart; the callers 20 s after the drop: $(cat "$TEST_TMP/stacks")"
	info "$tag: $after cached reads after the kernel dropped its dentries and inodes"
done
sto=$(ctr "$H" stale_opens)
[[ $sto -gt 0 ]] || fail "H: stale_opens is 0 after cached opens during the outage"
info "H: $during cached open+fstat+read calls ended during the outage; stale_opens $sto"
# H: the uncached stat returned only once the server was back, with success.
read -r _ xe _ xr < <(grep ' H:stat:X ' "$TEST_TMP/timeline")
[[ $xr == ok ]] && python3 -c "import sys; sys.exit(0 if $xe >= $t_up else 1)" \
	|| fail "H: stat of an uncached path: ended at $xe s with '$xr' (server back at $t_up s)"
# S: the uncached stat failed after the deadline, not before.
read -r _ ye _ yr < <(grep ' S:stat:Y ' "$TEST_TMP/timeline")
[[ $yr == ERR:* ]] && python3 -c "import sys; sys.exit(0 if 55 <= $ye < $t_up else 1)" \
	|| fail "S (soft): stat of an uncached path ended at $ye s with '$yr' (expected an error after about 60 s)"
info "soft: the uncached stat failed at $ye s ($yr); hard: it succeeded at $xe s"
# W (offline=wait): the open of a cached file waited for the server.
read -r _ we _ wr < <(grep ' W:read:C2 ' "$TEST_TMP/timeline")
[[ $wr == ok ]] && python3 -c "import sys; sys.exit(0 if $we >= $t_up else 1)" \
	|| fail "W (offline=wait): the open of a cached file ended at $we s with '$wr' (server back at $t_up s): it did not wait"
[[ $(ctr "$W" stale_opens) -eq 0 ]] || fail "W (offline=wait): stale_opens is $(ctr "$W" stale_opens)"
info "offline=wait: the open of a cached file waited until $we s and read the right bytes"
log=$(stagefs_log "$H")
grep -q "not responding, still trying" "$log" || fail "H's log does not say 'not responding, still trying'"
grep -q "server .* OK" "$log" || fail "H's log does not say the server is OK again"
info "H's log: $(grep -h -m1 'not responding' "$log" | cut -c1-160) / $(grep -h -m1 'server .* OK' "$log" | cut -c1-120)"

# Every byte written reaches the export.
sfs_flush "$H" 120
nw=$(awk '$3 == "H:close:W" { sub("ok:", "", $4); print $4 }' "$TEST_TMP/timeline")
python3 - "$BACKEND_DIR" "$TEST_TMP/W.piece" "$nw" <<'PY' || fail "H: what was written during the outage is not on the export"
import sys
d, piece, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
w = open(f"{d}/W", "rb").read()
assert w == piece * n, f"W: {len(w)} bytes on the export, {n} MiB written"
for k in range(3):
    assert open(f"{d}/N/new{k}", "rb").read() == bytes([k + 65]) * (1 << 20), f"new{k} differs"
PY
info "H: W ($nw MiB) and new0..new2 are on the export"
unmount_stagefs "$H" || fail "H: daemon exit status $?"
unmount_stagefs "$S" || fail "S: daemon exit status $?"
unmount_stagefs "$W" || fail "W: daemon exit status $?"

# U's journal: a mount of the same cache dir uploads what was left.
mount_stagefs "$BACKEND" "$U" "$TEST_TMP/cache.U"
mount_stagefs "$BACKEND" "$V" "$TEST_TMP/cache.V"
sfs_flush "$U" 120
sfs_flush "$V" 120
cmp -s "$BACKEND_DIR/dirty" "$TEST_TMP/u.src" || fail "U: the dirty file is not whole on the export after a remount of its cache dir"
cmp -s "$BACKEND_DIR/vdirty" "$TEST_TMP/u.src" || fail "V: the dirty file is not whole on the export after a remount of its cache dir"
unmount_stagefs "$U" || fail "U: daemon exit status $?"
unmount_stagefs "$V" || fail "V: daemon exit status $?"
info "ok: a ${secs}s outage: no call failed on the hard mount, cached data kept flowing, every byte reached the export"
