#!/usr/bin/env bash
# Every POSIX operation a workload uses, through the mount, on both backends
# (issue 4, "Every operation a real workload uses" and "Correctness
# details", "Many users"):
#   chmod, chown, truncate up and down, utimens (explicit, UTIME_NOW,
#   UTIME_OMIT), mkfifo, unix sockets, mknod, the errno of mkdir, rmdir,
#   unlink, rename, link, open(O_EXCL) misuse (also on a fresh mount, where
#   the kernel knows no names yet), symlinks (relative, absolute, dangling),
#   hard links, rename over a file, RENAME_NOREPLACE, RENAME_EXCHANGE,
#   O_APPEND, O_TRUNC, O_EXCL, O_DIRECT, sparse files and holes, unlink
#   while open, statfs, user xattrs, flock and POSIX locks, fallocate,
#   big directories, 255-byte names, fsyncdir, inode numbers (stable
#   across remounts, the backend's fileid), sizes and
#   mtimes against the backend after a flush, and many users
#   (default_permissions, the caller's uid/gid on the backend,
#   supplementary groups, the setgid-directory rule).
#
# Each check that fails is reported (CHECK FAILED: ...) and the test goes
# on; the test fails at the end if any check failed.  Needs root (chown,
# other users).
. "$(dirname "$0")/lib.sh"
need_root
need_stagefsctl
need_cmd python3
need_cmd setfattr attr
need_cmd getfattr attr
need_cmd setpriv util-linux
need_cmd flock util-linux
need_cmd fallocate util-linux
setup_tmp
chmod 0755 "$TEST_TMP" # other users must reach the mount points
# Checks run commands in $(...); report unexpected failures of the script
# itself only, not of those subshells.
trap '[[ $BASHPID == "$$" ]] && _lib_err $? $LINENO "$BASH_COMMAND"' ERR
# Other users cannot run a python3 under /root (pyenv).
SYS_PY=python3
[[ -x /usr/bin/python3 ]] && SYS_PY=/usr/bin/python3

U1=4001 U2=4002 G1=4001 G2=4002 GS=4100 # test users and groups (no names)

# ---------------------------------------------------------------- helpers

NBAD=0
declare -a BAD=()
# bad MSG: record a failed check and go on.
bad() {
	NBAD=$((NBAD + 1))
	BAD+=("$KIND: $*")
	echo "CHECK FAILED: $KIND: $*" >&2
}
# eq EXPECTED ACTUAL MSG
eq() { [[ "$1" == "$2" ]] || bad "$3: expected '$1', got '$2'"; }

# as_user UID GID[,SUPPLEMENTARY...] CMD...: run CMD as that user (umask 022).
as_user() {
	local uid=$1 gids=$2 gid groups
	shift 2
	gid=${gids%%,*}
	if [[ "$gids" == *,* ]]; then
		groups=(--groups "${gids#*,}")
	else
		groups=(--clear-groups)
	fi
	setpriv --reuid="$uid" --regid="$gid" "${groups[@]}" -- \
		bash -c 'umask 022; exec "$@"' as_user "$@"
}

# The python helper: `py CODE ARGS...` runs CODE with a = ARGS and prints
# OK, or the errno name of the OSError it raised.  CODE can use
# renameat2(a, b, flags), utimensat(path, (sec, nsec), (sec, nsec)) with
# UTIME_NOW / UTIME_OMIT, and the usual modules.
cat >"$TEST_TMP/h.py" <<'EOF'
import ctypes, errno, fcntl, mmap, os, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
def _chk(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def renameat2(a, b, flags):
    libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _chk(libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags))
class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]
def utimensat(path, at, mt):
    ts = (timespec * 2)(timespec(*at), timespec(*mt))
    _chk(libc.utimensat(AT_FDCWD, path.encode(), ts, 0))
code, a = sys.argv[1], sys.argv[2:]
try:
    exec(code)
    print("OK")
except OSError as e:
    # ENOTSUP and EOPNOTSUPP are one number on Linux
    print("EOPNOTSUPP" if e.errno == errno.EOPNOTSUPP else errno.errorcode.get(e.errno, str(e.errno)))
except AssertionError as e:
    print("ASSERTION FAILED: %s" % e)
except Exception as e:
    print("%s: %s" % (type(e).__name__, e))
EOF
py() { python3 "$TEST_TMP/h.py" "$@"; }
# experr EXPECTED[|OTHER...] MSG CODE ARGS...: the call gives one of these.
experr() {
	local want=$1 msg=$2 got
	shift 2
	got=$(py "$@" 2>&1)
	[[ "|$want|" == *"|$got|"* ]] || bad "$msg: expected $want, got $got"
}

# sum FILE: checksum, or a marker if unreadable.
sum() { xxh "$1" 2>/dev/null || echo "unreadable($1)"; }

# mtime_ns / atime_ns FILE
mtime_ns() { python3 -c 'import os,sys; print(os.lstat(sys.argv[1]).st_mtime_ns)' "$1" 2>&1; }
atime_ns() { python3 -c 'import os,sys; print(os.lstat(sys.argv[1]).st_atime_ns)' "$1" 2>&1; }

remount() { # remount [fresh]: unmount and mount again (a fresh cache dir with "fresh")
	unmount_stagefs "$MNT" || bad "daemon exit status $? at unmount"
	if [[ "${1:-}" == fresh ]]; then
		CACHE=$CACHE.x
	fi
	mount_stagefs "$BACKEND" "$MNT" "$CACHE"
}

flush() { ctl "$MNT" flush >/dev/null 2>&1 || bad "stagefsctl flush failed"; }

# ---------------------------------------------------------------- sections

t_chmod_chown() {
	local f=$MNT/attr/f d=$MNT/attr/d
	mkdir "$MNT/attr" "$d"
	echo data >"$f"
	chmod 0640 "$f" || bad "chmod 0640"
	eq 640 "$(stat -c %a "$f")" "chmod 0640 through the mount"
	chmod 4751 "$f" || bad "chmod 4751"
	eq 4751 "$(stat -c %a "$f")" "chmod 4751 (setuid)"
	chmod 1777 "$d" || bad "chmod 1777 dir"
	eq 1777 "$(stat -c %a "$d")" "chmod 1777 (sticky dir)"
	chmod 0644 "$f"
	chown $U1:$G1 "$f" || bad "chown $U1:$G1"
	eq "$U1:$G1" "$(stat -c %u:%g "$f")" "chown through the mount"
	chgrp $G2 "$f" || bad "chgrp $G2"
	eq "$U1:$G2" "$(stat -c %u:%g "$f")" "chgrp through the mount"
	chown $U2 "$d" || bad "chown dir"
	eq "$U2:0" "$(stat -c %u:%g "$d")" "chown of a directory"
	ln -s f "$MNT/attr/lnk"
	chown -h $U1:$G1 "$MNT/attr/lnk" || bad "chown -h of a symlink (lchown)"
	eq "$U1:$G1" "$(stat -c %u:%g "$MNT/attr/lnk")" "lchown of a symlink"
	eq "$U1:$G2" "$(stat -c %u:%g "$f")" "lchown must not touch the target"
	# on the backend, now (metadata is not cached)
	eq "644 $U1:$G2" "$(stat -c '%a %u:%g' "$BACKEND_DIR/attr/f")" "mode and owner on the backend"
	eq "1777 $U2:0" "$(stat -c '%a %u:%g' "$BACKEND_DIR/attr/d")" "dir mode and owner on the backend"
	eq "$U1:$G1" "$(stat -c %u:%g "$BACKEND_DIR/attr/lnk")" "symlink owner on the backend"
}

