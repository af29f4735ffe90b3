# shellcheck shell=bash
# Helpers shared by the cache-*.sh and fault-*.sh integration tests. Not a
# test itself: source it instead of lib.sh (it sources lib.sh).
#
#   . "$(dirname "$0")/cache-lib.sh"
#
# What it adds to lib.sh:
#   sfs_stats MNT            the stats JSON of the daemon on MNT
#   ctr MNT NAME             one counter (fails the test if it is missing)
#   sfs_flush MNT [SECS]     wait until the daemon has nothing dirty (fails
#                            the test on an error or after SECS, default 300)
#   ctl_raw MNT LINE         send LINE to the control socket, print the answer
#   ctl_sock MNT             the control socket path of MNT
#   freeze_nfs / thaw_nfs    nfs_server freeze|thaw, remembered for cleanup
#   pyrun ARGS...            python3 with the helper module (see PYHELP)
#   drop_caches              sync; echo 3 >/proc/sys/vm/drop_caches
#   flip FILE OFFSET         invert one byte of FILE in place (a cache data
#                            file: corruption the checksums must catch)
#
# stagefsctl is used when it answers `stats --json` with JSON; otherwise the
# helpers talk to the daemon's control socket directly (fs/ctl.h: one line
# "COMMAND [ARG]\n", answer "ok\n" + payload or "error: ...").
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ctl_sock MNT: /run/stagefs/<XXH3-64 of the mountpoint's real path>.sock
ctl_sock() {
	local real h
	real=$(realpath -e -- "$1") || fail "ctl_sock: $1 does not exist"
	h=$(printf '%s' "$real" | xxhsum -H3 - 2>/dev/null) \
		|| fail "ctl_sock: xxhsum -H3 failed (package xxhash)"
	h=${h##*= }
	h=${h%% *}
	echo "/run/stagefs/$h.sock"
}

# ctl_raw MNT LINE [TIMEOUT]: one request on the socket; prints the reply.
ctl_raw() {
	local sock
	sock=$(ctl_sock "$1")
	python3 - "$sock" "$2" "${3:-600}" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode(errors="replace"))
EOF
}

# Whether stagefsctl answers (probed once per test, kept in a file because
# the helpers mostly run in $(...) subshells).
_ctl_works() {
	local f out
	setup_tmp
	f=$TEST_TMP/.ctl-works
	if [[ ! -s "$f" ]]; then
		out=
		if [[ -n "$STAGEFSCTL_BIN" && -x "$STAGEFSCTL_BIN" ]]; then
			out=$("$STAGEFSCTL_BIN" "$1" stats --json 2>/dev/null) || out=
		fi
		if [[ "$out" == "{"* ]]; then
			echo yes >"$f"
		else
			echo no >"$f"
			info "stagefsctl does not answer 'stats --json' yet; using the control socket" >&2
		fi
	fi
	[[ $(cat "$f") == yes ]]
}

# sfs_stats MNT: the stats JSON (one line).
sfs_stats() {
	local out
	if _ctl_works "$1"; then
		out=$("$STAGEFSCTL_BIN" "$1" stats --json) \
			|| fail "stagefsctl $1 stats --json failed"
	else
		out=$(ctl_raw "$1" "stats json" 30) || fail "control socket of $1: stats failed"
		[[ "$out" == ok* ]] || fail "control socket of $1: stats answered: $out"
		out=${out#ok}
		out=${out#$'\n'}
	fi
	echo "$out"
}

# ctr MNT NAME: one counter.
ctr() {
	local json
	json=$(sfs_stats "$1")
	python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])[sys.argv[2]]))' "$json" "$2" 2>/dev/null \
		|| fail "stats of $1 have no counter '$2': $json"
}

