#!/usr/bin/env bash
# One export at several server addresses (issue 13, "a VIP pool"), nfs
# backend on the real ganesha. A VAST cluster answers on many virtual IPs;
# here 127.0.0.2 stands for a second one: an iptables DNAT rule (nat table,
# OUTPUT) sends whatever goes to 127.0.0.2 to the ganesha on 127.0.0.1, and
# a DROP rule in the raw table (which runs before NAT, on every packet of an
# established connection too) makes that address stop answering, as a dead
# CNode's VIP does. Both rules carry a comment naming this run and are
# removed on every exit path.
#
#   1. bad input: an address listed twice, a hosts= file with a bad line,
#      hosts= with a posix backend: one line each, no mount.
#   2. an address that does not answer at mount is left out, with a warning;
#      the mount works through the other.
#   3. nfs://127.0.0.1,127.0.0.2/..., soft (a request that does not move to
#      a live address within retry_deadline_ms fails, so a pass proves the
#      failover): both addresses carry requests; then 127.0.0.2 stops
#      answering in the middle of a stream of writes (dd conv=fsync) and
#      cold reads. Every read and write started during the cut must finish,
#      right and without an error, while the address is still cut; status
#      shows the address not answering; after the cut it is used again.
#      Every byte written is on the export, verified after the unmount.
# Figures: the time each operation took during the cut.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd iptables
setup_tmp

tag="stagefs-vip-$$"
VIP=127.0.0.2

ipt() { iptables -w 10 "$@"; }
ipt -t nat -A OUTPUT -d "$VIP" -m comment --comment "$tag" \
	-j DNAT --to-destination 127.0.0.1 ||
	fail "cannot add the DNAT rule for $VIP (iptables; kernel without nf_nat?)"
at_exit "iptables -w 10 -t nat -D OUTPUT -d $VIP -m comment --comment $tag -j DNAT --to-destination 127.0.0.1"
cut_vip() {
	ipt -t raw -I OUTPUT -d "$VIP" -m comment --comment "$tag" -j DROP ||
		fail "cannot add the DROP rule for $VIP"
	CUT=1
}
heal_vip() {
	ipt -t raw -D OUTPUT -d "$VIP" -m comment --comment "$tag" -j DROP ||
		fail "cannot remove the DROP rule for $VIP"
	CUT=0
}
CUT=0
# since T: seconds from date +%s.%N T to now, one decimal.
since() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }
at_exit '[[ $CUT -eq 0 ]] || heal_vip'

