#!/usr/bin/env bash
# `make prod-demo`: the production layout on this one machine, in the foreground.
#   PostgreSQL and Redis on loopback, gunicorn (WEB_CONCURRENCY workers), two `digest worker`,
#   one `digest scheduler`, all under honcho. Ctrl+C stops everything.
# Settings go to instance/prod-demo.env (created once, with a fresh secret key); edit it to
# point at a real SMTP server. Overridable: PORT (8000), DEMO_DATABASE (digest_demo),
# DEMO_REDIS_DB (8), WORKERS (2). PostgreSQL is reached on 127.0.0.1:5432 as PGUSER
# (postgres), with PGPASSWORD when that role needs one; the role must be allowed to create
# databases.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="$PWD/.venv/bin"
PORT="${PORT:-8000}"
DATABASE="${DEMO_DATABASE:-digest_demo}"
REDIS_DB="${DEMO_REDIS_DB:-8}"
WORKERS="${WORKERS:-2}"
PGUSER="${PGUSER:-postgres}"
export PGUSER
ENV_FILE="${DEMO_ENV_FILE:-instance/prod-demo.env}"

say() { printf '\033[1m%s\033[0m\n' "$*" >&2; }

for tool in pg_isready psql createdb redis-cli; do
  command -v "$tool" >/dev/null || { echo "prod-demo needs $tool: install PostgreSQL and Redis (apt-get install postgresql redis-server)" >&2; exit 2; }
done

case "$DATABASE" in
  *[!a-z0-9_]*|"") echo "DEMO_DATABASE must be lower-case letters, digits and _" >&2; exit 2 ;;
esac

# The services the production layout needs, on loopback only.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if [ "$(psql -h 127.0.0.1 -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]; then
  say "creating database $DATABASE"
  createdb -h 127.0.0.1 "$DATABASE"
fi

mkdir -p "$(dirname "$ENV_FILE")"
# The outbox and metric files live beside the settings (instance/ by default).
HERE="$(cd "$(dirname "$ENV_FILE")" && pwd)"
if [ ! -f "$ENV_FILE" ]; then
  say "writing $ENV_FILE"
  umask 077
  cat > "$ENV_FILE" <<SETTINGS
DIGEST_ENV=production
DIGEST_SECRET_KEY=$("$BIN/python" -c 'import secrets; print(secrets.token_hex(32))')
DIGEST_DATABASE_URL=postgresql://$PGUSER@127.0.0.1:5432/$DATABASE
DIGEST_RATELIMIT_STORAGE_URL=redis://127.0.0.1:6379/$REDIS_DB
DIGEST_PUBLIC_URL=http://127.0.0.1:$PORT
DIGEST_MAIL_URL=file://$HERE/prod-demo-outbox
DIGEST_LOG_FORMAT=text
# Plain http on loopback for the demo; a real deployment serves https and keeps these on.
DIGEST_SESSION_COOKIE_SECURE=false
DIGEST_REMEMBER_COOKIE_SECURE=false
WEB_CONCURRENCY=2
PROMETHEUS_MULTIPROC_DIR=$HERE/prod-demo-metrics
SETTINGS
fi

# The one-off steps run with the same settings as the processes.
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a
export PATH="$BIN:$PATH"

digest init
digest ingest >/dev/null
digest build
# One pass of the sender before the workers start: it sends anything left from an earlier
# run and creates the sender's pause-switch row, which two workers starting at the same
# instant would otherwise both try to create.
digest worker --once >/dev/null

say "digest (production layout) on http://127.0.0.1:$PORT/"
say "  health  http://127.0.0.1:$PORT/readyz    metrics  http://127.0.0.1:$PORT/metrics"
say "  status  (in another terminal) set -a; . $ENV_FILE; set +a; .venv/bin/digest status"
exec honcho start -f deploy/Procfile -d . -e "$ENV_FILE" -p "$PORT" -c "web=1,worker=$WORKERS,scheduler=1"
