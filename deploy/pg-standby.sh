#!/bin/bash
# The entrypoint of profile `ha`'s PostgreSQL standby: on first start, clone
# the primary with pg_basebackup -R (which writes standby.signal and a
# primary_conninfo), naming this standby `standby` for the primary's
# synchronous_standby_names; then run postgres as the image does. After a
# promotion this same node simply starts as the new primary.
set -euo pipefail
: "${PRIMARY_HOST:?PRIMARY_HOST names the primary}"
: "${PGPASSWORD:?PGPASSWORD is the postgres password of the primary}"
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  until gosu postgres pg_isready -h "$PRIMARY_HOST" -U postgres -q; do sleep 1; done
  gosu postgres env PGPASSWORD="$PGPASSWORD" pg_basebackup \
    -h "$PRIMARY_HOST" -U postgres -D "$PGDATA" -R -X stream \
    -d "application_name=standby"
  # The name the primary waits for (the last setting in the file wins), and
  # a promoted standby must not wait for a standby of its own.
  {
    echo "primary_conninfo = 'host=$PRIMARY_HOST user=postgres password=$PGPASSWORD application_name=standby'"
    echo "synchronous_standby_names = ''"
  } >>"$PGDATA/postgresql.auto.conf"
fi
exec gosu postgres postgres