make_backend nfs
# nfs://127.0.0.1/PATH -> nfs://127.0.0.1,127.0.0.2/PATH
POOL=${BACKEND/#nfs:\/\/127.0.0.1\//nfs://127.0.0.1,$VIP/}
[[ "$POOL" != "$BACKEND" ]] || fail "cannot make a pool URL of $BACKEND"

# addr_line MNT ADDR: the status line of one address.
addr_line() { ctl "$1" status | grep "^address  *$2:" || true; }
# addr_stat MNT NAME ADDR: address_NAME[ADDR] from stats.
addr_stat() {
	local v
	v=$(ctl "$1" stats | awk -v k="address_$2[$3]" '$1 == k { print $2 }')
	[[ -n "$v" ]] || fail "stats has no address_$2[$3]"
	echo "$v"
}

# ---- 1. bad input
mkdir -p "$TEST_TMP/bc"
mount_should_fail "nfs://127.0.0.1,127.0.0.1/x" "$TEST_TMP/bad" "$TEST_TMP/bc"
[[ "$MOUNT_ERR" == *"address listed twice '127.0.0.1'"* ]] ||
	fail "an address listed twice: unexpected message: $MOUNT_ERR"
[[ $(grep -c . <<<"$MOUNT_ERR") -eq 1 ]] || fail "more than one line: $MOUNT_ERR"
printf '# the pool\n%s\n\nbad host!\n' "$VIP" >"$TEST_TMP/hosts.bad"
mount_should_fail "$BACKEND" "$TEST_TMP/bad" "$TEST_TMP/bc" "hosts=$TEST_TMP/hosts.bad"
[[ "$MOUNT_ERR" == *"hosts file '$TEST_TMP/hosts.bad', line 4: bad host 'bad host!'"* ]] ||
	fail "a bad hosts= line: unexpected message: $MOUNT_ERR"
mount_should_fail "$TEST_TMP" "$TEST_TMP/bad" "$TEST_TMP/bc" "hosts=$TEST_TMP/hosts.bad"
[[ "$MOUNT_ERR" == *"needs an nfs:// BACKEND"* ]] ||
	fail "hosts= with a posix backend: unexpected message: $MOUNT_ERR"
mount_should_fail "$BACKEND" "$TEST_TMP/bad" "$TEST_TMP/bc" "hosts=$TEST_TMP/none"
[[ "$MOUNT_ERR" == *"hosts file $TEST_TMP/none: No such file or directory"* ]] ||
	fail "a missing hosts= file: unexpected message: $MOUNT_ERR"
info "ok: bad pools are refused in one line"

# ---- 2. an address that does not answer at mount is left out
cut_vip
printf '%s\n' "$VIP" >"$TEST_TMP/hosts"
t0=$(date +%s)
mount_stagefs "$BACKEND" "$TEST_TMP/m2" "$TEST_TMP/c2" "hosts=$TEST_TMP/hosts"
grep -q "$VIP.*left out of the pool until the next mount" "$(stagefs_log "$TEST_TMP/m2")" ||
	fail "no warning about $VIP left out: $(cat "$(stagefs_log "$TEST_TMP/m2")")"
[[ -z "$(addr_line "$TEST_TMP/m2" "$VIP")" ]] || fail "$VIP is in the pool although it did not answer"
[[ -n "$(addr_line "$TEST_TMP/m2" 127.0.0.1)" ]] || fail "status shows no address 127.0.0.1"
echo hello >"$TEST_TMP/m2/hello"
unmount_stagefs "$TEST_TMP/m2"
assert_eq hello "$(cat "$BACKEND_DIR/hello")" "file written with one address left out"
heal_vip
info "ok: $VIP did not answer at mount: left out, mount in $(($(date +%s) - t0)) s"

# ---- 3. failover in the middle of writes and cold reads
ncold=8
for i in $(seq 1 $ncold); do
	dd if=/dev/urandom of="$BACKEND_DIR/cold$i" bs=1M count=16 status=none
done
dd if=/dev/urandom of="$TEST_TMP/w.src" bs=1M count=192 status=none
mnt=$TEST_TMP/m3
mount_stagefs "$POOL" "$mnt" "$TEST_TMP/c3" soft nconnect=4
wait_until 20 bash -c "[[ \$('$STAGEFSCTL_BIN' '$mnt' status | grep -c '^address .*: up, 2 of 2 connections') -eq 2 ]]" ||
	fail "status does not show both addresses up: $(ctl "$mnt" status)"
cmp "$mnt/cold1" "$BACKEND_DIR/cold1" || fail "cold1 read wrong before the cut"
dd if="$TEST_TMP/w.src" of="$mnt/w1" bs=1M count=32 conv=fsync status=none ||
	fail "write before the cut failed"
r1=$(addr_stat "$mnt" requests 127.0.0.1)
r2=$(addr_stat "$mnt" requests "$VIP")
[[ $r1 -gt 0 && $r2 -gt 0 ]] || fail "requests are not spread: 127.0.0.1 $r1, $VIP $r2"
info "before the cut: requests 127.0.0.1 $r1, $VIP $r2"

# The stream: a writer with uploads in flight when the address goes.
dd if="$TEST_TMP/w.src" of="$mnt/w2" bs=1M conv=fsync status=none &
wpid=$!
sleep 1
cut_vip
tcut=$(date +%s.%N)
info "$VIP cut"
rc=0
for i in $(seq 2 $ncold); do
	t=$(date +%s.%N)
	timeout 240 cmp "$mnt/cold$i" "$BACKEND_DIR/cold$i" || rc=$?
	[[ $rc -eq 0 ]] || fail "cold read of cold$i during the cut: cmp exit $rc"
	info "cold$i (16 MiB) read right during the cut in $(since $t) s"
done
wait "$wpid" || fail "the writer across the cut failed (exit $?)"
info "192 MiB dd conv=fsync across the cut done $(since $tcut) s after the cut"
t=$(date +%s.%N)
timeout 240 dd if="$TEST_TMP/w.src" of="$mnt/w3" bs=1M count=64 conv=fsync status=none ||
	fail "a write started during the cut failed"
info "64 MiB dd conv=fsync during the cut in $(since $t) s"
wait_until 60 bash -c "'$STAGEFSCTL_BIN' '$mnt' status | grep -q '^address  *$VIP: not answering'" ||
	fail "status never said $VIP is not answering: $(ctl "$mnt" status)"
info "status: $(addr_line "$mnt" "$VIP")"
[[ $CUT -eq 1 ]] || fail "the cut ended before the checks"
resent=$(addr_stat "$mnt" resent "$VIP")
info "requests moved off $VIP: $resent"
heal_vip
info "$VIP back after $(since $tcut) s"
wait_until 60 bash -c "'$STAGEFSCTL_BIN' '$mnt' status | grep -q '^address  *$VIP: up, 2 of 2'" ||
	fail "$VIP not used again after the cut: $(addr_line "$mnt" "$VIP")"
r2b=$(addr_stat "$mnt" requests "$VIP")
cmp "$mnt/cold1" "$BACKEND_DIR/cold1" || fail "cold1 read wrong after the cut"
dd if="$TEST_TMP/w.src" of="$mnt/w4" bs=1M count=32 conv=fsync status=none ||
	fail "write after the cut failed"
wait_until 30 bash -c "[[ \$('$STAGEFSCTL_BIN' '$mnt' stats | awk '\$1 == \"address_requests[$VIP]\" { print \$2 }') -gt $r2b ]]" ||
	fail "$VIP answers no requests after the cut"
[[ $(stat_counter "$mnt" flush_errors) -eq 0 ]] || fail "flush_errors: $(stat_counter "$mnt" flush_errors)"
unmount_stagefs "$mnt"
cmp <(head -c $((32 << 20)) "$TEST_TMP/w.src") "$BACKEND_DIR/w1" || fail "w1 differs on the export"
cmp "$TEST_TMP/w.src" "$BACKEND_DIR/w2" || fail "w2 (written across the cut) differs on the export"
cmp <(head -c $((64 << 20)) "$TEST_TMP/w.src") "$BACKEND_DIR/w3" || fail "w3 (written during the cut) differs on the export"
cmp <(head -c $((32 << 20)) "$TEST_TMP/w.src") "$BACKEND_DIR/w4" || fail "w4 differs on the export"
info "ok: 320 MiB written across and during the cut are on the export; 128 MiB of cold reads right"
echo PASS
