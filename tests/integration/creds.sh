#!/usr/bin/env bash
# Each user's own credentials on the wire (issue 16), on a ganesha export
# with Root_Squash, as storage admins export to compute nodes:
# 1. Two unprivileged users (stagefs-alice, stagefs-bob) create, write,
#    read, rename, link, symlink, mkdir, chmod, utimens, truncate and
#    unlink through the mount. The export shows each file owned by its
#    creator, with the right bytes.
# 2. A user gets EACCES on another user's 0600 file, from the kernel
#    (default_permissions, the default) and from the server (a mount with
#    default_permissions=off); root is "nobody" there, as on a kernel NFS
#    mount; a supplementary group grants what it should, and no longer
#    than groups_timeout after the process left it; a user's write clears
#    set-user-ID, also on a root-owned file root_squash keeps the daemon
#    from changing; and again with killpriv=off (the kernel clears the
#    bits itself, as before Linux 5.11), also on another user's
#    group-writable set-group-ID file.
# 3. A file unlinked while open stays readable and leaves nothing behind,
#    also when its directory was made read-only before the last close,
#    and its directory can be removed, or renamed over, meanwhile.
# 4. kill -9 with dirty data of both users (flush_on_close=async, server
#    frozen), then a restart: each user's data goes out under that user
#    (their files are 0600: the server takes WRITEs from the owner only).
. "$(dirname "$0")/cache-lib.sh"
setup_tmp
need_root
test_users
nfs_squash_subdir
# The users reach the mount and the source files.
chmod 0755 "$TEST_TMP"
sq=$SQ_PATH
mkdir "$sq/alice" "$sq/bob" "$sq/shared"
chown stagefs-alice "$sq/alice"
chown stagefs-bob "$sq/bob"
chmod 0755 "$sq/alice" "$sq/bob"
chmod 1777 "$sq/shared"

# expect_fail WHAT ERRTEXT CMD...: CMD must fail, saying ERRTEXT.
expect_fail() {
	local what=$1 text=$2 out
	shift 2
	if out=$("$@" 2>&1); then
		fail "$what: succeeded, expected '$text'"
	fi
	[[ "$out" == *"$text"* ]] || fail "$what: expected '$text', got: $out"
	info "$what: refused ($text)"
}

# owner_is PATH UID: the export (local disk) shows PATH owned by UID.
owner_is() {
	local got
	got=$(stat -c %u "$1") || fail "stat $1"
	[[ "$got" == "$2" ]] || fail "$1 is owned by uid $got on the export, want $2"
}

head -c $((5 << 20)) /dev/urandom >"$TEST_TMP/src.alice"
head -c $((3 << 20)) /dev/urandom >"$TEST_TMP/src.bob"
chmod 0644 "$TEST_TMP/src.alice" "$TEST_TMP/src.bob"

# ------------------------------------------------------------------ 1.
mnt=$TEST_TMP/mnt
mount_stagefs "$SQ_URL" "$mnt" "$TEST_TMP/cache"

