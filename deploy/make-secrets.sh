#!/usr/bin/env bash
# Generate every secret the compose stack (and, with kubectl, the Kubernetes manifests) mounts,
# into deploy/secrets/ (git-ignored). Never overwrites: keys must stay the same for the life of
# the data (a new KEK cannot unwrap old items; a new log key breaks partners' pinned key).
#   deploy/make-secrets.sh            # then: docker compose -f deploy/compose.yaml up -d
set -euo pipefail
cd "$(dirname "$0")"
out=secrets
umask 077
mkdir -p "$out/kek"
new() { [ -e "$out/$1" ] && { echo "keep $out/$1"; return 1; }; echo "make $out/$1"; }

# KEK directory: <id>.key (base64 of 32 random bytes) + "active" naming the id (storage/keyring.py).
if [ ! -e "$out/kek/active" ]; then
  id="kek-$(date -u +%Y%m%d)-$(openssl rand -hex 4)"
  openssl rand -base64 32 > "$out/kek/$id.key"
  echo "$id" > "$out/kek/active"
  echo "make $out/kek/$id.key (active)"
fi
# Log signing key: Ed25519, PKCS#8 PEM (service/ledger/keys.py). Publish its verifier key
# (GET /v1/ledger/key) to partners; it must never change.
new evx_log_signing_key && openssl genpkey -algorithm ed25519 -out "$out/evx_log_signing_key"
new postgres_password && openssl rand -hex 24 > "$out/postgres_password"
new evx_service_password && openssl rand -hex 24 > "$out/evx_service_password"
# The schema owner (migrations only) and the service's least-privilege role (migration 0007).
new evx_migrate_database_url && printf 'postgresql+psycopg://evx:%s@postgres:5432/evx' \
  "$(cat "$out/postgres_password")" > "$out/evx_migrate_database_url"
new evx_database_url && printf 'postgresql+psycopg://evx_app:%s@postgres:5432/evx' \
  "$(cat "$out/evx_service_password")" > "$out/evx_database_url"
new evx_s3_access_key && printf 'evx-%s' "$(openssl rand -hex 8)" > "$out/evx_s3_access_key"
new evx_s3_secret_key && openssl rand -hex 24 > "$out/evx_s3_secret_key"
if new tls_crt; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=${EVX_HOSTNAME:-localhost}" \
    -addext "subjectAltName=DNS:${EVX_HOSTNAME:-localhost},IP:127.0.0.1" \
    -keyout "$out/tls_key" -out "$out/tls_crt" 2>/dev/null
fi

# Compose bind-mounts these files with their host owner and mode: the API runs as uid 10001.
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$out/kek" "$out/evx_log_signing_key" "$out/evx_database_url" \
    "$out/evx_migrate_database_url" \
    "$out/evx_s3_access_key" "$out/evx_s3_secret_key"
else
  echo "not root: making the API's files readable by all (trial use only; production: chown 10001)"
  chmod 0755 "$out" "$out/kek"; chmod 0444 "$out"/kek/* "$out"/evx_* "$out/postgres_password" "$out/tls_"*
fi
echo "verifier key for partners: start the stack, then GET https://<host>/v1/ledger/key"