t_truncate() {
	local f=$MNT/trunc/f r=$TEST_TMP/ref.trunc.$KIND
	mkdir "$MNT/trunc"
	printf 'hello world' >"$f"
	truncate -s 5 "$f" || bad "truncate down"
	eq hello "$(cat "$f")" "truncate -s 5"
	truncate -s 10000 "$f" || bad "truncate up"
	eq 10000 "$(stat -c %s "$f")" "size after truncate up"
	{ printf hello; head -c 9995 /dev/zero; } >"$r"
	eq "$(sum "$r")" "$(sum "$f")" "truncate up reads back zeros after the old end"
	truncate -s 0 "$f"
	eq 0 "$(stat -c %s "$f")" "truncate to 0"
	eq "" "$(cat "$f")" "truncate to 0 reads nothing"
	# Down into a chunk with data after it, then up again: the old bytes
	# must not come back (also past the 4 MiB chunk boundary).
	head -c $((9 << 20)) /dev/urandom >"$r.big"
	cp "$r.big" "$f"
	truncate -s $((5 << 20)) "$f"
	truncate -s $((9 << 20)) "$f"
	truncate -s $((5 << 20)) "$r.big"
	truncate -s $((9 << 20)) "$r.big"
	eq "$(sum "$r.big")" "$(sum "$f")" "truncate down to 5M and up to 9M: zeros, not the old data"
	# ftruncate on an open fd, then write past the end
	py 'fd = os.open(a[0], os.O_RDWR); os.pwrite(fd, b"x" * 100, 0); os.ftruncate(fd, 50); os.pwrite(fd, b"y", 60); os.close(fd)' "$f" >/dev/null
	eq "$(python3 -c 'import sys; sys.stdout.write("x"*50 + "\0"*10 + "y")' | xxh -)" "$(sum "$f")" "ftruncate then write past the end"
	cp "$f" "$TEST_TMP/trunc.expect.$KIND"
}

t_utimens() {
	local f=$MNT/times/f m a now
	mkdir "$MNT/times"
	echo t >"$f"
	touch -d '2001-02-03 04:05:06.123456789 UTC' "$f" || bad "touch -d"
	eq 981173106123456789 "$(mtime_ns "$f")" "explicit mtime (ns)"
	eq 981173106123456789 "$(atime_ns "$f")" "explicit atime (ns)"
	touch -a -d '2002-01-01 00:00:00.5 UTC' "$f" || bad "touch -a"
	eq 1009843200500000000 "$(atime_ns "$f")" "touch -a sets atime"
	eq 981173106123456789 "$(mtime_ns "$f")" "touch -a leaves mtime (UTIME_OMIT)"
	touch -m -d '2003-01-01 00:00:00.25 UTC' "$f" || bad "touch -m"
	eq 1041379200250000000 "$(mtime_ns "$f")" "touch -m sets mtime"
	eq 1009843200500000000 "$(atime_ns "$f")" "touch -m leaves atime (UTIME_OMIT)"
	eq OK "$(py 'os.utime(a[0], ns=(1234567890987654321, 1300000000000000001))' "$f")" "os.utime(ns=)"
	eq 1300000000000000001 "$(mtime_ns "$f")" "os.utime mtime ns"
	eq 1234567890987654321 "$(atime_ns "$f")" "os.utime atime ns"
	eq OK "$(py 'utimensat(a[0], (0, UTIME_OMIT), (5, 6))' "$f")" "utimensat(UTIME_OMIT, t)"
	eq 5000000006 "$(mtime_ns "$f")" "utimensat mtime with atime UTIME_OMIT"
	eq 1234567890987654321 "$(atime_ns "$f")" "utimensat UTIME_OMIT atime kept"
	now=$(date +%s)
	eq OK "$(py 'utimensat(a[0], (0, UTIME_NOW), (0, UTIME_OMIT))' "$f")" "utimensat(UTIME_NOW, UTIME_OMIT)"
	eq 5000000006 "$(mtime_ns "$f")" "UTIME_OMIT mtime kept"
	a=$(atime_ns "$f") || true
	((a / 1000000000 >= now - 5 && a / 1000000000 <= now + 60)) || bad "UTIME_NOW atime: $a, now $now"
	touch "$f" # both UTIME_NOW
	m=$(mtime_ns "$f") || true
	((m / 1000000000 >= now - 5 && m / 1000000000 <= now + 60)) || bad "touch (UTIME_NOW) mtime: $m, now $now"
	# times of a directory and of a symlink itself
	touch -d '2004-01-01 UTC' "$MNT/times"
	eq 1072915200000000000 "$(mtime_ns "$MNT/times")" "directory mtime"
	ln -s f "$MNT/times/l"
	touch -h -d '2005-01-01 UTC' "$MNT/times/l" || bad "touch -h (symlink times)"
	if [[ $KIND == nfs && $(mtime_ns "$BACKEND_DIR/times/l") != 1104537600000000000 ]]; then
		# stagefs sends the SETATTR; the test server (ganesha VFS) does
		# not apply times to a symlink
		info "$KIND: the NFS server ignores times on symlinks; not checked"
	else
		eq 1104537600000000000 "$(mtime_ns "$MNT/times/l")" "symlink mtime (touch -h)"
	fi
	# the backend has them (explicit times are metadata, not cached)
	touch -d '2001-02-03 04:05:06.123456789 UTC' "$f"
	eq 981173106123456789 "$(mtime_ns "$BACKEND_DIR/times/f")" "explicit mtime on the backend"
}

