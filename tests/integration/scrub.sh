#!/usr/bin/env bash
# stagefsctl scrub (issue 12, "Checksums"), on nfs with verify=on (the
# default) and passthrough=on (a 6.9+ kernel, as passthrough.sh).
#
# 1. A file read once through the mount is cached whole, so its next open
#    is passthrough: the kernel reads the cache data file itself.  A byte
#    of that data file is flipped while mounted.  A read through a
#    passthrough open returns the flipped byte (a wrong checksum) and
#    checksum_errors stays 0: verify=on does not see passthrough reads.
# 2. `stagefsctl MNT scrub` (the whole cache) reports 1 bad block,
#    refetched; checksum_errors is 1 and the daemon logged it; the file
#    then reads right through passthrough, and no more than a chunk came
#    from the export.
# 3. `scrub DIR` (walks the files) and `scrub FILE` find nothing more; a
#    file not cached is said so; a caller who is not root is refused.
# 4. With a passthrough writer holding the file, a scrub skips it (the
#    kernel's writes are not in the sums yet) and raises no false alarm;
#    after its close the file is checked again, and clean.
# Size: STAGEFS_SCRUB_MIB (default 64).  The scrub's rate is printed.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp
mib=${STAGEFS_SCRUB_MIB:-64}
chunk=$((4 << 20))		# chunk_size's default
blocks=$(((mib << 20) / (chunk / 64)))

make_backend nfs
mnt=$TEST_TMP/mnt
cache=$TEST_TMP/cache
mkdir -p "$BACKEND_DIR/d"
head -c $((mib << 20)) /dev/urandom >"$BACKEND_DIR/d/f"
head -c $((1 << 20)) /dev/urandom >"$BACKEND_DIR/d/cold"
sum=$(xxh "$BACKEND_DIR/d/f")
mount_stagefs "$BACKEND" "$mnt" "$cache" passthrough=on
ctl "$mnt" status | grep -q "^passthrough on" \
	|| fail "status does not say passthrough is on: $(ctl "$mnt" status | grep passthrough)"

# 1. what verify=on does not cover
[[ $(xxh "$mnt/d/f") == "$sum" ]] || fail "1: the first read differs"
[[ $(ctr "$mnt" bytes_read_backend) -ge $((mib << 20)) ]] \
	|| fail "1: the first read did not come from the export"
data=$(cache_data_file "$cache" "$mnt/d/f")
flip "$data" $(((mib << 20) / 2 + 12345))
drop_caches
o0=$(ctr "$mnt" passthrough_opens)
r0=$(ctr "$mnt" bytes_read_cache)
got=$(xxh "$mnt/d/f")
errs=$(ctr "$mnt" checksum_errors)
info "1: passthrough read before the scrub: xxh128 $got (the file's is $sum), checksum_errors $errs"
[[ $(ctr "$mnt" passthrough_opens) -gt $o0 ]] || fail "1: the read was not a passthrough open"
[[ $(ctr "$mnt" bytes_read_cache) -eq $r0 ]] || fail "1: the passthrough read reached the daemon"
[[ $got != "$sum" ]] || fail "1: a passthrough read of the flipped data file returned the right bytes"
[[ $errs -eq 0 ]] || fail "1: checksum_errors is $errs before any scrub"
info "1: ok: verify=on does not check passthrough reads (the flipped byte was served, nothing counted)"

# 2. the scrub finds it and fetches it again
b0=$(ctr "$mnt" bytes_read_backend)
out=$(ctl "$mnt" scrub 2>"$TEST_TMP/scrub.err") \
	|| fail "2: stagefsctl scrub exited $?: $out $(cat "$TEST_TMP/scrub.err")"
info "2: stagefsctl MNT scrub: $out"
info "2: its progress line: $(cat "$TEST_TMP/scrub.err")"
assert_eq "scrubbed $blocks blocks ($((mib << 20)) bytes), 1 bad, refetched 1" "$out" "2: summary"
errs=$(ctr "$mnt" checksum_errors)
[[ $errs -eq 1 ]] || fail "2: checksum_errors is $errs after the scrub, expected 1"
grep -q "scrub: file .* checksum mismatch on clean data; fetching it again" "$(stagefs_log "$mnt")" \
	|| fail "2: the daemon did not log the bad block"
b1=$(ctr "$mnt" bytes_read_backend)
[[ $((b1 - b0)) -gt 0 && $((b1 - b0)) -le $chunk ]] \
	|| fail "2: the refetch read $((b1 - b0)) bytes from the export, expected one chunk at most"