# sfs_flush MNT [SECS]: everything dirty is on the backend.
sfs_flush() {
	local mnt=$1 secs=${2:-300} out rc=0
	if _ctl_works "$mnt"; then
		out=$(timeout "$secs" "$STAGEFSCTL_BIN" "$mnt" flush 2>&1) || rc=$?
		[[ $rc -eq 0 ]] || fail "stagefsctl $mnt flush failed (status $rc): $out"
	else
		out=$(ctl_raw "$mnt" flush "$secs" 2>&1) || rc=$?
		[[ $rc -eq 0 && "$out" == ok* ]] || fail "flush of $mnt failed (status $rc): $out"
	fi
	rc=$(ctr "$mnt" dirty_bytes)
	[[ "$rc" == 0 ]] || fail "flush of $mnt returned with dirty_bytes=$rc"
}

# The server is frozen by this script (thawed at exit by lib.sh's at_exit).
_NFS_FROZEN=0
freeze_nfs() {
	nfs_server freeze
	_NFS_FROZEN=1
	info "NFS server frozen"
}
thaw_nfs() {
	nfs_server thaw
	_NFS_FROZEN=0
	info "NFS server thawed"
}

# cache_data_file CACHE_DIR MOUNTED_FILE: the data file of a cached file
# (named <spec hash>-<fileid, 16 hex digits>-<handle hash>; st_ino is the
# fileid).
cache_data_file() {
	local ino f
	ino=$(stat -c %i "$2")
	f=$(ls "$1"/data/*-"$(printf '%016x' "$ino")"-* 2>/dev/null | head -n1)
	[[ -n "$f" ]] || fail "no cache data file for $2 (inode $ino) in $1/data: $(ls "$1/data")"
	echo "$f"
}

# release_frozen OUT GO WHAT: a background writer has opened its file,
# printed READY to OUT and waits for the file GO; freeze the NFS server,
# then let the writer go, so that its writes meet a frozen backend.
release_frozen() {
	wait_secs 30 grep -q READY "$1" || fail "$3: writer did not start: $(cat "$1")"
	freeze_nfs
	touch "$2"
}

flip() {
	python3 - "$1" "$2" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
b = os.pread(fd, 1, off)
assert len(b) == 1, "offset past the end of the cache file"
os.pwrite(fd, bytes([b[0] ^ 0xff]), off)
os.fsync(fd)
os.close(fd)
PY
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# wait_secs SECS CMD...: retry CMD every 0.2 s until it succeeds or SECS of
# wall time pass (lib.sh's wait_until counts tries, and slow commands
# stretch it).
wait_secs() {
	local end=$((SECONDS + $1))
	shift
	while ((SECONDS < end)); do
		"$@" && return 0
		sleep 0.2
	done
	"$@"
}

# counter_ge MNT NAME MIN: for wait_secs.
counter_ge() { [[ $(ctr "$1" "$2") -ge $3 ]]; }

# pid_alive PID
pid_alive() { kill -0 "$1" 2>/dev/null && [[ "$(_lib_state "$1")" != Z ]]; }

# Python helpers: pyrun CMD ARGS...
#   mkdata FILE MIB SEED            deterministic pseudo-random data
#   cmpslice FILE SRC OFF LEN       FILE == SRC[OFF:OFF+LEN], exit 1 if not
PYHELP=$(
	cat <<'EOF'
import os, sys, random, hashlib
def mkdata(path, mib, seed):
    r = random.Random(int(seed))
    with open(path, "wb") as f:
        for _ in range(int(mib)):
            f.write(r.randbytes(1 << 20))
def cmpslice(path, src, off, length):
    off, length = int(off), int(length)
    st = os.stat(path)
    if st.st_size != length:
        print(f"{path}: size {st.st_size}, expected {length}")
        return 1
    with open(path, "rb") as a, open(src, "rb") as b:
        b.seek(off)
        pos = 0
        while pos < length:
            n = min(1 << 22, length - pos)
            x = a.read(n); y = b.read(n)
            if x != y:
                for i in range(min(len(x), len(y))):
                    if x[i] != y[i]:
                        break
                else:
                    i = min(len(x), len(y))
                print(f"{path}: first difference at byte {pos + i}")
                return 1
            pos += n
    return 0
cmd = sys.argv[1]
sys.exit(globals()[cmd](*sys.argv[2:]) or 0)
EOF
)
pyrun() { python3 -c "$PYHELP" "$@"; }
