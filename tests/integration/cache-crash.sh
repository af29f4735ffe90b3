#!/usr/bin/env bash
# Crash recovery of the write-back cache (issue 5 "crash recovery", issue 8
# "daemon crash"), nfs backend:
#
# 1. Write STAGEFS_CRASH_MIB MiB (CI default 256; done-when run by hand:
#    2048) with -o fsync=local, fsync it, and kill -9 the daemon mid-flush:
#    the NFS server is frozen once the upload of the first half has
#    started, and the second half is written after that, so the kill comes
#    with dirty_bytes > 0 (the second half, and what of the first was not
#    uploaded yet; freezing at a flush threshold alone once came after the
#    last upload: CI, 256 MiB in 6 s).  Thaw, restart on the same
#    cache_dir, wait until nothing is dirty: the export holds exactly the
#    bytes written (xxh).
# 2. Data closed with flush_on_close=async (no fsync) while the server is
#    frozen survives a kill -9.
# 3. STAGEFS_CRASH_ROUNDS (default 5) seeded rounds (STAGEFS_CRASH_SEED): a
#    writer creates files (fsync or plain close), renames and unlinks them;
#    the daemon is killed at a random point, sometimes with the server
#    frozen first.  After each restart and flush, every acknowledged file is
#    on the export with its exact bytes, unlinked files stay gone, renamed
#    ones are under their new name, and files of earlier rounds are intact
#    (nothing flushed goes backwards).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp

big_mib=${STAGEFS_CRASH_MIB:-256}
rounds=${STAGEFS_CRASH_ROUNDS:-5}
seed=${STAGEFS_CRASH_SEED:-20240611}
parts=${STAGEFS_CRASH_PARTS:-123}   # which parts to run (for debugging)
verified=0

make_backend nfs
mnt=$TEST_TMP/mnt

# Part 1 takes the daemon's write path (passthrough=off): its check that the
# kill comes with dirty data in flight reads the daemon's counters, and a
# passthrough writer's bytes are counted only once hashed.  A kill -9 during
# a passthrough write is passthrough.sh's case 5; parts 2 and 3 run with the
# default.
# -------------------------------------------------------------- 1. big fsync
if [[ $parts == *1* ]]; then
info "part 1: ${big_mib} MiB with fsync=local, kill -9 mid-flush"
dd if=/dev/urandom of="$TEST_TMP/big" bs=1M count="$big_mib" status=none
big_sum=$(xxh "$TEST_TMP/big")
cache1=$TEST_TMP/cache1
mount_stagefs "$BACKEND" "$mnt" "$cache1" fsync=local nconnect=1 passthrough=off

# Copy, fsync, report, then close (flush_on_close=sync: the close waits for
# the upload, which the kill interrupts).
# The second half waits for the server to be frozen.
python3 - "$TEST_TMP/big" "$mnt/big" "$TEST_TMP/go1" >"$TEST_TMP/w1.out" 2>&1 <<'EOF' &
import os, sys, time
src, dst, go = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
data = open(src, "rb").read()
half = len(data) // 2 // (1 << 20) * (1 << 20)
for off in range(0, len(data), 1 << 20):
    if off == half:
        while not os.path.exists(go):
            time.sleep(0.05)
    os.write(fd, data[off:off + (1 << 20)])
os.fsync(fd)
print("FSYNCED", flush=True)
os.close(fd)
print("CLOSED", flush=True)
EOF
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"

# Freeze the server once the upload is under way, then let the writer go on.
thresh=$(( (big_mib / 16 > 4 ? big_mib / 16 : 4) << 20 ))
wait_secs 120 counter_ge "$mnt" bytes_flushed "$thresh" \
	|| fail "part 1: no upload started within 120 s (bytes_flushed=$(ctr "$mnt" bytes_flushed))"
freeze_nfs
touch "$TEST_TMP/go1"
wait_secs 300 grep -qs FSYNCED "$TEST_TMP/w1.out" \
	|| fail "part 1: fsync (fsync=local) did not return within 300 s with the server frozen: $(cat "$TEST_TMP/w1.out")"
dirty=$(ctr "$mnt" dirty_bytes)
flushed=$(ctr "$mnt" bytes_flushed)
info "part 1: fsync returned; dirty_bytes=$dirty bytes_flushed=$flushed: kill -9"
[[ $dirty -gt 0 ]] || fail "part 1: nothing dirty at the kill (the test could not catch the flush)"
crash_stagefs "$mnt"
wait "$wpid" 2>/dev/null || true
thaw_nfs

mount_stagefs "$BACKEND" "$mnt" "$cache1" fsync=local nconnect=1 passthrough=off
sfs_flush "$mnt" 600
unmount_stagefs "$mnt" || fail "part 1: daemon exit status $? after recovery"
got=$(stat -c %s "$BACKEND_DIR/big")
[[ $got -eq $((big_mib << 20)) ]] \
	|| fail "part 1: export holds $got bytes of big, expected $((big_mib << 20)) (kill at dirty_bytes=$dirty, flushed=$flushed)"
