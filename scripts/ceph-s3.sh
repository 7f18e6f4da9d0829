#!/usr/bin/env bash
# A production S3 implementation for the tests: Ceph's RADOS Gateway as a throw-away
# one-node cluster (one monitor, one OSD keeping objects in memory, no mgr, auth off)
# with radosgw on 127.0.0.1, everything under one directory. Debian's packages:
# ceph-mon ceph-osd ceph-common radosgw (scripts/ensure-test-tools.sh installs them).
#
#   scripts/ceph-s3.sh start [DIR] [--owner PID]
#       Starts the cluster under DIR (default: a new temp dir) and prints KEY=VALUE
#       lines: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, CEPH_DIR, CEPH_VERSION,
#       STARTUP_SECONDS. With --owner, the cluster stops by itself once process PID
#       is gone (a test session killed with SIGKILL leaves no daemons behind).
#       NICE (default 10) is radosgw's niceness, MEMSTORE_BYTES (4 GiB) the OSD's room.
#   scripts/ceph-s3.sh stop DIR [--kill]
#       Stops radosgw, the OSD, then the monitor, by the PIDs in DIR/pids only.
#
# Exit status 3 with a one-line message when the Ceph programs are missing.
set -euo pipefail

ACCESS_KEY=${S3_ACCESS_KEY:-TESTACCESSKEY0000000}
SECRET_KEY=${S3_SECRET_KEY:-testsecretkey0000000000000000000000000000}
NICE=${NICE:-10}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}  # the OSD keeps every object in memory

alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$st" ] && [ "$st" != Z ]; }

stop() {  # reverse start order: an OSD stopped with its monitor waits 5 s for it
  local dir=$1 sig=${2:-TERM} name pid i
  [ -f "$dir/pids" ] || return 0
  tac "$dir/pids" | while read -r name pid; do
    alive "$pid" || continue
    kill "-$sig" "$pid" 2>/dev/null || continue
    for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  return 0
}

if [ "${1:-}" = stop ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 stop DIR [--kill]" >&2; exit 2; }
  sig=TERM; [ "${3:-}" = --kill ] && sig=KILL
  stop "$2" "$sig"
  exit 0
fi
[ "${1:-}" = start ] || { echo "usage: $0 start [DIR] [--owner PID] | stop DIR [--kill]" >&2; exit 2; }
shift
DIR="" OWNER=""
while [ $# -gt 0 ]; do
  case $1 in
    --owner) OWNER=$2; shift 2 ;;
    *) DIR=$1; shift ;;
  esac
done

missing=()
for prog in ceph-mon ceph-osd ceph monmaptool ceph-authtool radosgw radosgw-admin; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Ceph is not installed (no ${missing[*]}): scripts/ensure-test-tools.sh, or" \
    "apt-get install ceph-mon ceph-osd ceph-common radosgw" >&2
  exit 3
fi

DIR=${DIR:-$(mktemp -d "${TMPDIR:-/tmp}"/ceph-s3.XXXXXX)}
mkdir -p "$DIR"/{mon.a,osd.0,run,log,rgw}
DIR=$(cd "$DIR" && pwd)
CONF="$DIR/ceph.conf"
: > "$DIR/pids"
ok=0
on_exit() {  # a start that failed stops whatever it started, and says where the logs are
  [ "$ok" = 1 ] && return
  stop "$DIR" TERM
  echo "ceph-s3: start failed; logs in $DIR/log" >&2
}
trap on_exit EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }
MON_V2=$(free_port); MON_V1=$(free_port); RGW_PORT=$(free_port)
FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)

cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
keyring = $DIR/keyring
# one OSD: pools of one replica and few placement groups (no mgr to scale them)
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
# the gateway creates its pools one by one at start: each waits a paxos round
# (the 1 s default makes the start take ~15 s instead of ~3 s)
paxos propose interval = 0.1
mon warn on pool no redundancy = false
mon warn on no mgr = false
mon data avail warn = 2
mon data avail crit = 1
ms bind ipv4 = true
ms bind ipv6 = false
ms async op threads = 1
debug ms = 0

[mon]
mon data = $DIR/mon.\$id
mon cluster log file = $DIR/log/cluster.log

[osd]
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd op num shards = 1
osd op num threads per shard = 2
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.test]
# radosgw defaults to a secure monitor connection with cephx, which auth off lacks
ms mon client mode = crc
auth client required = none
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DIR/rgw
rgw thread pool size = 32
rgw dns name = localhost
rgw enable usage log = false
log file = $DIR/log/rgw.log
EOF

C=(-c "$CONF")
T0=$(date +%s.%N)

# monitor
monmaptool --create --clobber --fsid "$FSID" \
  --addv a "[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]" "$DIR/monmap" >/dev/null
ceph-authtool --create-keyring --gen-key -n mon. "$DIR/keyring" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
nohup nice -n "$NICE" ceph-mon "${C[@]}" -i a -f >"$DIR/log/mon.a.out" 2>&1 &
echo "mon.a $!" >> "$DIR/pids"

# OSD in memory
OSD_ID=$(timeout 60 ceph "${C[@]}" osd new "$OSD_UUID")
ceph-osd "${C[@]}" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd.mkfs.out" 2>&1
nohup nice -n "$NICE" ceph-osd "${C[@]}" -i "$OSD_ID" -f >"$DIR/log/osd.$OSD_ID.out" 2>&1 &
echo "osd.$OSD_ID $!" >> "$DIR/pids"
for _ in $(seq 1 120); do
  ceph "${C[@]}" osd dump 2>/dev/null | grep -q "^osd.$OSD_ID up" && break
  sleep 0.5
done
ceph "${C[@]}" osd dump | grep -q "^osd.$OSD_ID up" || { echo "ceph-s3: the OSD did not come up" >&2; exit 1; }

# gateway
nohup nice -n "$NICE" radosgw "${C[@]}" -n client.rgw.test -f >"$DIR/log/rgw.out" 2>&1 &
echo "rgw $!" >> "$DIR/pids"
for _ in $(seq 1 240); do
  curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break
  sleep 0.5
done
curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" || { echo "ceph-s3: radosgw did not come up" >&2; exit 1; }
radosgw-admin "${C[@]}" -n client.admin user create --uid=test --display-name=test \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$DIR/log/user.json"

if [ -n "$OWNER" ]; then
  # The watchdog stops the cluster once its owner is gone; `stop` ends it like a daemon.
  nohup setsid bash -c '
    while kill -0 "$1" 2>/dev/null; do sleep 2; done
    exec "$2" stop "$3"' watchdog "$OWNER" "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$DIR" \
    >/dev/null 2>&1 &
  sed -i "1i watchdog $!" "$DIR/pids"
fi

ok=1
T1=$(date +%s.%N)
cat <<EOF
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
S3_ACCESS_KEY=$ACCESS_KEY
S3_SECRET_KEY=$SECRET_KEY
CEPH_DIR=$DIR
CEPH_VERSION=$(ceph-mon --version | awk '{print $3}')
STARTUP_SECONDS=$(python3 -c "print(round($T1 - $T0, 2))")
EOF
