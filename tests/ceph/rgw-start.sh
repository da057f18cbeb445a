#!/usr/bin/env bash
# rgw-start.sh - BlockBackup's throwaway single-node Ceph (mon + osd, no mgr) plus a RADOS Gateway
# (S3 + Swift) on 127.0.0.1, for the S3 and Swift object-store tests (Debian 12, ceph 16.2.x).
# .ci/run starts it beside the RBD cluster (another DIR and MON_PORT), exports the BLOCKBACKUP_S3_* /
# BLOCKBACKUP_SWIFT_* variables from its output, and stops it with rgw-stop.sh.
#   rgw-start.sh [DIR]   -> stdout: only shell assignments (eval "$(rgw-start.sh DIR)"), also kept in
#                           DIR/rgw.env: CEPH_CONF RGW_ENDPOINT RGW_UID S3_ACCESS_KEY S3_SECRET_KEY
#                           SWIFT_AUTH_URL SWIFT_USER SWIFT_KEY RGW_PID
#   rgw-stop.sh  [DIR]   -> kill mon/osd/rgw (by the pids in DIR/run/*.pid), delete DIR
# A rerun on a DIR whose gateway died while its mon and osd live restarts radosgw alone, with the
# user and keys of DIR/rgw.env; a failure then leaves the cluster and its data as they are.
# Env: MON_PORT=3310  RGW_PORT=MON_PORT+10000  OBJECTSTORE=memstore|bluestore  RGW_UID=blockbackup
#      S3_ACCESS_KEY/S3_SECRET_KEY/SWIFT_KEY (default: generated)  TIMEOUT=60
#      MICRO_CLUSTER=path of micro-cluster.sh (default: micro-cluster.sh beside this script)
# Needs: apt-get install --no-install-recommends ceph-mon ceph-osd ceph-common radosgw uuid-runtime curl
# The mon + osd come from micro-cluster.sh (its stop also kills radosgw: same -c CONF, pid in DIR/run).
# No mgr: radosgw and radosgw-admin work without one (rgw's service-map registration just never lands).
set -eEuo pipefail
exec 3>&1 1>&2                      # chatter to stderr; fd 3 = real stdout (the env lines only)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(realpath -m -- "${1:-/tmp/blockbackup-rgw}")
export MON_PORT=${MON_PORT:-3310}; RGW_PORT=${RGW_PORT:-$((MON_PORT + 10000))}
RGW_UID=${RGW_UID:-blockbackup}; TIMEOUT=${TIMEOUT:-60}; export TIMEOUT
MICRO_CLUSTER=${MICRO_CLUSTER:-$HERE/micro-cluster.sh}
NAME=client.rgw.bb; CONF=$DIR/ceph.conf; ENVF=$DIR/rgw.env
ENDPOINT=http://127.0.0.1:$RGW_PORT
log() { echo "rgw-start: $*"; }
RESTARTING=0                        # 1 once an existing gateway's cluster is being reused: never wiped
die() { trap - ERR; log "ERROR: $*"; [[ -s $DIR/$NAME.log ]] && { log "--- last lines of $DIR/$NAME.log"; tail -n 20 "$DIR/$NAME.log"; }
        [[ -s $DIR/console.log ]] && { log "--- last lines of $DIR/console.log"; tail -n 20 "$DIR/console.log"; }
        if (( RESTARTING )); then
          log "the cluster in $DIR and its data are left as they were (rgw-stop.sh $DIR stops and deletes it)"; exit 1
        fi
        log "stopping the cluster (state and logs are deleted; rerun with the same DIR to retry)"
        "$MICRO_CLUSTER" stop "$DIR" || true; exit 1; }
