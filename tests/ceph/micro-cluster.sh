#!/usr/bin/env bash
# micro-cluster.sh - BlockBackup's throwaway single-node Ceph for its RBD integration tests
# (Debian 12, ceph 16.2.x). .ci/run starts it, exports BLOCKBACKUP_CEPH_CONF, and stops it.
# One mon + one osd, no mgr (rbd create/snap/diff/export-diff/import-diff do not need one),
# everything bound to 127.0.0.1, state and logs under DIR.
#   micro-cluster.sh start  [DIR]  -> stdout is exactly one line: the ceph.conf path (CEPH_CONF / --conf)
#   micro-cluster.sh stop   [DIR]  -> kill the daemons recorded in DIR/run/*.pid, delete DIR
#   micro-cluster.sh status [DIR]
# Env: MON_PORT=3300  OBJECTSTORE=memstore|bluestore  AUTH=cephx|none  MEMSTORE_BYTES=8G(bytes)  TIMEOUT=60
# Needs: apt-get install --no-install-recommends ceph-mon ceph-osd ceph-common
set -eEuo pipefail
exec 3>&1 1>&2                      # all chatter to stderr; fd 3 = real stdout (conf path only)

CMD=${1:-}; DIR=$(realpath -m -- "${2:-/tmp/micro-ceph}")
MON_PORT=${MON_PORT:-3300}; OBJECTSTORE=${OBJECTSTORE:-memstore}; AUTH=${AUTH:-cephx}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-8589934592}; TIMEOUT=${TIMEOUT:-60}
CONF=$DIR/ceph.conf; MARK=$DIR/.micro-cluster   # only dirs carrying MARK are ever deleted
export CEPH_CONF=$CONF; STARTING=0
log() { echo "micro-cluster: $*"; }
die() {                              # loud failure; during start also dump logs and kill our daemons
  trap - ERR; log "ERROR: $*"; (( STARTING )) || exit 1
  for f in "$DIR"/*.log; do [[ -s $f ]] && { log "--- last lines of $f"; tail -n 15 "$f"; }; done
  stop_daemons; log "daemons stopped; state and logs left in $DIR"; exit 1
}
trap 'die "command failed at line $LINENO: $BASH_COMMAND"' ERR
# PIDs from our pid files whose command line names our conf (guards against PID reuse).
our_pids() {
  local f p
  for f in "$DIR"/run/*.pid; do
    [[ -f $f ]] || continue; p=$(<"$f")
    [[ $p =~ ^[0-9]+$ && -r /proc/$p/cmdline ]] || continue
    tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "-c $CONF " && echo "$p"
  done; return 0
}
alive() { [[ $(ps -o stat= -p "$1" 2>/dev/null) =~ ^[^Z] ]]; }   # zombie counts as dead
stop_daemons() {                     # SIGKILL: the data is thrown away anyway (memstore would dump RAM to disk on TERM)
  local pids p i; pids=$(our_pids)
  [[ -n $pids ]] || return 0
  log "killing $(echo $pids)"; kill -KILL $pids 2>/dev/null || true
  for i in $(seq 100); do
    local any=0; for p in $pids; do alive "$p" && any=1; done
    (( any )) || return 0; sleep 0.1
  done; log "WARNING: still alive after SIGKILL: $pids"
}
wipe_dir() {
  [[ -e $DIR ]] || return 0
  [[ -f $MARK ]] || die "$DIR exists but was not created by micro-cluster.sh; refusing to delete it"
  rm -rf -- "$DIR"
}
wait_for() {                         # wait_for DESC CMD...: retry CMD until it succeeds or TIMEOUT
  local desc=$1 end=$((SECONDS + TIMEOUT)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < end )) || die "timed out after ${TIMEOUT}s waiting for $desc"; sleep 0.2
  done
}
mon_ok() { timeout 10 ceph --connect-timeout 5 mon stat; }
osd_up() { grep -q '^osd\.0 up' <<<"$(timeout 10 ceph osd dump 2>/dev/null)"; }
daemon() {                           # run a ceph daemon/mkfs without leaking the caller's pipes
  "$@" </dev/null >>"$DIR/console.log" 2>&1 3>&- || die "'$*' failed (see $DIR/console.log)"
}
authtool() { CEPH_CONF=/dev/null ceph-authtool "$@"; }   # keep it from reading our conf/logging
start() {
  if [[ -f $MARK && -n $(our_pids) ]] && mon_ok >/dev/null 2>&1; then
    log "already running in $DIR"; echo "$CONF" >&3; return 0
  fi
  stop_daemons; wipe_dir             # leftovers of a dead or failed run
  local b; for b in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd uuidgen; do
    command -v "$b" >/dev/null || die "'$b' not found: apt-get install ceph-mon ceph-osd ceph-common uuid-runtime"
  done
  [[ $OBJECTSTORE =~ ^(memstore|bluestore)$ && $AUTH =~ ^(cephx|none)$ ]] || die "bad OBJECTSTORE/AUTH"
  if (exec 4<>"/dev/tcp/127.0.0.1/$MON_PORT") 2>/dev/null; then die "127.0.0.1:$MON_PORT already in use; set MON_PORT"; fi
  STARTING=1; mkdir -p "$DIR/run" "$DIR/mon.a" "$DIR/osd.0"; touch "$MARK"
  local fsid; fsid=$(uuidgen)
  local dopts="log file = $DIR/\$name.log
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid"
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = $AUTH
auth service required = $AUTH
auth client required = $AUTH
auth allow insecure global id reclaim = false
keyring = $DIR/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
[mon]
$dopts
mon data = $DIR/mon.\$id
paxos propose interval = 0.1
[osd]
$dopts
osd data = $DIR/osd.\$id
keyring = $DIR/osd.\$id/keyring
osd objectstore = $OBJECTSTORE
memstore device bytes = $MEMSTORE_BYTES
memstore page set = true
bluestore block size = ${BLUESTORE_BYTES:-10737418240}
osd memory target = 1073741824
EOF
  # keys: client.admin (used by every client via [global] keyring) and mon.; harmless with AUTH=none
  authtool --create-keyring "$DIR/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  authtool "$DIR/mon.keyring" --import-keyring "$DIR/keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
  daemon ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
  daemon ceph-mon -c "$CONF" -i a          # forks into the background, writes run/mon.a.pid
  wait_for "mon.a to answer on 127.0.0.1:$MON_PORT" mon_ok
  # osd.0: register with a pre-generated cephx secret, mkfs, start
  local uuid key; uuid=$(uuidgen); key=$(authtool --gen-print-key)
  printf '[osd.0]\n\tkey = %s\n' "$key" >"$DIR/osd.0/keyring"
  local id; id=$(echo "{\"cephx_secret\": \"$key\"}" | timeout 30 ceph osd new "$uuid" -i -)
  [[ $id == 0 ]] || die "expected osd id 0, got '$id'"
  daemon ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid"
  daemon ceph-osd -c "$CONF" -i 0
  wait_for "osd.0 to be up" osd_up
  # pools; rbd pool init blocks until the pool's PGs are active (no mgr => 'ceph pg stat' is useless)
  local p jobs=(); for p in rbd backups; do timeout 30 ceph osd pool create $p 8 8 replicated; done
  for p in rbd backups; do (trap - ERR; exec timeout "$TIMEOUT" rbd pool init $p) & jobs+=($!); done
  for p in "${jobs[@]}"; do wait "$p" || die "rbd pool init failed or timed out (PGs never went active?)"; done
  timeout 10 ceph health mute MGR_DOWN --sticky >/dev/null 2>&1 || true   # no mgr on purpose
  STARTING=0; log "up: $OBJECTSTORE, auth=$AUTH, mon 127.0.0.1:$MON_PORT, pools rbd+backups, dir $DIR"
  echo "$CONF" >&3
}
case $CMD in
  start) start ;;
  stop) stop_daemons; wipe_dir; log "stopped, $DIR removed" ;;
  status) pids=$(our_pids); [[ -n $pids ]] || die "not running ($DIR)"
          { ps -o pid,rss,etime,cmd -p "$(echo $pids | tr ' ' ,)"; timeout 10 ceph -s; } >&3 ;;
  *) die "usage: $0 start|stop|status [DIR]" ;;
esac
