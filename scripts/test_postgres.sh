#!/usr/bin/env bash
# Distributed tuning on a real PostgreSQL server: install PostgreSQL if missing (Debian, as root),
# start a throw-away cluster on localhost, run the two-worker test against it, stop the server.
# Usage: bash scripts/test_postgres.sh   (CI runs it after scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

BIN=$(pg_bin)
if [ -z "$BIN" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL server binaries not found and not root: install the 'postgresql' package" >&2
    exit 1
  fi
  echo "installing PostgreSQL (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  BIN=$(pg_bin)
fi

# PostgreSQL refuses to run as root: use the package's 'postgres' account then.
RUN=()
if [ "$(id -u)" -eq 0 ]; then
  RUN=(runuser -u postgres --)
fi
DATA=$(mktemp -d /tmp/sb3_crypto_pg.XXXXXX)
[ "$(id -u)" -eq 0 ] && chown postgres "$DATA"
PORT=${PGPORT_TEST:-$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)}

cleanup() {
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DATA/db" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT

"${RUN[@]}" "$BIN/initdb" -D "$DATA/db" -U postgres --auth=trust >/dev/null
"${RUN[@]}" "$BIN/pg_ctl" -D "$DATA/db" -l "$DATA/server.log" -w \
  -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c max_connections=50" start >/dev/null
"${RUN[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres optuna_ci
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"

EXTRAS=dev,postgres bash scripts/setup_env.sh
export SB3_CRYPTO_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export SB3_CRYPTO_POSTGRES_URL="postgresql+psycopg2://postgres@127.0.0.1:$PORT/optuna_ci"
.venv/bin/python -m pytest -m postgres -p no:cacheprovider "$@"