trap 'die "command failed at line $LINENO: $BASH_COMMAND"' ERR
for b in radosgw radosgw-admin curl; do command -v $b >/dev/null || die "'$b' not found: apt-get install radosgw curl"; done
[[ -x $MICRO_CLUSTER ]] || die "micro-cluster.sh not found at $MICRO_CLUSTER (set MICRO_CLUSTER)"
t0=$(date +%s%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
http_up() { curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; }
rgw_pid() { local p; [[ -f $DIR/run/$NAME.pid ]] || return 1; p=$(<"$DIR/run/$NAME.pid")
            [[ $p =~ ^[0-9]+$ && -r /proc/$p/cmdline ]] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "-c $CONF " && echo "$p"; }
# Random keys from the kernel (no python or jq needed): an S3-like 20-character access key, 40-character secrets.
gen_key() { local n=$1 set=$2 k=""; while (( ${#k} < n )); do k+=$(head -c 256 /dev/urandom | tr -dc "$set"); done; echo "${k:0:n}"; }

if [[ -s $ENVF ]] && rgw_pid >/dev/null && http_up; then
  log "already running in $DIR"; cat "$ENVF" >&3; exit 0
fi
if (exec 4<>"/dev/tcp/127.0.0.1/$RGW_PORT") 2>/dev/null; then die "127.0.0.1:$RGW_PORT already in use; set RGW_PORT"; fi

# 1. mon + osd (micro-cluster.sh wipes a dead/failed earlier run in DIR first; a live one is kept)
conf=$("$MICRO_CLUSTER" start "$DIR" 3>&-) || { log "micro-cluster.sh start failed"; exit 1; }
[[ $conf == "$CONF" ]] || die "micro-cluster.sh printed '$conf', expected $CONF"
export CEPH_CONF=$CONF
log "mon+osd up after $(elapsed)s"
# The cluster outlived its gateway (radosgw killed or crashed): its conf section, key, user and
# objects are all still there, so only radosgw is started again.
if [[ -s $ENVF ]] && grep -qxF "[$NAME]" "$CONF"; then
  RESTARTING=1; log "restarting radosgw of the existing cluster in $DIR"
fi

# 2. rgw: own cephx key (mon rw: rgw creates its own pools; osd rwx: rgw uses object classes)
if (( ! RESTARTING )); then
mkdir -p "$DIR/$NAME"
timeout 30 ceph auth get-or-create $NAME mon 'allow rw' osd 'allow rwx' >"$DIR/$NAME/keyring"
cat >>"$CONF" <<CONF
[$NAME]
log file = $DIR/\$name.log
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
keyring = $DIR/$NAME/keyring
rgw data = $DIR/$NAME
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw thread pool size = 64
# SSE-C (Cinder's backup_s3_sse_customer_*) is refused over plain http unless this is off
rgw crypt require ssl = false
# deleted objects' data is reclaimed by gc; make it prompt (memstore keeps everything in RAM)
rgw gc obj min wait = 60
rgw gc processor period = 60
CONF
fi
radosgw -c "$CONF" -n $NAME </dev/null >>"$DIR/console.log" 2>&1 3>&- || die "radosgw failed to start (see $DIR/console.log)"
end=$((SECONDS + TIMEOUT))
until http_up; do (( SECONDS < end )) || die "rgw did not answer on $ENDPOINT within ${TIMEOUT}s"; sleep 0.1; done
pid=$(rgw_pid) || die "no radosgw pid file"
log "rgw answering on $ENDPOINT after $(elapsed)s (pid $pid)"

if (( RESTARTING )); then
  # The user and keys of the first start, checked against the gateway rather than created again.
  env_value() { sed -n "s/^$1=//p" "$ENVF"; }
  WK=$(env_value SWIFT_KEY); [[ $(env_value RGW_UID) == "$RGW_UID" ]] || die "$ENVF names user '$(env_value RGW_UID)', not '$RGW_UID'"
  timeout 30 radosgw-admin user info --uid="$RGW_UID" | grep -qF "\"$(env_value S3_ACCESS_KEY)\"" \
    || die "the gateway has no user $RGW_UID with the S3 access key of $ENVF"
  sed -i "s/^RGW_PID=.*/RGW_PID=$pid/" "$ENVF"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Auth-User: $RGW_UID:swift" -H "X-Auth-Key: $WK" "$ENDPOINT/auth/1.0")
  [[ $code == 204 || $code == 200 ]] || die "Swift auth v1 returned HTTP $code"
  log "restarted after $(elapsed)s: rgw $ENDPOINT (pid $pid), user $RGW_UID and its objects kept; env in $ENVF"
  cat "$ENVF" >&3; exit 0
fi

# 3. user with S3 keys and a Swift subuser (<uid>:swift, auth v1 at /auth/1.0); keys chosen here
AK=${S3_ACCESS_KEY:-$(gen_key 20 'A-Z0-9')}; SK=${S3_SECRET_KEY:-$(gen_key 40 'A-Za-z0-9')}
WK=${SWIFT_KEY:-$(gen_key 40 'A-Za-z0-9')}
timeout 30 radosgw-admin user create --uid="$RGW_UID" --display-name="BlockBackup test user" \
  --access-key="$AK" --secret-key="$SK" >"$DIR/user.json"
timeout 30 radosgw-admin subuser create --uid="$RGW_UID" --subuser="$RGW_UID:swift" --access=full \
  --key-type=swift --secret-key="$WK" >"$DIR/user.json"
grep -qF "\"$AK\"" "$DIR/user.json" || die "radosgw-admin did not record the S3 access key"
cat >"$ENVF" <<ENV
CEPH_CONF=$CONF
RGW_ENDPOINT=$ENDPOINT
RGW_UID=$RGW_UID
S3_ACCESS_KEY=$AK
S3_SECRET_KEY=$SK
SWIFT_AUTH_URL=$ENDPOINT/auth/1.0
SWIFT_USER=$RGW_UID:swift
SWIFT_KEY=$WK
RGW_PID=$pid
ENV
chmod 600 "$ENVF" "$DIR/user.json"
# smoke test: a Swift v1 token (proves the user, the subuser and its key)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Auth-User: $RGW_UID:swift" -H "X-Auth-Key: $WK" "$ENDPOINT/auth/1.0")
[[ $code == 204 || $code == 200 ]] || die "Swift auth v1 returned HTTP $code"
rss() { ps -o rss= -p "$1" | awk '{printf "%d MiB", $1/1024}'; }
log "up after $(elapsed)s: ${OBJECTSTORE:-memstore} mon 127.0.0.1:$MON_PORT, rgw $ENDPOINT (S3 path-style, Swift $ENDPOINT/auth/1.0 -> /swift/v1), user $RGW_UID; rgw rss $(rss "$pid"); env in $ENVF"
cat "$ENVF" >&3
