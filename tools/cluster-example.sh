#!/usr/bin/env bash
# Three OpenWA instances on one machine, serving as one gateway (docs/deployment.md).
#
#   tools/cluster-example.sh                  a:8081 b:8082 c:8083, until Ctrl-C or SIGTERM
#   tools/cluster-example.sh a:9001 b:9002    the instances named, on those ports
#   tools/cluster-example.sh b:8082           one instance, in the foreground: the script
#                                             becomes that server (exec), so signals reach it
#
# What the instances share comes from the environment, the same on every one:
#   DATABASE_URL     postgresql+asyncpg://user:password@host:5432/openwa
#   REDIS_URL        redis://host:6379/0
#   S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY (S3_REGION optional)
#   CLUSTER_SECRET   16 characters or more; the same on every instance
#   API_KEY          the first admin key (16 characters or more)
# Optional: HOST (127.0.0.1, where each listens and what the others call it by),
# DATA_ROOT (./cluster-data: one DATA_DIR per instance below it), OPENWA (the command,
# `openwa`), and any other setting of the README's table (SESSION_LEASE_S,
# MAX_SESSIONS, SHUTDOWN_TIMEOUT_S, ENGINE_TYPE, ...), passed on as they are.
#
# tests/cluster/ starts its instances through this script, so it is tested on every run.
set -euo pipefail

for name in DATABASE_URL REDIS_URL S3_ENDPOINT S3_BUCKET S3_ACCESS_KEY_ID \
  S3_SECRET_ACCESS_KEY CLUSTER_SECRET API_KEY; do
  if [ -z "${!name:-}" ]; then
    echo "cluster-example: set $name (see the head of $0)" >&2
    exit 2
  fi
done

export CACHE_TYPE=redis STORAGE_TYPE=s3
HOST=${HOST:-127.0.0.1}
DATA_ROOT=${DATA_ROOT:-./cluster-data}
OPENWA=${OPENWA:-openwa}

# One instance: its own id, port, address (the one the others forward to) and data dir.
if [ $# -eq 1 ]; then
  name=${1%%:*}
  port=${1##*:}
  export INSTANCE_ID=$name INSTANCE_URL="http://$HOST:$port" DATA_DIR="$DATA_ROOT/$name"
  mkdir -p "$DATA_DIR"
  # shellcheck disable=SC2086 # OPENWA may be a command with arguments (python -m openwa)
  exec $OPENWA serve --host "$HOST" --port "$port"
fi

specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(a:8081 b:8082 c:8083)
pids=()
for spec in "${specs[@]}"; do
  bash "$0" "$spec" &
  pids+=($!)
done
# Ctrl-C or SIGTERM: every instance drains (hands its sessions to the others as they
# stop, within SHUTDOWN_TIMEOUT_S) and the script ends with the last of them.
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; wait; exit' INT TERM
wait
