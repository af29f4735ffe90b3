#!/usr/bin/env bash
# Bad input through the mount and the control socket (issue 8 "bad
# input"), on both backends.  Each case works or gets a clear error, and
# none crashes the daemon:
#   - a name of 255 bytes works end to end (create, write, read, list,
#     rename, unlink, and the backend has that exact name); 256 bytes give
#     ENAMETOOLONG for create, mkdir, lookup and rename;
#   - names that are not UTF-8 (and with newline, backslash, leading dash)
#     round-trip byte for byte, through the mount and on the backend;
#   - a path of exactly PATH_MAX-1 bytes works; PATH_MAX bytes gives
#     ENAMETOOLONG;
#   - a file over 4 GiB (sparse: 1 MiB across the 4 GiB line, 1 MiB at
#     5 GiB) reads back right, through this mount, on the backend, and cold
#     through a fresh cache;
#   - garbage on the control socket (binary, huge lines, format strings,
#     bad arguments, idle connections, mutating commands from non-root)
#     gets an error answer, and the daemon keeps serving.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_cmd python3
setup_tmp

for kind in $(backends); do
	[[ $kind == nfs ]] && need_nfs
	make_backend "$kind"
	mnt=$TEST_TMP/mnt.$kind
	mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache.$kind"
	pid=$(stagefs_pid "$mnt")

	# ---- names
	out=$(timeout -k 5 120 python3 - "$mnt" "$BACKEND_DIR" <<'PY'
import errno, os, sys
mnt, be = (os.fsencode(a) for a in sys.argv[1:3])
J = os.path.join
bad = []
def expect_err(what, fn, want=errno.ENAMETOOLONG):
    try:
        fn()
        bad.append(f"{what}: succeeded, expected {errno.errorcode[want]}")
    except OSError as e:
        if e.errno != want:
            bad.append(f"{what}: {errno.errorcode.get(e.errno, e.errno)}, expected {errno.errorcode[want]}")
def roundtrip(name, data):
    p = J(mnt, name)
    with open(p, "wb") as f:
        f.write(data)
    with open(p, "rb") as f:
        if f.read() != data:
            bad.append(f"{name!r}: read back differs")
    if name not in os.listdir(mnt):
        bad.append(f"{name!r}: not in the listing")
    os.stat(p)
n255 = b"x" * 250 + b".long"
assert len(n255) == 255
roundtrip(n255, b"255 bytes\n")
n255b = b"y" * 255
os.rename(J(mnt, n255), J(mnt, n255b))
if not os.path.exists(J(be, n255b)):
    bad.append("255-byte name: not on the backend after rename")
elif open(J(be, n255b), "rb").read() != b"255 bytes\n":
    bad.append("255-byte name: wrong content on the backend")
os.unlink(J(mnt, n255b))
if os.path.exists(J(be, n255b)):
    bad.append("255-byte name: still on the backend after unlink")
n256 = b"z" * 256
expect_err("create 256", lambda: open(J(mnt, n256), "wb"))
expect_err("mkdir 256", lambda: os.mkdir(J(mnt, n256)))
expect_err("stat 256", lambda: os.stat(J(mnt, n256)))
open(J(mnt, b"short"), "wb").close()
expect_err("rename to 256", lambda: os.rename(J(mnt, b"short"), J(mnt, n256)))
expect_err("symlink named 256", lambda: os.symlink(b"short", J(mnt, n256)))
os.unlink(J(mnt, b"short"))
for name in (b"caf\xe9", b"\xff\xfe\x80\x81", b"a\nb", b"back\\slash", b"-dash", b" spaced ", b"\xc3\x28", "日本語".encode()):
    roundtrip(name, b"data of " + name)
    if name not in os.listdir(be):
        bad.append(f"{name!r}: not on the backend under the same bytes")
    elif open(J(be, name), "rb").read() != b"data of " + name:
        bad.append(f"{name!r}: wrong content on the backend")
    d = name + b".d"
    os.mkdir(J(mnt, d))
    os.rename(J(mnt, name), J(mnt, d, name))
    if os.listdir(J(mnt, d)) != [name]:
        bad.append(f"{name!r}: rename into a non-UTF-8 directory")
print("\n".join(bad) if bad else "ok")
PY
	) || fail "$kind: names: python failed or hung (status $?): $out"
	[[ $out == ok ]] || fail "$kind: names:
$out"
	info "$kind: names ok (255 bytes works, 256 ENAMETOOLONG, non-UTF-8 round-trips)"

	# ---- paths at PATH_MAX
	out=$(timeout -k 5 120 python3 - "$mnt" "$BACKEND_DIR" <<'PY'
import errno, os, sys
mnt, be = (os.fsencode(a) for a in sys.argv[1:3])
PATH_MAX = os.pathconf(mnt, "PC_PATH_MAX")  # 4096, with the NUL
want = PATH_MAX - 1            # longest path open(2) takes
comps = []
cur = len(mnt)
while want - cur > 255 + 1:
    comps.append(b"d" * 200)
    cur += 201
last = want - cur - 1
comps_all = comps + [b"f" * last]
path = mnt + b"/" + b"/".join(comps_all)
assert len(path) == want, (len(path), want)
# make the directories one at a time, relative to an fd (no long paths)
fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
for c in comps:
    os.mkdir(c, dir_fd=fd)
    nfd = os.open(c, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd); fd = nfd
os.close(fd)
data = b"at PATH_MAX-1\n" * 100
with open(path, "wb") as f:
    f.write(data)
with open(path, "rb") as f:
    assert f.read() == data, "read back through the full path differs"
try:
    open(path + b"x", "wb")
    print(f"a path of {len(path) + 1} bytes (PATH_MAX) was accepted")
    sys.exit(0)
except OSError as e:
    if e.errno != errno.ENAMETOOLONG:
        print(f"a path of PATH_MAX bytes: {errno.errorcode.get(e.errno)}, expected ENAMETOOLONG")
        sys.exit(0)
# on the backend, walked with dir fds
fd = os.open(be, os.O_RDONLY | os.O_DIRECTORY)
for c in comps:
    nfd = os.open(c, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd); fd = nfd
g = os.open(comps_all[-1], os.O_RDONLY, dir_fd=fd)
got = os.read(g, 1 << 20)
print("ok" if got == data else "the file at PATH_MAX-1 differs on the backend")
PY
	) || fail "$kind: PATH_MAX: $out"
	[[ $out == ok ]] || fail "$kind: PATH_MAX: $out"
	info "$kind: paths ok (PATH_MAX-1 works, PATH_MAX is ENAMETOOLONG)"

	# ---- a file over 4 GiB, sparse
	head -c $((1 << 20)) /dev/urandom >"$TEST_TMP/p1"
	head -c $((1 << 20)) /dev/urandom >"$TEST_TMP/p2"
	dd if="$TEST_TMP/p1" of="$mnt/huge" bs=1M oflag=seek_bytes seek=$(( (4 << 30) - (512 << 10) )) conv=notrunc status=none
	dd if="$TEST_TMP/p2" of="$mnt/huge" bs=1M oflag=seek_bytes seek=$((5 << 30)) conv=notrunc status=none
	check_huge() {   # check_huge FILE WHERE
		timeout -k 5 120 python3 - "$1" "$TEST_TMP/p1" "$TEST_TMP/p2" <<'PY' || fail "$kind: >4 GiB file $2 is wrong"
import os, sys
f, p1, p2 = sys.argv[1], open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
fd = os.open(f, os.O_RDONLY)
st = os.fstat(fd)
assert st.st_size == (5 << 30) + (1 << 20), f"size {st.st_size}"
assert os.pread(fd, 1 << 20, (4 << 30) - (512 << 10)) == p1, "data across 4 GiB"
assert os.pread(fd, 1 << 20, 5 << 30) == p2, "data at 5 GiB"
assert os.pread(fd, 1 << 16, 1 << 30) == bytes(1 << 16), "hole at 1 GiB not zeros"
assert os.pread(fd, 1 << 16, (4 << 30) + (600 << 10)) == bytes(1 << 16), "hole after 4 GiB not zeros"
assert os.pread(fd, 4096, (5 << 30) + (1 << 20)) == b"", "read past the end"
PY
	}
	check_huge "$mnt/huge" "through the mount"
	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $?"
	check_huge "$BACKEND_DIR/huge" "on the backend"
	mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache2.$kind"
	pid=$(stagefs_pid "$mnt")
	check_huge "$mnt/huge" "read cold through a fresh cache"
	info "$kind: >4 GiB sparse file ok"

	# ---- control socket garbage
	ino=$(stat -c %i "$mnt/huge")
	out=$(timeout -k 5 120 python3 - "$(ctl_sock "$mnt")" "$ino" <<'PY'
import os, socket, sys, time, threading
sock, ino = sys.argv[1], sys.argv[2]
def ask(payload, close_write=True, as_uid=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)          # blocking: waits while the backlog is full
    s.settimeout(30)
    try:
        s.sendall(payload)
        if close_write:
            s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError:
        pass
    s.close()
    return out
cases = [
    os.urandom(1024),
    b"\x00\x01\x02\n",
    b"",
    b"\n",
    b"A" * 100000 + b"\n",
    b"stats json extra words here\n",
    b"stats " + b"j" * 5000 + b"\n",
    b"%s%s%s%n%n%x\n",
    b"stats %n%n%s\n",
    b"flush abc\n",
    b"flush -1\n",
    b"evict 99999999999999999999999\n",
    b"pin -1\n",
    b"unpin\n",
    b"prefetch 0\n",
    b"prefetch 18446744073709551615\n",
    b"evict " + ino.encode() + b"\n",
    b"status\x00garbage\n",
    b"\xff\xfe\xfd stats\n",
    "stats\u2028json\n".encode(),
]
bad = []
for c in cases:
    r = ask(c)
    if c.strip() and not (r.startswith(b"ok\n") or r.startswith(b"error: ")):
        bad.append(f"{c[:40]!r}: answer {r[:80]!r}")
# idle connections held open while others are served
idle = []
for _ in range(40):
    s = socket.socket(socket.AF_UNIX); s.connect(sock); idle.append(s)
t0 = time.time()
r = ask(b"stats json\n")
if not r.startswith(b"ok\n{"):
    bad.append(f"stats while 40 idle connections are open: {r[:80]!r}")
if time.time() - t0 > 5:
    bad.append(f"stats took {time.time() - t0:.1f} s while idle connections were open")
# a half-sent command on an idle connection, then closed
idle[0].sendall(b"sta"); idle[0].close()
for s in idle[1:]:
    s.close()
# many at once
res = []
def one():
    res.append(ask(b"status\n"))
th = [threading.Thread(target=one) for _ in range(50)]
[t.start() for t in th]; [t.join() for t in th]
if sum(1 for r in res if r.startswith(b"ok\n")) != 50:
    bad.append("50 concurrent status requests did not all get an answer")
# mutating commands from a user who is not root
pid = os.fork()
if pid == 0:
    os.setgid(65534); os.setuid(65534)
    r1 = ask(b"flush\n"); r2 = ask(b"evict " + ino.encode() + b"\n"); r3 = ask(b"stats json\n")
    ok = r1.startswith(b"error") and r2.startswith(b"error") and r3.startswith(b"ok\n{")
    os._exit(0 if ok else 1)
_, st = os.waitpid(pid, 0)
if st != 0:
    bad.append("a non-root user could run flush/evict, or could not read stats")
print("\n".join(bad) if bad else "ok")
PY
	) || fail "$kind: control socket: python failed: $out"
	pid_alive "$pid" || fail "$kind: the daemon died on control socket garbage"
	[[ $out == ok ]] || fail "$kind: control socket:
$out"
	[[ $(ctr "$mnt" files) -ge 0 ]] || fail "$kind: stats after garbage"
	check_huge "$mnt/huge" "after control socket garbage"
	info "$kind: control socket garbage ok (daemon alive and serving)"
	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $?"
done
info "ok"