t_special() {
	local d=$MNT/special out
	mkdir "$d"
	mkfifo "$d/fifo" || bad "mkfifo"
	eq fifo "$(stat -c %F "$d/fifo")" "mkfifo type"
	out=$(timeout 10 bash -c 'echo through-fifo >"$1" & cat "$1"; wait' _ "$d/fifo" 2>&1) || true
	eq through-fifo "$out" "data through a fifo on the mount"
	out=$(py '
p = a[0]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(p); s.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(p)
t, _ = s.accept(); c.sendall(b"ping"); assert t.recv(4) == b"ping"
import stat; assert stat.S_ISSOCK(os.lstat(p).st_mode), "not a socket"' "$d/sock")
	eq OK "$out" "unix socket bound and used on the mount"
	mknod "$d/null" c 1 3 || bad "mknod c 1 3"
	eq "character special file 1 3" "$(stat -c '%F %t %T' "$d/null" 2>&1)" "mknod char device"
	eq fifo "$(stat -c %F "$BACKEND_DIR/special/fifo")" "fifo on the backend"
	eq socket "$(stat -c %F "$BACKEND_DIR/special/sock" 2>&1)" "socket on the backend"
	eq "character special file 1 3" "$(stat -c '%F %t %T' "$BACKEND_DIR/special/null" 2>&1)" "char device on the backend"
	experr EEXIST "mkfifo over an existing name" 'os.mkfifo(a[0])' "$d/fifo"
	rm "$d/fifo" "$d/sock" "$d/null" || bad "unlink of special files"
}

# The tree the errno checks use; made once, checked before and after a remount.
mk_err_tree() {
	mkdir -p "$MNT/err/full/sub" "$MNT/err/empty" "$MNT/err/full2"
	echo x >"$MNT/err/file"
	echo x >"$MNT/err/full/f"
	echo x >"$MNT/err/full2/g"
	ln -s file "$MNT/err/lnk"
}
t_errors() {
	local e=$MNT/err
	experr ENOTEMPTY "rmdir of a non-empty dir" 'os.rmdir(a[0])' "$e/full"
	experr ENOTDIR "rmdir of a file" 'os.rmdir(a[0])' "$e/file"
	experr ENOENT "rmdir of a missing dir" 'os.rmdir(a[0])' "$e/nothere"
	experr EISDIR "unlink of a dir" 'os.unlink(a[0])' "$e/full"
	experr ENOENT "unlink of a missing file" 'os.unlink(a[0])' "$e/nothere"
	experr ENOTDIR "mkdir below a file" 'os.mkdir(a[0])' "$e/file/sub"
	experr ENOTDIR "open below a file" 'os.open(a[0], os.O_RDONLY)' "$e/file/x"
	experr ENOTDIR "open of file/ (trailing slash)" 'os.open(a[0], os.O_RDONLY)' "$e/file/"
	experr EEXIST "mkdir of an existing dir" 'os.mkdir(a[0])' "$e/full"
	experr EEXIST "mkdir over a file" 'os.mkdir(a[0])' "$e/file"
	experr EEXIST "open(O_CREAT|O_EXCL) of an existing file" 'os.open(a[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY)' "$e/file"
	experr EEXIST "open(O_CREAT|O_EXCL) of a symlink" 'os.open(a[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY)' "$e/lnk"
	experr EISDIR "open(O_WRONLY) of a dir" 'os.open(a[0], os.O_WRONLY)' "$e/full"
	experr ENOENT "open of a missing file" 'os.open(a[0], os.O_RDONLY)' "$e/nothere"
	experr ENOENT "create in a missing dir" 'os.open(a[0], os.O_CREAT | os.O_WRONLY)' "$e/nothere/f"
	experr EEXIST "symlink over an existing name" 'os.symlink("x", a[0])' "$e/file"
	experr EEXIST "link over an existing name" 'os.link(a[0], a[1])' "$e/file" "$e/full/f"
	experr EPERM "link of a directory" 'os.link(a[0], a[1])' "$e/full" "$e/dirlink"
	experr ENOENT "link of a missing file" 'os.link(a[0], a[1])' "$e/nothere" "$e/x"
	experr EINVAL "readlink of a file" 'os.readlink(a[0])' "$e/file"
	experr ENOTEMPTY "rename of a dir over a non-empty dir" 'os.rename(a[0], a[1])' "$e/empty" "$e/full2"
	experr EISDIR "rename of a file over a dir" 'os.rename(a[0], a[1])' "$e/file" "$e/empty"
	experr ENOTDIR "rename of a dir over a file" 'os.rename(a[0], a[1])' "$e/empty" "$e/file"
	experr EINVAL "rename of a dir into itself" 'os.rename(a[0], a[1])' "$e/full" "$e/full/sub/x"
	experr ENOENT "rename of a missing file" 'os.rename(a[0], a[1])' "$e/nothere" "$e/x"
	experr EISDIR "truncate of a dir" 'os.truncate(a[0], 0)' "$e/full"
	[[ -d "$e/full" && -f "$e/file" && -f "$e/full/f" && -d "$e/empty" && -f "$e/full2/g" ]] \
		|| bad "a refused call changed the tree: $(cd "$e" && find . | sort | tr '\n' ' ')"
}

t_symlinks() {
	local s=$MNT/sym
	mkdir -p "$s/a/b"
	echo target >"$s/a/t"
	ln -s ../t "$s/a/b/rel" || bad "symlink with a relative target"
	eq ../t "$(readlink "$s/a/b/rel")" "readlink of a relative symlink"
	eq target "$(cat "$s/a/b/rel" 2>&1)" "reading through a relative symlink"
	ln -s nowhere/at/all "$s/dangling" || bad "dangling symlink"
	eq nowhere/at/all "$(readlink "$s/dangling")" "readlink of a dangling symlink"
	eq "symbolic link 14" "$(stat -c '%F %s' "$s/dangling")" "lstat of a dangling symlink"
	experr ENOENT "stat through a dangling symlink" 'os.stat(a[0])' "$s/dangling"
	ln -s /etc/hostname "$s/abs" || bad "symlink with an absolute target"
	eq /etc/hostname "$(readlink "$s/abs")" "absolute target kept as is"
	ln -s a "$s/dirlink"
	eq target "$(cat "$s/dirlink/t" 2>&1)" "path through a symlink to a dir"
	local long
	long=$(printf 'x%.0s' {1..1000})
	ln -s "$long" "$s/long" || bad "symlink with a 1000-byte target"
	eq "$long" "$(readlink "$s/long")" "1000-byte symlink target"
	eq ../t "$(readlink "$BACKEND_DIR/sym/a/b/rel")" "relative symlink on the backend"
	eq nowhere/at/all "$(readlink "$BACKEND_DIR/sym/dangling")" "dangling symlink on the backend"
	# O_CREAT through a dangling symlink creates its target (Linux)
	ln -s created "$s/a/mk"
	echo via-link >"$s/a/mk" || bad "write through a dangling symlink"
	eq via-link "$(cat "$s/a/created" 2>&1)" "O_CREAT through a dangling symlink creates the target"
}

t_hardlinks() {
	local h=$MNT/hl i1 i2
	mkdir -p "$h/sub"
	echo one >"$h/h1"
	ln "$h/h1" "$h/h2" || bad "link"
	i1=$(stat -c %i "$h/h1") || true
	i2=$(stat -c %i "$h/h2") || true
	eq "$i1" "$i2" "hard links share st_ino"
	eq 2 "$(stat -c %h "$h/h1")" "nlink after link"
	echo two >>"$h/h2"
	eq "one two" "$(cat "$h/h1" | tr '\n' ' ' | sed 's/ $//')" "write through one name, read through the other"
	ln "$h/h1" "$h/sub/h3" || bad "link into a subdir"
	eq 3 "$(stat -c %h "$h/h2")" "nlink after a second link"
	rm "$h/h1"
	eq 2 "$(stat -c %h "$h/h2")" "nlink after unlinking one name"
	eq "$i1" "$(stat -c %i "$h/sub/h3")" "st_ino after unlinking one name"
	eq "2 $(stat -c %i "$BACKEND_DIR/hl/h2")" "$(stat -c '%h %i' "$BACKEND_DIR/hl/sub/h3")" "hard link on the backend"
}

t_rename() {
	local r=$MNT/ren ia out
	mkdir -p "$r/d1/x" "$r/d2"
	echo A >"$r/a"
	echo B >"$r/b"
	ia=$(stat -c %i "$r/a") || true
	mv -f "$r/a" "$r/b" || bad "rename over an existing file"
	eq A "$(cat "$r/b")" "content after rename over a file"
	eq "$ia" "$(stat -c %i "$r/b")" "inode after rename over a file"
	[[ ! -e "$r/a" ]] || bad "source still there after rename"
	mv "$r/d1" "$r/d2/moved" || bad "rename of a dir with contents"
	[[ -d "$r/d2/moved/x" ]] || bad "dir contents after rename"
	eq A "$(cat "$BACKEND_DIR/ren/b" 2>&1)" "rename over a file, on the backend"
	[[ -d "$BACKEND_DIR/ren/d2/moved/x" ]] || bad "renamed dir on the backend"
	# RENAME_NOREPLACE
	echo C >"$r/c"
	echo D >"$r/d"
	out=$(py 'renameat2(a[0], a[1], RENAME_NOREPLACE)' "$r/c" "$r/d")
	if [[ $KIND == nfs ]]; then
		[[ $out == EEXIST || $out == EINVAL ]] || bad "RENAME_NOREPLACE over an existing file: $out (want EEXIST or EINVAL)"
	else
		eq EEXIST "$out" "RENAME_NOREPLACE over an existing file"
	fi
	eq "C D" "$(cat "$r/c" "$r/d" 2>&1 | tr '\n' ' ' | sed 's/ $//')" "RENAME_NOREPLACE must not replace"
	out=$(py 'renameat2(a[0], a[1], RENAME_NOREPLACE)' "$r/c" "$r/new")
	if [[ $out == OK ]]; then
		eq C "$(cat "$r/new" 2>&1)" "RENAME_NOREPLACE to a new name"
		[[ ! -e "$r/c" ]] || bad "RENAME_NOREPLACE left the source"
	elif [[ $KIND == nfs && $out == EINVAL ]]; then
		info "$KIND: RENAME_NOREPLACE answers EINVAL (allowed on nfs)"
	else
		bad "RENAME_NOREPLACE to a new name: $out"
	fi
	# RENAME_EXCHANGE
	echo E >"$r/e"
	echo F >"$r/f"
	out=$(py 'renameat2(a[0], a[1], RENAME_EXCHANGE)' "$r/e" "$r/f")
	if [[ $out == OK ]]; then
		eq "F E" "$(cat "$r/e" "$r/f" 2>&1 | tr '\n' ' ' | sed 's/ $//')" "RENAME_EXCHANGE swaps"
		eq "F E" "$(cat "$BACKEND_DIR/ren/e" "$BACKEND_DIR/ren/f" 2>&1 | tr '\n' ' ' | sed 's/ $//')" "RENAME_EXCHANGE on the backend"
		experr ENOENT "RENAME_EXCHANGE with a missing name" 'renameat2(a[0], a[1], RENAME_EXCHANGE)' "$r/e" "$r/nothere"
		mkdir "$r/xd"
		eq OK "$(py 'renameat2(a[0], a[1], RENAME_EXCHANGE)' "$r/e" "$r/xd")" "RENAME_EXCHANGE of a file and a dir"
		[[ -d "$r/e" && -f "$r/xd" ]] || bad "RENAME_EXCHANGE of a file and a dir: types not swapped"
	elif [[ $KIND == nfs && $out == EINVAL ]]; then
		info "$KIND: RENAME_EXCHANGE answers EINVAL (allowed on nfs)"
		eq "E F" "$(cat "$r/e" "$r/f" 2>&1 | tr '\n' ' ' | sed 's/ $//')" "refused RENAME_EXCHANGE changed nothing"
	else
		bad "RENAME_EXCHANGE: $out (want it to work$([[ $KIND == nfs ]] && echo ', or EINVAL'))"
	fi
	experr EINVAL "renameat2 with both NOREPLACE and EXCHANGE" 'renameat2(a[0], a[1], RENAME_NOREPLACE | RENAME_EXCHANGE)' "$r/b" "$r/d"
}

t_open_flags() {
	local o=$MNT/flags
	mkdir "$o"
	printf abc >"$o/ap"
	printf def >>"$o/ap"
	eq abcdef "$(cat "$o/ap")" "O_APPEND (>>)"
	eq OK "$(py '
fd = os.open(a[0], os.O_WRONLY | os.O_APPEND); os.lseek(fd, 0, 0); os.write(fd, b"G")
os.pwrite(fd, b"H", 0)  # Linux: pwrite on O_APPEND appends too
g = os.open(a[0], os.O_WRONLY | os.O_APPEND)
for i in range(50): os.write(fd, b"1"); os.write(g, b"2")
os.close(fd); os.close(g)' "$o/ap")" "O_APPEND writes"
	eq "abcdefGH$(printf '12%.0s' {1..50})" "$(cat "$o/ap")" "O_APPEND: every write at the end"
	# O_TRUNC on an existing file, whose data is in the cache
	printf 'hello world' >"$o/tr"
	cat "$o/tr" >/dev/null
	printf hi >"$o/tr"
	eq hi "$(cat "$o/tr")" "O_TRUNC by > of an existing file"
	eq 2 "$(stat -c %s "$o/tr")" "size after O_TRUNC"
	eq OK "$(py 'fd = os.open(a[0], os.O_RDWR | os.O_TRUNC); assert os.fstat(fd).st_size == 0, "fstat size %d" % os.fstat(fd).st_size; assert os.read(fd, 10) == b"", "read data"; os.close(fd)' "$o/tr")" "open(O_RDWR|O_TRUNC)"
	eq 0 "$(stat -c %s "$o/tr")" "size after open(O_RDWR|O_TRUNC)"
	head -c 100000 /dev/urandom >"$o/big"
	: >"$o/big"
	eq 0 "$(stat -c %s "$o/big")" "size after : > file"
	unmount_stagefs "$MNT" || bad "daemon exit status $? at unmount"
	eq "0 0" "$(stat -c %s "$BACKEND_DIR/flags/tr" "$BACKEND_DIR/flags/big" | tr '\n' ' ' | sed 's/ $//')" "O_TRUNC reaches the backend"
	mount_stagefs "$BACKEND" "$MNT" "$CACHE"
	# O_EXCL: a new file works
	eq OK "$(py 'os.close(os.open(a[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))' "$o/excl")" "O_CREAT|O_EXCL of a new name"
	eq 600 "$(stat -c %a "$o/excl")" "mode of an O_EXCL file"
	# O_DIRECT, 4 KiB aligned
	head -c $((1 << 20)) /dev/urandom >"$TEST_TMP/direct.$KIND"
	dd if="$TEST_TMP/direct.$KIND" of="$o/direct" bs=4K oflag=direct status=none 2>"$TEST_TMP/dd.err" \
		|| bad "dd oflag=direct: $(cat "$TEST_TMP/dd.err")"
	eq "$(sum "$TEST_TMP/direct.$KIND")" "$(sum "$o/direct")" "O_DIRECT write, buffered read"
	eq "$(sum "$TEST_TMP/direct.$KIND")" "$(dd if="$o/direct" bs=4K iflag=direct status=none 2>/dev/null | xxh -)" "O_DIRECT read"
	dd if=/dev/zero of="$o/direct" bs=4K seek=8 count=2 conv=notrunc oflag=direct status=none 2>/dev/null \
		|| bad "dd oflag=direct in the middle"
	dd if=/dev/zero of="$TEST_TMP/direct.$KIND" bs=4K seek=8 count=2 conv=notrunc status=none
	eq "$(sum "$TEST_TMP/direct.$KIND")" "$(dd if="$o/direct" bs=64K iflag=direct status=none 2>/dev/null | xxh -)" "O_DIRECT overwrite then O_DIRECT read"
	eq "$(sum "$TEST_TMP/direct.$KIND")" "$(sum "$o/direct")" "O_DIRECT overwrite then buffered read"
	# An O_DIRECT open mapped shared, as on a local file system: read
	# through the map, write through it, and a buffered read sees it.
	# Where the kernel lacks FUSE_DIRECT_IO_ALLOW_MMAP (before 6.6) the
	# map fails with ENODEV, and status says so.
	local want=OK st=allowed
	python3 -c 'import os, sys; v = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2]); sys.exit(v < (6, 6))' \
		|| want=ENODEV
	"$STAGEFSCTL_BIN" "$MNT" status 2>/dev/null | grep -q "^o_direct .*may be mmap" \
		|| st=ENODEV
	[[ $want != OK ]] || eq allowed "$st" "status on a kernel with FUSE_DIRECT_IO_ALLOW_MMAP"
	eq "$want" "$(py '
fd = os.open(a[0], os.O_RDWR | os.O_DIRECT)
m = mmap.mmap(fd, 1 << 20)
assert m[0:4096] == open(a[1], "rb").read(4096), "mapped bytes differ"
m[8192:8192 + 13] = b"mmap+O_DIRECT"
m.flush(); m.close(); os.close(fd)' "$o/direct" "$TEST_TMP/direct.$KIND")" "mmap of an O_DIRECT open"
	if [[ $want == OK ]]; then
		printf 'mmap+O_DIRECT' | dd of="$TEST_TMP/direct.$KIND" bs=1 seek=8192 conv=notrunc status=none
		eq "$(sum "$TEST_TMP/direct.$KIND")" "$(sum "$o/direct")" "written through the map of an O_DIRECT open, then a buffered read"
	fi
}

t_sparse() {
	local s=$MNT/sparse r=$TEST_TMP/sparse.$KIND
	mkdir "$s" "$r"
	for d in "$s" "$r"; do
		printf X | dd of="$d/tail" bs=1 seek=$((10 << 20)) conv=notrunc status=none
		head -c 65536 /dev/urandom >"$d/mid.tmp"
		dd if=/dev/urandom of="$d/mid.tmp" bs=4096 count=3 seek=$((9 << 8)) conv=notrunc status=none 2>/dev/null
		truncate -s 100M "$d/empty"
	done
	# the same random bytes on both sides
	cp "$r/mid.tmp" "$s/mid.tmp"
	mv "$s/mid.tmp" "$s/mid"
	mv "$r/mid.tmp" "$r/mid"
	eq $(((10 << 20) + 1)) "$(stat -c %s "$s/tail")" "size of a file written after a 10M hole"
	eq "$(sum "$r/tail")" "$(sum "$s/tail")" "10M hole reads back as zeros"
	eq "$(sum "$r/mid")" "$(sum "$s/mid")" "hole between two data ranges (across a chunk boundary)"
	eq "$(head -c 4096 /dev/zero | xxh -)" "$(dd if="$s/empty" bs=4096 skip=12345 count=1 status=none | xxh -)" "read inside a 100M truncate hole"
	eq 104857600 "$(stat -c %s "$s/empty")" "size of a 100M hole"
	# a sparse write into the middle of cached data
	dd if=/dev/urandom of="$r/mix" bs=1M count=6 status=none
	cp "$r/mix" "$s/mix"
	cat "$s/mix" >/dev/null
	truncate -s 1M "$r/mix" "$s/mix"
	printf Z | dd of="$r/mix" bs=1 seek=$((7 << 20)) conv=notrunc status=none
	printf Z | dd of="$s/mix" bs=1 seek=$((7 << 20)) conv=notrunc status=none
	eq "$(sum "$r/mix")" "$(sum "$s/mix")" "hole after truncating cached data reads as zeros"
}

t_unlink_open() {
	local u=$MNT/uo out
	mkdir "$u"
	out=$(py '
d = a[0]; p = d + "/f"
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"first")
os.unlink(p)
assert "f" not in os.listdir(d), "name still listed: %s" % os.listdir(d)
assert not os.path.exists(p), "name still there"
os.write(fd, b"second")
os.pwrite(fd, b"Z" * 5, 5 << 20)   # grows it past a chunk boundary
assert os.pread(fd, 11, 0) == b"firstsecond", os.pread(fd, 11, 0)
assert os.fstat(fd).st_size == (5 << 20) + 5, os.fstat(fd).st_size
# a new file of the same name is another file
g = os.open(p, os.O_RDWR | os.O_CREAT, 0o644); os.write(g, b"new"); os.close(g)
assert os.pread(fd, 11, 0) == b"firstsecond", "old data after a new file took the name"
assert open(p, "rb").read() == b"new"
os.unlink(p)
os.fsync(fd)
assert os.pread(fd, 5, 5 << 20) == b"ZZZZZ"
os.close(fd)' "$u")
	eq OK "$out" "unlinked file stays readable and writable until close"
	eq OK "$(py '
fd = os.open(a[0] + "/g", os.O_RDWR | os.O_CREAT, 0o644); os.write(fd, b"x")
os.unlink(a[0] + "/g")
st = os.fstat(fd); os.close(fd)
assert st.st_nlink == 0, "st_nlink %d" % st.st_nlink' "$u")" "fstat of an unlinked open file: st_nlink 0"
	# Linux removes a directory whose only file is unlinked but still open.
	eq OK "$(py '
os.mkdir(a[0] + "/sub"); p = a[0] + "/sub/h"
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644); os.write(fd, b"x")
os.unlink(p)
try:
    os.rmdir(a[0] + "/sub")
finally:
    os.close(fd)' "$u")" "rmdir of a dir whose file is unlinked but open"
	rmdir "$u/sub" 2>/dev/null || true
	# Threads that each unlink an open file and close it: the last
	# close of one removes the emptied hidden directory while another
	# is renaming its file into it.  Every unlink must succeed.
	eq OK "$(py '
import threading
errs = []
def work(k):
    for i in range(400):
        p = "%s/r%d-%d" % (a[0], k, i)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.unlink(p)
        except OSError as e:
            errs.append("%s: %s" % (p, e.strerror))
        os.close(fd)
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
assert not errs, "%d unlinks of open files failed: %s" % (len(errs), errs[:3])' "$u")" "unlinks of open files racing with last closes"
	# A directory removed while open: fstat of its descriptor answers,
	# with st_nlink 0, as on a local file system.
	eq OK "$(py '
os.mkdir(a[0] + "/od"); fd = os.open(a[0] + "/od", os.O_RDONLY)
os.rmdir(a[0] + "/od")
st = os.fstat(fd); os.close(fd)
assert st.st_nlink == 0, "st_nlink %d" % st.st_nlink' "$u")" "fstat of a removed open directory"
	sleep 0.5
	flush
	eq "" "$(ls -A "$BACKEND_DIR/uo")" "backend dir after close (no hidden file left)"
	eq "" "$(find "$BACKEND_DIR" -name '.stagefs*' -o -name '.nfs*' | head -3)" "hidden files anywhere on the backend"
	rmdir "$u" || bad "rmdir after the unlinked files were closed"
}

