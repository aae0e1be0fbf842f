#!/bin/sh
# First start of the compose PostgreSQL: the two source IDBs beside the Info Mart, and the
# web app's login role (its privileges come from `gim db grant-web gim_web` after migrations).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE idb_voice;
CREATE DATABASE idb_mm;
CREATE ROLE gim_web LOGIN PASSWORD '${GIM_WEB_DB_PASSWORD}';
SQL