# one_user USER: the namespace and data operations, as USER, in its home.
one_user() {
	local u=$1 d=$mnt/${1#stagefs-} src=$TEST_TMP/src.${1#stagefs-}
	as_user "$u" bash -euc '
		d=$1 src=$2
		cp "$src" "$d/data"                 # create + write
		cmp "$src" "$d/data"                # read back
		mv "$d/data" "$d/data2"             # rename
		ln "$d/data2" "$d/hard"             # link
		ln -s data2 "$d/sym"                # symlink
		mkdir "$d/sub"                      # mkdir
		echo small >"$d/sub/f"
		chmod 0600 "$d/data2"               # chmod
		touch -d "2001-02-03 04:05:06" "$d/data2"   # utimens
		head -c 1000000 "$src" >"$d/cut"
		truncate -s 4096 "$d/cut"           # truncate
		rm "$d/hard"                        # unlink
		[[ "$(readlink "$d/sym")" == data2 ]]
		[[ "$(stat -c %a "$d/data2")" == 600 ]]
		[[ "$(stat -c %Y "$d/data2")" == "$(date -d "2001-02-03 04:05:06" +%s)" ]]
		[[ "$(stat -c %s "$d/cut")" == 4096 ]]
		[[ "$(stat -c %h "$d/data2")" == 1 ]]
	' _ "$d" "$src" || fail "$u: file operations through the mount failed"
	info "$u: create, write, read, rename, link, symlink, mkdir, chmod, utimens, truncate, unlink: ok"
}
one_user stagefs-alice
one_user stagefs-bob

# Only what the mount showed: now the export itself (local disk).
for u in alice bob; do
	uid=$ALICE_UID
	[[ $u == bob ]] && uid=$BOB_UID
	for f in data2 sym sub sub/f cut; do
		owner_is "$sq/$u/$f" "$uid"
	done
	[[ "$(stat -c %g "$sq/$u/data2")" == "$USERS_GID" ]] \
		|| fail "$sq/$u/data2: group $(stat -c %g "$sq/$u/data2"), want $USERS_GID"
	cmp "$TEST_TMP/src.$u" "$sq/$u/data2" || fail "$u: data2 on the export differs from what $u wrote"
	head -c 4096 "$TEST_TMP/src.$u" | cmp - "$sq/$u/cut" || fail "$u: cut on the export is wrong"
	[[ ! -e "$sq/$u/hard" ]] || fail "$u: hard link still on the export"
	[[ "$(stat -c %a "$sq/$u/data2")" == 600 ]] || fail "$u: mode on the export"
done
info "the export shows each file owned by its creator, with the right bytes"

# ------------------------------------------------------------------ 2.
check_refusals() {
	local m=$1 how=$2
	expect_fail "$how: bob reads alice's 0600 file" "Permission denied" \
		as_user stagefs-bob cat "$m/alice/data2"
	expect_fail "$how: bob writes alice's 0600 file" "Permission denied" \
		as_user stagefs-bob bash -c "echo x >>'$m/alice/data2'"
	expect_fail "$how: bob creates in alice's 0755 directory" "Permission denied" \
		as_user stagefs-bob touch "$m/alice/intruder"
	expect_fail "$how: bob removes alice's file" "Permission denied" \
		as_user stagefs-bob rm -f "$m/alice/cut"
	expect_fail "$how: bob chmods alice's file" "Operation not permitted" \
		as_user stagefs-bob chmod 0666 "$m/alice/cut"
	# root on this node is nobody on the server (root_squash)
	expect_fail "$how: root reads alice's 0600 file" "Permission denied" \
		cat "$m/alice/data2"
	expect_fail "$how: root creates in alice's directory" "Permission denied" \
		touch "$m/alice/by-root"
	# a supplementary group grants what it should
	as_user stagefs-alice cat "$m/shared/g.txt" >/dev/null \
		|| fail "$how: alice cannot read a 0640 file of her supplementary group"
	expect_fail "$how: bob (not in the group) reads the group's file" \
		"Permission denied" as_user stagefs-bob cat "$m/shared/g.txt"
}
# A file of a third uid and the group stagefs-g, which alice is in only as
# a supplementary group: she may read it, bob may not.
echo group-data >"$sq/shared/g.txt"
chown 65533:stagefs-g "$sq/shared/g.txt"
chmod 0640 "$sq/shared/g.txt"
check_refusals "$mnt" "default_permissions (kernel and server)"
[[ ! -e "$sq/alice/intruder" && ! -e "$sq/alice/by-root" && -e "$sq/alice/cut" ]] \
	|| fail "a refused operation left a trace on the export"
# Set-id bits go when a user writes, as on a local file system: her own
# mode-4755 file (the daemon clears it as her), and a root-owned
# mode-4777 file, which root_squash keeps the daemon from changing: the
# write still succeeds, and the server clears the bit at the upload,
# which goes out as alice.
as_user stagefs-alice bash -c "echo a >'$mnt/alice/suid' && chmod 4755 '$mnt/alice/suid'" \
	|| fail "alice cannot make a set-user-ID file"
echo a >"$sq/shared/suid-root"
chmod 4777 "$sq/shared/suid-root"
as_user stagefs-alice bash -c "echo b >>'$mnt/alice/suid' && echo b >>'$mnt/shared/suid-root'" \
	|| fail "alice's writes to set-user-ID files failed"
[[ "$(stat -c %a "$sq/alice/suid") $(stat -c %a "$sq/shared/suid-root")" == "755 777" ]] \
	|| fail "set-user-ID after alice's writes, on the export: $(stat -c %a "$sq/alice/suid") and $(stat -c %a "$sq/shared/suid-root"), want 755 and 777"
[[ "$(stat -c %a "$mnt/alice/suid") $(stat -c %a "$mnt/shared/suid-root")" == "755 777" ]] \
	|| fail "set-user-ID after alice's writes, through the mount: $(stat -c %a "$mnt/alice/suid") and $(stat -c %a "$mnt/shared/suid-root"), want 755 and 777"
[[ "$(cat "$sq/shared/suid-root")" == "a
b" ]] || fail "alice's write to the root-owned set-user-ID file is not on the export"
info "set-user-ID cleared by a user's write: as the owner, and by the server under root_squash"
unmount_stagefs "$mnt" || fail "daemon exit status $?"

# The same with killpriv=off: the kernel sends the writer's SETATTR of the
# mode, which the daemon makes as the owner where the writer is not it.
mnt4=$TEST_TMP/mnt4
mount_stagefs "$SQ_URL" "$mnt4" "$TEST_TMP/cache4" killpriv=off
ctl "$mnt4" status | grep -q "^killpriv    off: the kernel clears" \
	|| fail "status does not say killpriv is off: $(ctl "$mnt4" status | grep killpriv)"
as_user stagefs-alice bash -c "echo a >'$mnt4/alice/suid2' && echo a >'$mnt4/alice/suid3' && chmod 4755 '$mnt4/alice/suid2' '$mnt4/alice/suid3'" \
	|| fail "killpriv=off: alice cannot make set-user-ID files"
chmod 4777 "$sq/shared/suid-root"
echo a >"$sq/shared/sgid-bob"
chown stagefs-bob:stagefs-g "$sq/shared/sgid-bob"
chmod 2775 "$sq/shared/sgid-bob"
as_user stagefs-alice bash -c "echo b >>'$mnt4/alice/suid2' && echo c >>'$mnt4/shared/suid-root' && echo b >>'$mnt4/shared/sgid-bob'" \
	|| fail "killpriv=off: alice's writes to set-id files failed"
got="$(stat -c %a "$sq/alice/suid2" "$sq/shared/suid-root" "$sq/shared/sgid-bob" | tr '\n' ' ')"
[[ "$got" == "755 777 775 " ]] \
	|| fail "killpriv=off: set-id bits after alice's writes, on the export: $got, want 755 777 775"
got="$(stat -c %a "$mnt4/alice/suid2" "$mnt4/shared/suid-root" "$mnt4/shared/sgid-bob" | tr '\n' ' ')"
[[ "$got" == "755 777 775 " ]] \
	|| fail "killpriv=off: set-id bits after alice's writes, through the mount: $got, want 755 777 775"
[[ "$(cat "$sq/shared/sgid-bob")" == "a
b" ]] || fail "killpriv=off: alice's write to bob's set-group-ID file is not on the export"
owner_is "$sq/shared/sgid-bob" "$(id -u stagefs-bob)"
expect_fail "killpriv=off: bob's chmod of alice's set-user-ID file" "Operation not permitted" \
	as_user stagefs-bob chmod 0755 "$mnt4/alice/suid3"
[[ "$(stat -c %a "$sq/alice/suid3")" == 4755 ]] || fail "killpriv=off: bob's refused chmod changed alice's file"
info "killpriv=off: set-id bits cleared by the kernel's SETATTR, as the owner where the writer is not"
unmount_stagefs "$mnt4" || fail "daemon exit status $?"

mnt2=$TEST_TMP/mnt2
mount_stagefs "$SQ_URL" "$mnt2" "$TEST_TMP/cache2" default_permissions=off
if grep -w "$mnt2" /proc/mounts | grep -q default_permissions; then
	fail "default_permissions=off: the mount still has default_permissions"
fi
# The cache holds alice's data from the first mount: the server's ACCESS
# at open must still refuse bob.
check_refusals "$mnt2" "default_permissions=off (server only)"
as_user stagefs-alice cat "$mnt2/alice/data2" | cmp - "$TEST_TMP/src.alice" \
	|| fail "default_permissions=off: alice cannot read her own file"
# A process that leaves a group keeps it on the backend for at most
# groups_timeout (1 s by default): its groups are read again after that.
python3 - "$mnt2/shared/g.txt" 1.5 <<'PY' || fail "groups_timeout: $?"
import grp, os, pwd, sys, time
a = pwd.getpwnam("stagefs-alice")
g = grp.getgrnam("stagefs-g").gr_gid
def granted():
    try:
        with open(sys.argv[1]) as f:
            f.read()
        return True
    except PermissionError:
        return False
os.setgroups([g])
os.setegid(a.pw_gid)
os.seteuid(a.pw_uid)
if not granted():
    sys.exit("in the group: refused")
os.seteuid(0)
os.setgroups([])
os.seteuid(a.pw_uid)
time.sleep(float(sys.argv[2]))
if granted():
    sys.exit("out of the group for %s s: still granted" % sys.argv[2])
PY
info "groups_timeout: a group left is no longer used after 1.5 s"

# ------------------------------------------------------------------ 3.
as_user stagefs-alice bash -euc '
	d=$1
	head -c 3000000 /dev/urandom >"$d/open-unlinked"
	exec 3<"$d/open-unlinked"
	sum1=$(md5sum <"$d/open-unlinked")
	rm "$d/open-unlinked"
	[[ ! -e "$d/open-unlinked" ]]
	[[ -z "$(ls -A "$d" | grep stagefs-unlinked || true)" ]]
	sum2=$(md5sum <&3)
	[[ "$sum1" == "$sum2" ]]
	exec 3<&-
' _ "$mnt2/alice" || fail "a file unlinked while open is not readable to its end"
wait_secs 10 bash -c "! ls -A '$sq/alice' | grep -q stagefs-unlinked" \
	|| fail "the hidden name of a file unlinked while open stayed on the export: $(ls -A "$sq/alice")"
info "unlinked while open: readable, and gone from the export at the last close"
# Her directory made read-only and unsearchable between the unlink and the
# close: she may no longer remove the hidden name, but she owns the
# directory, so it still goes, and the directory keeps the mode she gave.
as_user stagefs-alice bash -euc '
	d=$1/ro
	mkdir "$d"
	echo data >"$d/f"
	exec 3<"$d/f"
	rm "$d/f"
	chmod 0444 "$d"
	exec 3<&-
' _ "$mnt2/alice" || fail "unlink while open in a directory made read-only: the steps failed"
wait_secs 10 bash -c "[[ -z \"\$(ls -A '$sq/alice/ro')\" ]]" \
	|| fail "a directory made read-only after an unlink while open kept the hidden name: $(ls -A "$sq/alice/ro")"
[[ $(stat -c %a "$sq/alice/ro") == 444 ]] \
	|| fail "the directory's mode is $(stat -c %a "$sq/alice/ro") after the hidden file went, not 444"
chmod 0755 "$sq/alice/ro"
info "unlinked while open, directory made read-only before the close: gone, mode kept"
# A directory whose only entry was unlinked while open is empty on a
# local file system: rmdir removes it, and a rename replaces it (the
# hidden names move up to the parent, where the last close removes them).
as_user stagefs-alice bash -euc '
	d=$1
	mkdir "$d/rd" "$d/rn" "$d/src"
	head -c 200000 /dev/urandom >"$d/rd/f"
	echo g >"$d/rn/g"
	exec 3<"$d/rd/f" 4<"$d/rn/g"
	sum1=$(md5sum <"$d/rd/f")
	rm "$d/rd/f" "$d/rn/g"
	rmdir "$d/rd"
	mv -T "$d/src" "$d/rn"
	[[ ! -e "$d/rd" && -d "$d/rn" && ! -e "$d/src" ]]
	[[ "$(md5sum <&3)" == "$sum1" && "$(cat <&4)" == g ]]
	exec 3<&- 4<&-
' _ "$mnt2/alice" || fail "rmdir, or a rename over, a directory whose file was unlinked while open failed (or the file did not read)"
wait_secs 10 bash -c "! ls -A '$sq/alice' | grep -q stagefs-unlinked" \
	|| fail "hidden names moved up by an rmdir stayed on the export: $(ls -A "$sq/alice")"
[[ ! -e "$sq/alice/rd" && -z "$(ls -A "$sq/alice/rn")" ]] \
	|| fail "on the export: rd $(ls -d "$sq/alice/rd" 2>&1), rn holds: $(ls -A "$sq/alice/rn")"
info "unlinked while open: its directory can be removed, or renamed over, before the close"
unmount_stagefs "$mnt2" || fail "daemon exit status $?"

# ------------------------------------------------------------------ 4.
mnt3=$TEST_TMP/mnt3
cache3=$TEST_TMP/cache3
mount_stagefs "$SQ_URL" "$mnt3" "$cache3" flush_on_close=async
writer() {
	local u=$1 dst=$2 src=$3 go=$4 out=$5
	# the system python: a pyenv shim under /root is not theirs to run
	as_user "$u" /usr/bin/python3 - "$src" "$dst" "$go" >"$out" 2>&1 <<'EOF' &
import os, sys, time
src, dst, go = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
with open(src, "rb") as f:
    os.write(fd, f.read())
os.close(fd)
print("CLOSED", flush=True)
EOF
	WPID=$!
	at_exit "kill $WPID 2>/dev/null || true"
}
writer stagefs-alice "$mnt3/alice/crash" "$TEST_TMP/src.alice" "$TEST_TMP/go" "$TEST_TMP/wa.out"
wa=$WPID
writer stagefs-bob "$mnt3/bob/crash" "$TEST_TMP/src.bob" "$TEST_TMP/go" "$TEST_TMP/wb.out"
wb=$WPID
wait_secs 30 grep -qs READY "$TEST_TMP/wa.out" || fail "alice's writer did not start: $(cat "$TEST_TMP/wa.out")"
wait_secs 30 grep -qs READY "$TEST_TMP/wb.out" || fail "bob's writer did not start: $(cat "$TEST_TMP/wb.out")"
freeze_nfs
touch "$TEST_TMP/go"
wait_secs 60 grep -qs CLOSED "$TEST_TMP/wa.out" || fail "alice's write+close did not return with the server frozen"
wait_secs 60 grep -qs CLOSED "$TEST_TMP/wb.out" || fail "bob's write+close did not return with the server frozen"
wait "$wa" || fail "alice's writer: $(cat "$TEST_TMP/wa.out")"
wait "$wb" || fail "bob's writer: $(cat "$TEST_TMP/wb.out")"
dirty=$(ctr "$mnt3" dirty_bytes)
want=$(( (5 << 20) + (3 << 20) ))
[[ $dirty -eq $want ]] || fail "dirty_bytes $dirty before the kill, want $want (both users' data)"
info "dirty data of both users ($dirty bytes): kill -9"
crash_stagefs "$mnt3"
thaw_nfs
[[ "$(stat -c %s "$sq/alice/crash")" == 0 && "$(stat -c %s "$sq/bob/crash")" == 0 ]] \
	|| fail "data reached the export before the restart: the test proves nothing"
mount_stagefs "$SQ_URL" "$mnt3" "$cache3" flush_on_close=async
sfs_flush "$mnt3" 120
[[ $(ctr "$mnt3" flush_errors) -eq 0 ]] || fail "uploads failed after the restart: $(log_tail "$mnt3" 20)"
unmount_stagefs "$mnt3" || fail "daemon exit status $? after recovery"
owner_is "$sq/alice/crash" "$ALICE_UID"
owner_is "$sq/bob/crash" "$BOB_UID"
[[ "$(stat -c %a "$sq/alice/crash")" == 600 && "$(stat -c %a "$sq/bob/crash")" == 600 ]] \
	|| fail "the crash files are not 0600 on the export"
cmp "$TEST_TMP/src.alice" "$sq/alice/crash" || fail "alice's data on the export is wrong after the restart"
cmp "$TEST_TMP/src.bob" "$sq/bob/crash" || fail "bob's data on the export is wrong after the restart"
info "after kill -9 and a restart, each user's data went out under that user (0600 files, right bytes)"
info "ok"
