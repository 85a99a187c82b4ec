#!/bin/bash
# Run once by the postgres image when it creates the primary's data
# directory (docker-entrypoint-initdb.d): lets the standby of profile `ha`
# connect for streaming replication with the postgres password. Harmless
# without a standby.
set -euo pipefail
echo "host replication postgres all scram-sha-256" >>"$PGDATA/pg_hba.conf"
