#!/bin/bash
# Sets each service role's password from the environment, after init.sql created the roles
# (the postgres image's entrypoint runs /docker-entrypoint-initdb.d in name order, once, on an
# empty data directory; docker-compose.yml mounts this file after init.sql). Without a
# password a role cannot log in over TCP (scram-sha-256), so every variable must be set:
# docker-compose.yml gives each a documented development default (docs/security.md).
#
# The local stack does the same with generated passwords (crates/stack/src/postgres.rs).
# Passwords end up in the services' APP_DATABASE__URL, so use URL-safe characters.
set -euo pipefail

declare -A PASSWORDS=(
  [order_svc]="${SAGA_DB_PASSWORD_ORDER:?}"
  [inventory_svc]="${SAGA_DB_PASSWORD_INVENTORY:?}"
  [payment_svc]="${SAGA_DB_PASSWORD_PAYMENT:?}"
  [shipping_svc]="${SAGA_DB_PASSWORD_SHIPPING:?}"
  [orchestrator_svc]="${SAGA_DB_PASSWORD_ORCHESTRATOR:?}"
  [registry_svc]="${SAGA_DB_PASSWORD_REGISTRY:?}"
)

for role in "${!PASSWORDS[@]}"; do
  # psql quotes the value (:'password'), so no password can break out of the literal.
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v password="${PASSWORDS[$role]}" <<SQL
ALTER ROLE ${role} PASSWORD :'password';
SQL
done
echo "passwords.sh: set the passwords of ${#PASSWORDS[@]} roles"