[[ $(xxh "$BACKEND_DIR/big") == "$big_sum" ]] \
	|| fail "part 1: export's big differs from what was written and fsynced"
verified=$((verified + (big_mib << 20)))
info "part 1: ok, ${big_mib} MiB on the export match ($big_sum)"
fi

# ---------------------------------------------------------- 2. async close
if [[ $parts == *2* ]]; then
info "part 2: closed (flush_on_close=async) but unflushed data survives kill -9"
cache2=$TEST_TMP/cache2
len2=$(( (20 << 20) + 12345 ))
head -c "$len2" /dev/urandom >"$TEST_TMP/src2"
mount_stagefs "$BACKEND" "$mnt" "$cache2" flush_on_close=async
python3 - "$TEST_TMP/src2" "$mnt/closed" "$len2" "$TEST_TMP/go2" >"$TEST_TMP/w2.out" 2>&1 <<'EOF' &
import os, sys, time
src, dst, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
with open(src, "rb") as f:
    os.write(fd, f.read(n))
os.close(fd)
print("CLOSED", flush=True)
EOF
wpid2=$!
at_exit "kill $wpid2 2>/dev/null || true"
wait_secs 30 grep -qs READY "$TEST_TMP/w2.out" || fail "part 2: writer did not open the file: $(cat "$TEST_TMP/w2.out")"
freeze_nfs
touch "$TEST_TMP/go2"
wait_secs 60 grep -qs CLOSED "$TEST_TMP/w2.out" \
	|| fail "part 2: write+close with flush_on_close=async did not return within 60 s with the server frozen"
wait "$wpid2" || fail "part 2: writer failed: $(cat "$TEST_TMP/w2.out")"
dirty=$(ctr "$mnt" dirty_bytes)
[[ $dirty -gt 0 ]] || fail "part 2: nothing dirty after the close (server frozen?)"
info "part 2: closed, dirty_bytes=$dirty: kill -9"
crash_stagefs "$mnt"
thaw_nfs
mount_stagefs "$BACKEND" "$mnt" "$cache2" flush_on_close=async
sfs_flush "$mnt" 300
unmount_stagefs "$mnt" || fail "part 2: daemon exit status $? after recovery"
out=$(pyrun cmpslice "$BACKEND_DIR/closed" "$TEST_TMP/src2" 0 "$len2") \
	|| fail "part 2: closed file on the export is wrong: $out"
verified=$((verified + len2))
info "part 2: ok, $len2 bytes"
fi

# ----------------------------------------------------- 3. random kill rounds
if [[ $parts == *3* ]]; then
info "part 3: $rounds seeded rounds (seed $seed)"
make_backend nfs   # a fresh directory: the model covers all of it
pyrun mkdata "$TEST_TMP/src" 48 "$seed"
cat >"$TEST_TMP/writer.py" <<'EOF'
# writer.py MNT SRC SEED ROUND STATE: random ops on MNT, one line per op:
# "BEGIN op args" before, "ACK op args" once the op is acknowledged
# (fsync returned, or close returned; rename/unlink returned).
import json, os, random, sys
mnt, src, seed, rnd, state = sys.argv[1:6]
r = random.Random(f"{seed}-{rnd}")
files = json.load(open(state))
srcsize = os.path.getsize(src)
sf = open(src, "rb")
i = 0
def say(*a):
    print(*a, flush=True)
