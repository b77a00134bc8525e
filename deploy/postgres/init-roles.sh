#!/bin/sh
# Runs once, when the database is created (docker-entrypoint-initdb.d). The schema owner is
# POSTGRES_USER (`evx`): it runs the migrations (`evx db upgrade`). The API replicas connect as
# `evx_app`, a member of `evx_service`, which migration 0007 grants only what the service needs:
# SELECT and INSERT on the ledger's append-only tables, no TRUNCATE, no ALTER, no triggers.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$(cat /run/secrets/evx_service_password)" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE evx_service NOLOGIN;
CREATE ROLE evx_app LOGIN PASSWORD :'pw' IN ROLE evx_service;
SQL