t_statfs() {
	local m b
	df "$MNT" >/dev/null 2>&1 || bad "df on the mount failed"
	m=$(stat -f -c '%b %S' "$MNT") || bad "statfs on the mount"
	b=$(stat -f -c '%b %S' "$BACKEND_DIR") || true
	python3 - "$m" "$b" <<'EOF' || bad "statfs total differs: mount '$m' backend '$b' (blocks bsize)"
import sys
(mb, ms), (bb, bs) = (map(int, x.split()) for x in sys.argv[1:3])
m, b = mb * ms, bb * bs
sys.exit(0 if b and abs(m - b) <= b * 0.02 else 1)
EOF
	m=$(stat -f -c '%a %S' "$MNT") || true
	b=$(stat -f -c '%a %S' "$BACKEND_DIR") || true
	python3 - "$m" "$b" <<'EOF' || bad "statfs free space differs by more than 5%: mount '$m' backend '$b'"
import sys
(mb, ms), (bb, bs) = (map(int, x.split()) for x in sys.argv[1:3])
m, b = mb * ms, bb * bs
sys.exit(0 if abs(m - b) <= max(b * 0.05, 1 << 30) else 1)
EOF
	eq 0 "$(($(stat -f -c %l "$MNT") < 255))" "statfs name length >= 255"
}