while True:
    i += 1
    x = r.random()
    names = sorted(files)
    if x < 0.12 and names:
        old = r.choice(names); new = f"r{rnd}_m{i}"
        say("BEGIN REN", old, new)
        os.rename(os.path.join(mnt, old), os.path.join(mnt, new))
        files[new] = files.pop(old)
        say("ACK REN", old, new)
    elif x < 0.20 and names:
        old = r.choice(names)
        say("BEGIN UNL", old)
        os.unlink(os.path.join(mnt, old))
        del files[old]
        say("ACK UNL", old)
    else:
        name = f"r{rnd}_f{i}"
        size = r.randint(1, 3 << 20)
        off = r.randint(0, srcsize - size)
        kind = r.choice(["fsync", "close"])
        say("BEGIN W", name, off, size, kind)
        fd = os.open(os.path.join(mnt, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        sf.seek(off)
        left = size
        while left:
            n = min(left, r.choice([4096, 65536, 1 << 20, 3 << 19, 777777]))
            os.write(fd, sf.read(n))
            left -= n
        if kind == "fsync":
            os.fsync(fd)
            files[name] = [off, size]
            say("ACK W", name, off, size, kind)
            os.close(fd)
        else:
            os.close(fd)
            files[name] = [off, size]
            say("ACK W", name, off, size, kind)
EOF
cat >"$TEST_TMP/verify.py" <<'EOF'
# verify.py EXPORT SRC STATE LOG: apply the acknowledged ops of LOG to
# STATE, resolve the one op in flight at the kill, check the export, write
# the new STATE.  Prints "verified BYTES FILES".
import json, os, sys
exp, src, state, log = sys.argv[1:5]
files = json.load(open(state))
pending = None
for line in open(log):
    w = line.split()
    if len(w) < 3 or w[0] not in ("BEGIN", "ACK"):
        continue
    if w[0] == "BEGIN":
        pending = w[1:]
        continue
    pending = None
    if w[1] == "REN":
        files[w[3]] = files.pop(w[2])
    elif w[1] == "UNL":
        del files[w[2]]
    else:
        files[w[2]] = [int(w[3]), int(w[4])]
extra_ok = set()
if pending:
    op = pending[0]
    if op == "REN":
        old, new = pending[1], pending[2]
        if os.path.exists(os.path.join(exp, new)) and not os.path.exists(os.path.join(exp, old)):
            files[new] = files.pop(old)
    elif op == "UNL":
        if not os.path.exists(os.path.join(exp, pending[1])):
            del files[pending[1]]
    else:
        # A write that was not acknowledged: whatever is there is not ours
        # to check; remove it so later rounds start from the model.
        p = os.path.join(exp, pending[1])
        if os.path.exists(p):
            os.unlink(p)
bad = []
have = set(n for n in os.listdir(exp))
for n in sorted(have - set(files)):
    bad.append(f"unexpected file {n} on the export (unlinked or renamed away before the kill?)")
total = 0
with open(src, "rb") as sf:
    for n, (off, size) in sorted(files.items()):
        p = os.path.join(exp, n)
        if not os.path.exists(p):
            bad.append(f"{n}: missing on the export (acknowledged {size} bytes)")
            continue
        got = open(p, "rb").read()
        sf.seek(off)
        want = sf.read(size)
        if got != want:
            i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
            bad.append(f"{n}: {len(got)} bytes on the export, {size} acknowledged, first difference at {i}")
        total += size
json.dump(files, open(state, "w"))
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("verified", total, len(files), "pending:", " ".join(pending) if pending else "none")
EOF
echo '{}' >"$TEST_TMP/state.json"
cache3=$TEST_TMP/cache3
mid_flush=0
for ((r = 1; r <= rounds; r++)); do
	# Seeded choices for this round: connections, kill mode and timing.
	read -r nconn mode t1 t2 < <(python3 -c '
import random, sys
r = random.Random(sys.argv[1] + "-plan-" + sys.argv[2])
print(r.randint(1, 4), r.choice(["run", "freeze"]), round(r.uniform(0.3, 2.0), 2), round(r.uniform(0.2, 1.5), 2))' "$seed" "$r")
	opts=(fsync=local flush_on_close=async "nconnect=$nconn")
	mount_stagefs "$BACKEND" "$mnt" "$cache3" "${opts[@]}"
	python3 "$TEST_TMP/writer.py" "$mnt" "$TEST_TMP/src" "$seed" "$r" "$TEST_TMP/state.json" \
		>"$TEST_TMP/log.$r" 2>"$TEST_TMP/writer.$r.err" &
	wp=$!
	sleep "$t1"
	if [[ $mode == freeze ]]; then
		freeze_nfs
		sleep "$t2"
	fi
	dirty=$(ctr "$mnt" dirty_bytes)
	[[ $dirty -gt 0 ]] && mid_flush=$((mid_flush + 1))
	acks=$(grep -c '^ACK' "$TEST_TMP/log.$r" || true)
	info "round $r: nconnect=$nconn mode=$mode after ${t1}s: $acks ops acknowledged, dirty_bytes=$dirty: kill -9"
	crash_stagefs "$mnt"
	kill "$wp" 2>/dev/null || true
	wait "$wp" 2>/dev/null || true
	[[ $mode == freeze ]] && thaw_nfs
	mount_stagefs "$BACKEND" "$mnt" "$cache3" "${opts[@]}"
	sfs_flush "$mnt" 300
	unmount_stagefs "$mnt" || fail "round $r: daemon exit status $? after recovery"
	out=$(python3 "$TEST_TMP/verify.py" "$BACKEND_DIR" "$TEST_TMP/src" "$TEST_TMP/state.json" "$TEST_TMP/log.$r") \
		|| fail "round $r (seed $seed, nconnect=$nconn, mode=$mode, kill after ${t1}s): acknowledged data lost or wrong:
$out
(writer log: $(tail -n 3 "$TEST_TMP/log.$r" | tr '\n' '|'))"
	set -- $out
	verified=$((verified + $2))
	info "round $r: ok, $out"
done
fi
info "ok: $rounds rounds (${mid_flush:-0} killed with dirty data), $verified bytes verified in all"
