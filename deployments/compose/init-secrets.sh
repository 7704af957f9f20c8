#!/bin/sh
# Makes the secrets docker-compose.yaml mounts (./secrets/*) and the .env
# file with the admin passwords, once. Run from deployments/compose:
#   ./init-secrets.sh && docker compose up -d --build
# Existing files are kept, so re-running it never rotates a secret.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
rand() { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c 40; }
for f in clickhouse_writer_password clickhouse_retention_password redaction_key; do
  [ -s "secrets/$f" ] || rand > "secrets/$f"
done
if [ ! -s secrets/ledger.pem ]; then
  # The ledger's Ed25519 signing key; keygen prints the public key to give
  # auditors (ledger.public_keys in their config).
  if command -v go >/dev/null 2>&1; then
    (cd ../.. && go run ./cmd/agentrail ledger keygen --out deployments/compose/secrets/ledger.pem)
  else
    docker compose run --rm --no-deps -v "$PWD/secrets:/out" --user "$(id -u)" ingest ledger keygen --out /out/ledger.pem
  fi
fi
# Compose reads these into the ClickHouse and Grafana containers' environment.
[ -s .env ] || printf 'CLICKHOUSE_ADMIN_PASSWORD=%s\nGRAFANA_ADMIN_PASSWORD=%s\n' "$(rand)" "$(rand)" > .env
# The containers run as non-root users of their own: let them read the files.
chmod 0644 secrets/* 
echo "secrets in $(pwd)/secrets, admin passwords in $(pwd)/.env"