t_xattr() {
	local f=$MNT/xa out
	mkdir "$f"
	echo x >"$f/f"
	if [[ $KIND == nfs ]]; then
		out=$(setfattr -n user.color -v blue "$f/f" 2>&1) && bad "setfattr on nfs succeeded"
		[[ $out == *"Operation not supported"* ]] || bad "setfattr on nfs: '$out' (want Operation not supported)"
		experr EOPNOTSUPP "setxattr on nfs" 'os.setxattr(a[0], "user.x", b"1")' "$f/f"
		experr EOPNOTSUPP "getxattr on nfs" 'os.getxattr(a[0], "user.x")' "$f/f"
		experr EOPNOTSUPP "removexattr on nfs" 'os.removexattr(a[0], "user.x")' "$f/f"
		out=$(py 'assert os.listxattr(a[0]) == [], os.listxattr(a[0])' "$f/f")
		[[ $out == OK || $out == EOPNOTSUPP ]] || bad "listxattr on nfs: $out (want an empty list or EOPNOTSUPP)"
		return
	fi
	setfattr -n user.color -v blue "$f/f" || bad "setfattr"
	eq blue "$(getfattr --absolute-names --only-values -n user.color "$f/f" 2>&1)" "getfattr"
	setfattr -n user.empty "$f/f" || bad "setfattr of an empty value"
	setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' b)" "$f/f" || bad "setfattr of a 3000-byte value"
	eq 3000 "$(getfattr --absolute-names --only-values -n user.big "$f/f" | wc -c)" "3000-byte xattr value"
	eq "user.big user.color user.empty" "$(getfattr -m - --absolute-names "$f/f" 2>/dev/null | grep '^user\.' | sort | tr '\n' ' ' | sed 's/ $//')" "listxattr"
	experr EEXIST "setxattr XATTR_CREATE of an existing name" 'os.setxattr(a[0], "user.color", b"red", os.XATTR_CREATE)' "$f/f"
	experr ENODATA "setxattr XATTR_REPLACE of a missing name" 'os.setxattr(a[0], "user.none", b"red", os.XATTR_REPLACE)' "$f/f"
	experr ENODATA "getxattr of a missing name" 'os.getxattr(a[0], "user.none")' "$f/f"
	experr ERANGE "getxattr into a small buffer" '
libc = ctypes.CDLL(None, use_errno=True); buf = ctypes.create_string_buffer(2)
_chk(libc.getxattr(a[0].encode(), b"user.color", buf, ctypes.c_size_t(2)))' "$f/f"
	setfattr -x user.empty "$f/f" || bad "removexattr"
	experr ENODATA "getxattr after removexattr" 'os.getxattr(a[0], "user.empty")' "$f/f"
	experr ENODATA "removexattr of a missing name" 'os.removexattr(a[0], "user.none")' "$f/f"
	setfattr -n user.dir -v d "$f" || bad "setfattr on a directory"
	eq d "$(getfattr --absolute-names --only-values -n user.dir "$f" 2>&1)" "xattr of a directory"
	eq blue "$(getfattr --absolute-names --only-values -n user.color "$BACKEND_DIR/xa/f" 2>&1)" "xattr on the backend"
	# a user without write permission may not set one
	chmod 0644 "$f/f"
	out=$(as_user $U1 $G1 setfattr -n user.u -v 1 "$f/f" 2>&1) && bad "setfattr by a user without write permission succeeded"
	[[ $out == *"Permission denied"* ]] || bad "setfattr by another user: '$out' (want Permission denied)"
}

