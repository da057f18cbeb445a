#!/usr/bin/env bash
# rgw-stop.sh [DIR] - stop what rgw-start.sh started in DIR (mon, osd, radosgw: SIGKILL by the pids
# in DIR/run/*.pid whose command line names DIR/ceph.conf) and delete DIR.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(realpath -m -- "${1:-/tmp/blockbackup-rgw}")
MICRO_CLUSTER=${MICRO_CLUSTER:-$HERE/micro-cluster.sh}
exec "$MICRO_CLUSTER" stop "$DIR"
