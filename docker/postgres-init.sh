#!/bin/bash
# Creates openbell's state database beside Airflow's metadata database (first start only).
# The password reaches the server as a psql variable quoted by psql (:'password'), never pasted into SQL.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -v password="$POSTGRES_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-'SQL'
  CREATE USER openbell WITH PASSWORD :'password';
  CREATE DATABASE openbell OWNER openbell;
SQL