t_locks() {
	local f=$MNT/lk out
	mkdir "$f"
	: >"$f/l"
	rm -f "$TEST_TMP/locked"
	flock -n "$f/l" -c "touch '$TEST_TMP/locked'; sleep 4" &
	local holder=$!
	wait_until 5 test -e "$TEST_TMP/locked" || bad "flock holder did not start"
	if flock -n "$f/l" true; then bad "flock -n while another process holds the lock succeeded"; fi
	wait "$holder" || bad "flock holder failed"
	flock -n "$f/l" true || bad "flock -n after the holder exited failed"
	# POSIX byte-range locks from two processes
	out=$(py '
import subprocess
p = a[0]
child = subprocess.Popen([sys.executable, "-c", """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
print("locked", flush=True); time.sleep(5)
""", p], stdout=subprocess.PIPE)
assert child.stdout.readline().strip() == b"locked"
fd = os.open(p, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)  # other bytes: fine
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)
    raise AssertionError("overlapping POSIX lock granted")
except OSError as e:
    assert e.errno in (errno.EAGAIN, errno.EACCES), e
lk = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 10, 0)
r = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, lk))
assert r[0] == fcntl.F_WRLCK and r[4] == child.pid, "F_GETLK: %r (child %d)" % (r, child.pid)
child.kill(); child.wait()
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)  # free now' "$f/l")
	eq OK "$out" "POSIX locks between two processes"
}

t_fallocate() {
	local f=$MNT/fa out
	mkdir "$f"
	local rc=0
	out=$(fallocate -l 1M "$f/a" 2>&1) || rc=$?
	if [[ $rc -eq 0 ]]; then
		eq 1048576 "$(stat -c %s "$f/a")" "size after fallocate -l 1M"
		eq "$(head -c 1048576 /dev/zero | xxh -)" "$(sum "$f/a")" "fallocated range reads zeros"
	else
		[[ $out == *"Operation not supported"* ]] || bad "fallocate: '$out' (want success or Operation not supported)"
		eq 0 "$(stat -c %s "$f/a" 2>&1)" "a refused fallocate leaves the file empty"
	fi
	echo data >"$f/b"
	rc=0
	out=$(fallocate -p -o 0 -l 4096 "$f/b" 2>&1) || rc=$?
	if [[ $rc -eq 0 ]]; then
		eq "$(head -c 5 /dev/zero | xxh -)" "$(sum "$f/b")" "punched hole reads zeros"
	else
		# util-linux says "keep size mode is unsupported" for EOPNOTSUPP
		# with FALLOC_FL_KEEP_SIZE (which a punch hole implies)
		[[ $out == *"Operation not supported"* || $out == *"keep size mode is unsupported"* ]] \
			|| bad "fallocate -p: '$out' (want success or Operation not supported)"
		eq data "$(cat "$f/b")" "a refused punch hole changes nothing"
	fi
	# glibc's posix_fallocate falls back to writing when the fs refuses
	eq OK "$(py 'fd = os.open(a[0], os.O_RDWR | os.O_CREAT); os.posix_fallocate(fd, 0, 1 << 20); os.close(fd)' "$f/c")" "posix_fallocate"
	eq 1048576 "$(stat -c %s "$f/c")" "size after posix_fallocate"
}

# Truncate while the flusher uploads: a write, a ftruncate up and an append
# on each of many files from four threads, with `stagefsctl flush` running
# all the time.  Every byte written must reach the backend.
t_truncate_race() {
	local d=$MNT/trace fl bad=0 f
	mkdir "$d"
	rm -f "$TEST_TMP/stop.$KIND"
	(while [[ ! -e "$TEST_TMP/stop.$KIND" ]]; do ctl "$MNT" flush >/dev/null 2>&1 || true; done) &
	fl=$!
	python3 -c '
import os, sys, threading
def work(t):
    for i in range(400):
        fd = os.open("%s/t%d-%d" % (sys.argv[1], t, i), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"a" * 83)
        os.ftruncate(fd, 254537)
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, b"b" * 491)
        os.close(fd)
ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]' "$d" || bad "truncate race: the writer failed"
	touch "$TEST_TMP/stop.$KIND"
	wait "$fl" || true
	flush
	python3 -c 'import sys; sys.stdout.buffer.write(b"a" * 83 + bytes(254537 - 83) + b"b" * 491)' >"$TEST_TMP/trace.expect"
	for f in "$BACKEND_DIR"/trace/t*; do
		cmp -s "$TEST_TMP/trace.expect" "$f" || bad=$((bad + 1))
	done
	eq 0 "$bad" "files of 1600 whose data (write, ftruncate up, append) did not reach the backend intact, with the flusher busy"
	rm -rf "$d"
}

# Big directories (readdir in several batches), long names, fsyncdir.
t_dirs() {
	local d=$MNT/big n255 n256
	mkdir "$d"
	python3 -c '
import os, sys
for i in range(3000):
    open("%s/entry-%05d-%s" % (sys.argv[1], i, "x" * (i % 200)), "w").close()' "$d"
	eq 3000 "$(ls -f "$d" | grep -c '^entry-')" "entries listed in a 3000-entry dir"
	eq 3000 "$(ls "$BACKEND_DIR/big" | wc -l)" "entries on the backend"
	eq "$(ls "$BACKEND_DIR/big" | LC_ALL=C sort | xxh -)" "$(ls "$d" | LC_ALL=C sort | xxh -)" "names in a 3000-entry dir"
	# remove while listing: every name is seen once at most, none is lost
	eq OK "$(py '
d = a[0]; seen = set(); it = os.scandir(d)
for i, e in enumerate(it):
    assert e.name not in seen, "%s listed twice" % e.name
    seen.add(e.name)
    if i == 100:
        for n in sorted(os.listdir(d))[-50:]: os.unlink(os.path.join(d, n))
it.close()
assert len(os.listdir(d)) == 2950, len(os.listdir(d))' "$d")" "unlink while listing a big dir"
	n255=$(printf 'n%.0s' {1..255})
	n256=$(printf 'n%.0s' {1..256})
	eq OK "$(py 'open(a[0], "w").write("x")' "$MNT/$n255")" "a 255-byte name"
	eq 1 "$(ls "$BACKEND_DIR" | grep -c "^$n255\$")" "a 255-byte name on the backend"
	experr ENAMETOOLONG "a 256-byte name" 'open(a[0], "w")' "$MNT/$n256"
	eq OK "$(py 'fd = os.open(a[0], os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd); os.close(fd)' "$d")" "fsync of a directory (fsyncdir)"
	rm -rf "$d" || bad "rm -rf of a big dir"
	[[ ! -e "$d" ]] || bad "big dir still there after rm -rf"
}

# Inode numbers: the same before and after a remount (with a fresh cache),
# and on posix the backend's own.
t_inodes_before() {
	mkdir -p "$MNT/ino/d"
	echo a >"$MNT/ino/a"
	ln "$MNT/ino/a" "$MNT/ino/d/a2"
	ln -s a "$MNT/ino/s"
	mkfifo "$MNT/ino/p"
	INOS=$(cd "$MNT/ino" && stat -c '%n %i' a d d/a2 s p) || true
}
t_inodes_after() {
	local now be
	now=$(cd "$MNT/ino" && stat -c '%n %i' a d d/a2 s p) || true
	eq "$INOS" "$now" "inode numbers across a remount with a fresh cache"
	be=$(cd "$BACKEND_DIR/ino" && stat -c '%n %i' a d d/a2 s p) || true
	eq "$be" "$now" "inode numbers are the backend's"
}