drop_caches
r0=$(ctr "$mnt" bytes_read_cache)
got=$(xxh "$mnt/d/f")
info "2: read after the scrub: xxh128 $got"
[[ $got == "$sum" ]] || fail "2: the file still reads wrong after the scrub"
[[ $(ctr "$mnt" bytes_read_cache) -eq $r0 ]] || fail "2: the read after the scrub was not passthrough"
[[ $(ctr "$mnt" checksum_errors) -eq 1 ]] || fail "2: more checksum errors after the repair"
info "2: ok: 1 bad block found, counted and fetched again; the file reads right through passthrough"

# 3. PATH, a file not cached, not root
out=$(ctl "$mnt" scrub "$mnt/d" 2>/dev/null) || fail "3: scrub of a directory exited $?: $out"
assert_eq "scrubbed $blocks blocks ($((mib << 20)) bytes), 0 bad, refetched 0, 1 file not cached" "$out" "3: scrub DIR"
out=$(ctl "$mnt" scrub "$mnt/d/f" 2>/dev/null) || fail "3: scrub of a file exited $?: $out"
assert_eq "scrubbed $blocks blocks ($((mib << 20)) bytes), 0 bad, refetched 0" "$out" "3: scrub FILE"
out=$(python3 - "$(ctl_sock "$mnt")" <<'PY'
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"scrub\n")
print(s.recv(4096).decode().strip())
PY
)
assert_eq "error: permission denied: only root may scrub" "$out" "3: scrub by uid 65534"
info "3: ok: scrub DIR and FILE clean, a file not cached said so, not root refused"

# 4. a passthrough writer's file is skipped, not taken for corruption
python3 - "$mnt/d/f" "$TEST_TMP/go4" >"$TEST_TMP/w4.out" 2>&1 <<'PY' &
import os, sys, time
path, go = sys.argv[1:3]
r = os.open(path, os.O_RDONLY)		# passthrough: the file is whole
w = os.open(path, os.O_WRONLY)		# so this one is passthrough too
os.pwrite(w, b"x" * 100000, 3 << 20)
print("WRITTEN", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
os.close(w)
os.close(r)
PY
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
wait_secs 30 grep -q WRITTEN "$TEST_TMP/w4.out" || fail "4: the writer did not write: $(cat "$TEST_TMP/w4.out")"
out=$(ctl "$mnt" scrub 2>/dev/null) || fail "4: scrub exited $? with a writer: $out"
info "4: with a passthrough writer: $out"
[[ $out == "scrubbed 0 blocks (0 bytes), 0 bad, refetched 0, $blocks skipped (a passthrough writer has the file)" ]] \
	|| fail "4: unexpected summary with a passthrough writer: $out"
touch "$TEST_TMP/go4"
wait "$wpid" || fail "4: the writer failed: $(cat "$TEST_TMP/w4.out")"
# The kernel sends RELEASE after close() returns: the last rehash
# (and the end of the skipping) follows shortly.
scrub_checks() {
	out=$(ctl "$mnt" scrub 2>/dev/null) || fail "4: scrub after the writer exited $?: $out"
	[[ $out != *skipped* ]]
}
wait_secs 10 scrub_checks || true
info "4: after its close: $out"
# After its upload the generation moved: the blocks this node did not
# write whole are dropped (another node may have written them meanwhile;
# the writer's bytes go out as the runs that differ from the file's
# pre-image, so a rewrite that matches old bytes here and there is not
# whole either), and the scrub checks the blocks still cached.
[[ $out =~ ^scrubbed\ ([0-9]+)\ blocks\ \([0-9]+\ bytes\),\ 0\ bad,\ refetched\ 0$ ]] &&
	((BASH_REMATCH[1] <= blocks)) \
	|| fail "4: unexpected summary after the writer's close: $out"
[[ $(ctr "$mnt" checksum_errors) -eq 1 ]] || fail "4: the writer's bytes were counted as checksum errors"
python3 - "$BACKEND_DIR/d/f" <<'PY' || fail "4: the writer's bytes are not on the export"
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(3 << 20)
    sys.exit(0 if f.read(100000) == b"x" * 100000 else 1)
PY
info "4: ok: a file with a passthrough writer is skipped, then checked clean after its close"
unmount_stagefs "$mnt" || fail "daemon exit status $?"
info "ok"
