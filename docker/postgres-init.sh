#!/bin/bash
# Creates openbell's state database beside Airflow's metadata database (first start only).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-SQL
  CREATE USER openbell WITH PASSWORD '${POSTGRES_PASSWORD}';
  CREATE DATABASE openbell OWNER openbell;
SQL
