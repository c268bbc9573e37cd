#!/usr/bin/env bash
# Make a local PostgreSQL server available for the storage tests: install Debian's package when
# missing, start the cluster, and create the test role and database. Prints the URL to use, and
# nothing else, on stdout (callers capture it): every other message goes to stderr.
set -euo pipefail

USER_NAME=chatbot
DB_NAME=chatbot_test
URL="postgresql+psycopg://$USER_NAME:$USER_NAME@127.0.0.1:5432/$DB_NAME"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    echo "postgres: installing Debian's postgresql package" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 ||
        { as_root apt-get update -q >/dev/null 2>&1 &&
          as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
fi
cluster=$(pg_lsclusters --no-header | head -n 1)
if [ -z "$cluster" ]; then
    as_root pg_createcluster 15 main >&2
    cluster=$(pg_lsclusters --no-header | head -n 1)
fi
read -r version name _port status _ <<<"$cluster"
if [ "$status" != online ]; then
    echo "postgres: starting cluster $version/$name" >&2
    as_root pg_ctlcluster "$version" "$name" start >&2
fi
psql_admin() { as_root su postgres -c "psql -qtAX -v ON_ERROR_STOP=1 -c \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$USER_NAME'")" != 1 ]; then
    psql_admin "CREATE ROLE $USER_NAME LOGIN PASSWORD '$USER_NAME'" >&2
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    psql_admin "CREATE DATABASE $DB_NAME OWNER $USER_NAME" >&2
fi
echo "$URL"