# Sizes and mtimes agree with the backend after a flush, also when the
# mtime is set (as tar, cp -p and rsync do) while data is not flushed yet.
t_flush_attrs() {
	local t=$MNT/fl n
	mkdir "$t"
	head -c 3000000 /dev/urandom >"$t/w"
	sleep 1.1
	printf more >>"$t/w"
	head -c 100000 /dev/urandom >"$t/p"
	touch -m -d '2010-05-06 07:08:09.5 UTC' "$t/p"
	python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x" * 200000)
os.utime(fd, ns=(1262304000000000000, 1262304000000000000))
os.write(fd, b"y")   # a write after utime moves mtime to now
os.close(fd)' "$t/q"
	# as cp -a does it (write, futimens, close) and as tar x and rsync do
	# it (write, close, utimensat); many files
	python3 -c '
import os, sys
for i in range(50):
    p = "%s/m%d" % (sys.argv[1], i)
    t = 1500000000000000000 + i
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"z" * (1000 * i + 1))
    if i % 2 == 0:
        os.utime(fd, ns=(t, t))
    os.close(fd)
    if i % 2 == 1:
        os.utime(p, ns=(t, t))' "$t"
	flush
	sleep 1.2 # past attr_timeout
	local wrong_m=0 wrong_b=0 lost=0
	for n in $(seq 0 49); do
		[[ $(mtime_ns "$t/m$n") == $((1500000000000000000 + n)) ]] || wrong_m=$((wrong_m + 1))
		[[ $(mtime_ns "$BACKEND_DIR/fl/m$n") == $((1500000000000000000 + n)) ]] || wrong_b=$((wrong_b + 1))
		[[ $(stat -c %s "$BACKEND_DIR/fl/m$n") == $((1000 * n + 1)) ]] || lost=$((lost + 1))
	done
	eq 0 "$wrong_m" "files whose mtime, set right after writing, is wrong on the mount after a flush (of 50)"
	eq 0 "$wrong_b" "files whose mtime, set right after writing, is wrong on the backend after a flush (of 50)"
	eq 0 "$lost" "files with the wrong size on the backend after a flush (of 50)"
	for n in w p q; do
		eq "$(stat -c '%s %Y' "$BACKEND_DIR/fl/$n")" "$(stat -c '%s %Y' "$t/$n")" "size and mtime of $n, mount vs backend after a flush"
		eq "$(mtime_ns "$BACKEND_DIR/fl/$n")" "$(mtime_ns "$t/$n")" "mtime (ns) of $n, mount vs backend after a flush"
	done
	eq 1273129689500000000 "$(mtime_ns "$BACKEND_DIR/fl/p")" "mtime set after writing stays after the flush (backend)"
	eq 1273129689500000000 "$(mtime_ns "$t/p")" "mtime set after writing stays after the flush (mount)"
	[[ $(stat -c %Y "$t/q") -gt 1262304000 ]] || bad "a write after utime must move mtime"
	FLUSH_ATTRS=$(cd "$t" && stat -c '%n %s %Y' w p q) || true
}
t_flush_attrs_after() {
	eq "$FLUSH_ATTRS" "$(cd "$MNT/fl" && stat -c '%n %s %Y' w p q)" "sizes and mtimes after a remount"
	eq "$FLUSH_ATTRS" "$(cd "$BACKEND_DIR/fl" && stat -c '%n %s %Y' w p q)" "sizes and mtimes on the backend after unmount"
}

