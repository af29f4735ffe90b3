#!/usr/bin/env bash
# Files unlinked while open outliving a crash (issue 14), posix and nfs:
# a file is opened, unlinked (it moves to .stagefs-unlinked/ at the
# backend's root, under a name that starts with this node's id) and
# written again; the daemon is killed -9 while it is still open (on nfs
# with the server frozen, so the last write is still dirty at the kill).
# Entries of "other nodes" are planted in .stagefs-unlinked/ on the
# export, and an entry of this node that cannot be removed.  A restart on
# the same cache dir removes this node's leftover after the journal
# replay, logs the count and a warning for the stuck entry, leaves every
# other entry alone, and exits 0 at unmount (the replayed upload of the
# removed file is dropped, not an error).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_cmd python3
setup_tmp

SILLY=.stagefs-unlinked

for kind in $(backends); do
	info "--- $kind"
	make_backend "$kind"
	mnt=$TEST_TMP/mnt.$kind
	cache=$TEST_TMP/cache.$kind
	out=$TEST_TMP/holder.$kind.out
	go=$TEST_TMP/go.$kind
	mount_stagefs "$BACKEND" "$mnt" "$cache"
	[[ -s $cache/node-id ]] || fail "$kind: no node-id in the cache dir: $(ls -A "$cache")"
	[[ $(stat -c %a "$cache/node-id") == 600 ]] || fail "$kind: node-id is mode $(stat -c %a "$cache/node-id")"
	id=$(cat "$cache/node-id")
	[[ $id =~ ^[0-9a-f]{16}$ ]] || fail "$kind: node-id holds '$id'"

	python3 - "$mnt/victim" "$go" >"$out" 2>&1 <<'PY' &
import os, sys, time
path, go = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"x" * 100000)
os.unlink(path)
print("UNLINKED", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
os.pwrite(fd, b"y" * 50000, 8 << 20)
print("WROTE", flush=True)
time.sleep(3600)
PY
	hpid=$!
	at_exit "kill $hpid 2>/dev/null || true"
	wait_secs 30 grep -qs UNLINKED "$out" || fail "$kind: holder did not unlink: $(cat "$out")"
	mine=$(ls -A "$BACKEND_DIR/$SILLY" 2>/dev/null | grep "^$id-" || true)
	[[ $(wc -l <<<"$mine") -eq 1 && -n $mine ]] \
		|| fail "$kind: expected one hidden name starting with $id- on the export, got: $(ls -A "$BACKEND_DIR/$SILLY" 2>&1)"
	[[ $mine =~ ^$id-[0-9a-f]{16}-[0-9a-f]{16}-[0-9]+$ ]] || fail "$kind: hidden name '$mine' is not <node id>-<fileid>-<hkey>-<pid>"
	[[ $kind == nfs ]] && freeze_nfs
	touch "$go"
	wait_secs 30 grep -qs WROTE "$out" || fail "$kind: holder did not write after the unlink: $(cat "$out")"
	# A passthrough writer's bytes count as dirty once the background
	# scan has hashed them (every 200 ms); the first 100,000 may be on
	# the export already.
	[[ $kind != nfs ]] || wait_secs 10 counter_ge "$mnt" dirty_bytes 1 \
		|| fail "$kind: nothing dirty at the kill with the server frozen"
	dirty=$(ctr "$mnt" dirty_bytes)
	info "$kind: $mine hidden, dirty_bytes=$dirty: kill -9"
	crash_stagefs "$mnt"
	kill "$hpid" 2>/dev/null || true
	wait "$hpid" 2>/dev/null || true
	[[ $kind == nfs ]] && thaw_nfs
	[[ -e $BACKEND_DIR/$SILLY/$mine ]] || fail "$kind: the hidden file went away without a restart"

	# Other nodes' entries: another id, a name that only starts with
	# this id's digits, and a name from before node ids.
	other=0123456789abcdef
	[[ $other != "$id" ]] || other=fedcba9876543210
	planted=("$other-00000000000000aa-00000000000000bb-4242"
		 "${id}0-00000000000000aa-00000000000000bb-4242"
		 "00000000000000aa-00000000000000bb-4242")
	for p in "${planted[@]}"; do
		echo "another node's open file" >"$BACKEND_DIR/$SILLY/$p"
	done
	# An entry of this node that cannot be removed (a directory): a
	# warning, and the mount goes on.
	mkdir "$BACKEND_DIR/$SILLY/$id-stuck"

	mount_stagefs "$BACKEND" "$mnt" "$cache"
	log=$(stagefs_log "$mnt")
	[[ ! -e $BACKEND_DIR/$SILLY/$mine ]] || fail "$kind: this node's leftover $mine is still on the export after the restart"
	for p in "${planted[@]}"; do
		[[ $(cat "$BACKEND_DIR/$SILLY/$p" 2>/dev/null) == "another node's open file" ]] \
			|| fail "$kind: the restart touched another node's entry $p: $(ls -A "$BACKEND_DIR/$SILLY")"
	done
	grep -q "removed 1 file(s) unlinked while open that an earlier run of this node (id $id)" "$log" \
		|| fail "$kind: no log line with the count removed: $(grep -i unlinked "$log")"
	grep -q "warning: fs: .*cannot remove $SILLY/$id-stuck, left by an earlier run of this node" "$log" \
		|| fail "$kind: no warning for the entry that could not be removed: $(grep -i unlinked "$log")"
	[[ -d $BACKEND_DIR/$SILLY/$id-stuck ]] || fail "$kind: $id-stuck went away"
	[[ -z $(ls -A "$mnt") ]] || fail "$kind: the mount lists $(ls -A "$mnt")"
	sfs_flush "$mnt" 120
	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $? after the restart"
	info "$kind: ok: $(grep -o 'removed 1 file.*' "$log")"

	# With only this node's leftovers, nothing is left behind at all.
	rm -f "${planted[@]/#/$BACKEND_DIR/$SILLY/}"
	rmdir "$BACKEND_DIR/$SILLY/$id-stuck"
	echo stale >"$BACKEND_DIR/$SILLY/$id-00000000000000cc-00000000000000dd-1"
	mount_stagefs "$BACKEND" "$mnt" "$cache"
	[[ ! -e $BACKEND_DIR/$SILLY ]] || fail "$kind: $SILLY stayed on the export with nothing in it: $(ls -A "$BACKEND_DIR/$SILLY" 2>&1)"
	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $? after the second restart"
	info "$kind: ok: an emptied $SILLY goes too"
done