t_users() {
	local u=$MNT/users out
	mkdir "$u"
	chmod 1777 "$u"
	# files and dirs get the caller's uid and gid
	as_user $U1 $G1 sh -c "echo secret >'$u/s1' && chmod 600 '$u/s1' && mkdir '$u/d1'" \
		|| bad "user $U1 could not create files"
	eq "$U1:$G1 600" "$(stat -c '%u:%g %a' "$u/s1" 2>&1)" "owner and mode of a user's file (mount)"
	eq "$U1:$G1 600" "$(stat -c '%u:%g %a' "$BACKEND_DIR/users/s1" 2>&1)" "owner and mode of a user's file (backend)"
	eq "$U1:$G1 755" "$(stat -c '%u:%g %a' "$BACKEND_DIR/users/d1" 2>&1)" "owner and mode of a user's dir (backend)"
	as_user $U1 $G1 ln -s s1 "$u/sl1" || bad "user symlink"
	eq "$U1:$G1" "$(stat -c '%u:%g' "$BACKEND_DIR/users/sl1" 2>&1)" "owner of a user's symlink (backend)"
	as_user $U1 $G1 mkfifo "$u/fifo1" || bad "user mkfifo"
	eq "$U1:$G1" "$(stat -c '%u:%g' "$BACKEND_DIR/users/fifo1" 2>&1)" "owner of a user's fifo (backend)"
	# root reads it: now it is in the cache
	eq secret "$(cat "$u/s1")" "root reads a user's 0600 file"
	out=$(as_user $U2 $G2 cat "$u/s1" 2>&1) && bad "user $U2 read user $U1's 0600 file: '$out'"
	[[ $out == *"Permission denied"* ]] || bad "user $U2 reading a 0600 file: '$out'"
	if id nobody >/dev/null 2>&1; then
		out=$(runuser -u nobody -- cat "$u/s1" 2>&1) && bad "nobody read a 0600 file"
		[[ $out == *"Permission denied"* ]] || bad "nobody reading a 0600 file: '$out'"
	fi
	out=$(as_user $U2 $G2 sh -c "echo x >>'$u/s1'" 2>&1) && bad "user $U2 appended to user $U1's 0600 file"
	out=$(as_user $U2 $G2 truncate -s 0 "$u/s1" 2>&1) && bad "user $U2 truncated user $U1's 0600 file"
	out=$(as_user $U2 $G2 rm -f "$u/s1" 2>&1) && bad "user $U2 removed user $U1's file from a sticky dir"
	out=$(as_user $U2 $G2 chmod 644 "$u/s1" 2>&1) && bad "user $U2 chmod'ed user $U1's file"
	out=$(as_user $U1 $G1 chown $U2 "$u/s1" 2>&1) && bad "user $U1 gave a file away with chown"
	out=$(as_user $U2 $G2 touch -d 2000-01-01 "$u/s1" 2>&1) && bad "user $U2 set the times of user $U1's file"
	eq secret "$(as_user $U1 $G1 cat "$u/s1" 2>&1)" "the owner reads the cached file"
	eq secret "$(cat "$BACKEND_DIR/users/s1" 2>&1)" "the file is intact on the backend"
	# a 0644 root file: readable, not writable by a user
	echo rootdata >"$u/r"
	eq rootdata "$(as_user $U1 $G1 cat "$u/r" 2>&1)" "a user reads a 0644 root file"
	out=$(as_user $U1 $G1 sh -c "echo x >'$u/r'" 2>&1) && bad "a user wrote a 0644 root file"
	eq rootdata "$(cat "$u/r")" "0644 root file unchanged"
	# group permissions and supplementary groups
	echo grp >"$u/g"
	chown 0:$GS "$u/g"
	chmod 0640 "$u/g"
	eq grp "$(as_user $U1 $G1,$GS cat "$u/g" 2>&1)" "a member of a supplementary group reads a 0640 file"
	out=$(as_user $U1 $G1 cat "$u/g" 2>&1) && bad "a non-member read a 0640 file"
	as_user $U1 $G1,$GS chgrp $GS "$u/d1" || bad "chgrp to a supplementary group"
	eq "$U1:$GS" "$(stat -c %u:%g "$BACKEND_DIR/users/d1" 2>&1)" "chgrp by the owner, on the backend"
	as_user $U1 $G1,$GS touch "$u/sup" || bad "create with supplementary groups"
	eq "$U1:$G1" "$(stat -c %u:%g "$BACKEND_DIR/users/sup" 2>&1)" "a new file gets the primary gid"
	# the setgid-directory rule
	mkdir "$u/sg"
	chown 0:$GS "$u/sg"
	chmod 2777 "$u/sg"
	as_user $U1 $G1 sh -c "echo f >'$u/sg/f' && mkdir '$u/sg/sub' && mkdir '$u/sg/sub/deeper'" \
		|| bad "user creates in a setgid dir"
	eq "$U1:$GS" "$(stat -c %u:%g "$u/sg/f" 2>&1)" "file in a setgid dir inherits the group (mount)"
	eq "$U1:$GS" "$(stat -c %u:%g "$BACKEND_DIR/users/sg/f" 2>&1)" "file in a setgid dir inherits the group (backend)"
	eq "$U1:$GS 2755" "$(stat -c '%u:%g %a' "$u/sg/sub" 2>&1)" "subdir of a setgid dir: group and g+s (mount)"
	eq "$U1:$GS 2755" "$(stat -c '%u:%g %a' "$BACKEND_DIR/users/sg/sub" 2>&1)" "subdir of a setgid dir: group and g+s (backend)"
	eq "$U1:$GS 2755" "$(stat -c '%u:%g %a' "$BACKEND_DIR/users/sg/sub/deeper" 2>&1)" "the rule applies again one level down"
	# set-id bits after a write, a truncate or a chown, as on a local
	# file system (the daemon clears them: FUSE_HANDLE_KILLPRIV_V2):
	# k1 set-user-ID, k2 set-group-ID with group execute, k3 without it
	# (kept), k4 truncated, k5 written by root (kept: CAP_FSETID), k6
	# chowned by root, k7 written while root holds it open for reading
	# (a passthrough open: the writer's open must be one too), k8 made
	# set-user-ID while its writer holds it open, then written, k9 opened
	# for writing while root holds it open, and closed unwritten (kept)
	as_user $U1 $G1 sh -c "cd '$u' && for k in 1 2 3 4 5 6 7 8 9; do echo a >k\$k; done &&
		chmod 4755 k1 k4 k5 k7 k9 && chmod 2755 k2 && chmod 2745 k3 && chmod 6755 k6 &&
		echo b >>k1 && echo b >>k2 && echo b >>k3 && truncate -s 0 k4 &&
		exec 3<>k8 && chmod 4755 k8 && echo b >&3" \
		|| bad "user $U1 could not write its set-id files"
	echo b >>"$u/k5"
	chown $U2 "$u/k6"
	exec {kfd}<"$u/k7"
	as_user $U1 $G1 sh -c "echo b >>'$u/k7'" || bad "user $U1 could not append to k7"
	exec {kfd}<&-
	exec {kfd}<"$u/k9"
	as_user $U1 $G1 sh -c "exec 3>>'$u/k9'" || bad "user $U1 could not open k9"
	exec {kfd}<&-
	eq "755 755 2745 755 4755 755 755 755 4755" "$(cd "$u" && echo $(stat -c %a k1 k2 k3 k4 k5 k6 k7 k8 k9))" \
		"set-id bits after write, truncate, chown (mount: k1..k9)"
	eq "755 755 2745 755 4755 755 755 755 4755" "$(cd "$BACKEND_DIR/users" && echo $(stat -c %a k1 k2 k3 k4 k5 k6 k7 k8 k9))" \
		"set-id bits after write, truncate, chown (backend: k1..k9)"
	# set-group-ID without group execute: cleared by a writer outside
	# the file's group (k10), kept for one in it (k11), as ext4 does;
	# k12: another client (here: the backend directory itself) changes
	# the mode while a writer holds the file open, and the writer's
	# clear starts from that mode, not from this node's older one
	as_user $U1 $G1 sh -c "cd '$u' && for k in 10 11 12; do echo a >k\$k; done &&
		chmod 2666 k10 k11 && chmod 4757 k12" || bad "user $U1 could not make k10..k12"
	as_user $U2 $G2 sh -c "echo b >>'$u/k10'" || bad "user $U2 could not append to k10"
	as_user $U2 "$G2,$G1" sh -c "echo b >>'$u/k11'" || bad "user $U2 (in $G1) could not append to k11"
	stat "$u/k12" >/dev/null
	rm -f "$TEST_TMP/k12.go"
	as_user $U2 $G2 bash -c "exec 3>>'$u/k12' || exit 1
		for i in \$(seq 200); do [[ -e '$TEST_TMP/k12.go' ]] && break; sleep 0.05; done
		echo b >&3" &
	kpid=$!
	sleep 0.5
	chmod 4707 "$BACKEND_DIR/users/k12"
	touch "$TEST_TMP/k12.go"
	wait "$kpid" || bad "user $U2 could not write k12"
	eq "666 2666 707" "$(cd "$BACKEND_DIR/users" && echo $(stat -c %a k10 k11 k12))" \
		"set-group-ID of k10 (non-member), k11 (member), k12 (mode changed elsewhere) after a write (backend)"
	eq "666 2666 707" "$(cd "$u" && echo $(stat -c %a k10 k11 k12))" \
		"set-group-ID of k10, k11, k12 after a write (mount)"
	# access() answers for the caller
	eq "False True" "$(as_user $U2 $G2 "$SYS_PY" -c 'import os,sys; print(os.access(sys.argv[1], os.R_OK), os.access(sys.argv[2], os.R_OK))' "$u/s1" "$u/r" 2>&1)" "access(R_OK) as another user"
	# as a user on a local file system: write a 0444 file through the
	# descriptor that created it (git's objects), also once it is unlinked
	# (both uploaded after that descriptor is gone); hard-link a file; list
	# and open a directory that is readable but not searchable (0444)
	out=$(as_user $U1 $G1 "$SYS_PY" -c '
import os, sys
u = sys.argv[1]
for name, gone in (("ro1", False), ("ro2", True)):
    fd = os.open(os.path.join(u, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o444)
    if gone:
        os.link(os.path.join(u, name), os.path.join(u, name + ".keep"))
        os.unlink(os.path.join(u, name))
    os.pwrite(fd, b"read-only but mine\n", 0)
    os.close(fd)
os.mkdir(os.path.join(u, "rdir"))
open(os.path.join(u, "rdir", "in"), "w").close()
os.chmod(os.path.join(u, "rdir"), 0o444)
print(os.listdir(os.path.join(u, "rdir")))
os.close(os.open(os.path.join(u, "rdir"), os.O_RDONLY))
' "$u" 2>&1) || bad "user $U1: read-only file, link, readable dir: $out"
	eq "['in']" "$out" "a user lists a 0444 directory"
	eq "read-only but mine|read-only but mine" \
		"$(cat "$BACKEND_DIR/users/ro1" 2>&1)|$(cat "$BACKEND_DIR/users/ro2.keep" 2>&1)" \
		"a user's 0444 files written through their creating descriptors (backend)"
	eq "444 444" "$(stat -c %a "$BACKEND_DIR/users/ro1" "$BACKEND_DIR/users/ro2.keep" | tr '\n' ' ' | sed 's/ $//')" \
		"the 0444 files keep their mode (backend)"
	# a user cannot create in a root 0755 dir
	mkdir "$u/closed"
	out=$(as_user $U1 $G1 touch "$u/closed/x" 2>&1) && bad "a user created a file in a root 0755 dir"
	[[ $out == *"Permission denied"* ]] || bad "create in a root 0755 dir: '$out'"
}

# ---------------------------------------------------------------- main

for KIND in $(backends); do
	[[ $KIND == nfs ]] && need_nfs
	make_backend "$KIND"
	MNT=$TEST_TMP/mnt.$KIND
	CACHE=$TEST_TMP/cache.$KIND
	mount_stagefs "$BACKEND" "$MNT" "$CACHE"
	nbad_before=$NBAD

	for t in chmod_chown truncate utimens special; do
		info "$KIND: $t"
		"t_$t"
	done
	mk_err_tree
	info "$KIND: errors"
	t_errors
	for t in symlinks hardlinks rename open_flags sparse unlink_open statfs xattr locks fallocate dirs truncate_race; do
		info "$KIND: $t"
		"t_$t"
	done
	t_inodes_before
	info "$KIND: flush_attrs"
	t_flush_attrs
	info "$KIND: users"
	t_users

	# A remount with a fresh cache: the kernel and the daemon know no names.
	remount fresh
	info "$KIND: errors after a remount"
	t_errors
	t_inodes_after
	t_flush_attrs_after
	eq "$(sum "$TEST_TMP/trunc.expect.$KIND")" "$(sum "$MNT/trunc/f")" "truncated file after a remount"
	eq ../t "$(readlink "$MNT/sym/a/b/rel" 2>&1)" "symlink after a remount"
	eq "$(stat -c %i "$MNT/hl/h2")" "$(stat -c %i "$MNT/hl/sub/h3")" "hard links after a remount"
	eq "$(sum "$TEST_TMP/sparse.$KIND/tail")" "$(sum "$MNT/sparse/tail")" "sparse file after a remount"
	if [[ $KIND == posix ]]; then
		eq blue "$(getfattr --absolute-names --only-values -n user.color "$MNT/xa/f" 2>&1)" "xattr after a remount"
	fi
	unmount_stagefs "$MNT" || bad "daemon exit status $? at the last unmount"
	eq "$(sum "$TEST_TMP/sparse.$KIND/mix")" "$(sum "$BACKEND_DIR/sparse/mix")" "sparse file on the backend"
	info "$KIND: $((NBAD - nbad_before)) failed check(s)"
done

if [[ $NBAD -gt 0 ]]; then
	printf '  %s\n' "${BAD[@]}" >&2
	fail "$NBAD check(s) failed"
fi
info "ok"
