#!/bin/bash
# Static validation of docker-compose.yml and deploy/, for machines without a Docker engine
# (docs/deploy.md, "What is validated and how"). Installs its tools on first use into
# $SAGA_DEPLOY_TOOLS (default ~/.cache/saga-suite/deploy-tools):
#   check-jsonschema (PyPI)  compose file against the Compose Specification JSON schema
#   dclint (npm)             compose linter, errors only (its ordering opinions are warnings)
#   promtool (Debian's prometheus package)  Prometheus configuration
#   deploy/check_sources.py  compose, Dockerfile, SQL, topics and dashboards against the code
#   bash -n                  the shell scripts parse
# When `docker compose` exists (a machine with the compose plugin) it also runs
# `docker compose config -q`, which needs no running engine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${SAGA_DEPLOY_TOOLS:-$HOME/.cache/saga-suite/deploy-tools}"
cd "$ROOT"

fail=0
step() { echo "== $*"; }
bad() { echo "FAILED: $*" >&2; fail=1; }

if [ ! -x "$TOOLS/venv/bin/check-jsonschema" ]; then
  step "installing check-jsonschema and PyYAML into $TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q check-jsonschema pyyaml
fi
if [ ! -x "$TOOLS/npm/node_modules/.bin/dclint" ]; then
  step "installing dclint into $TOOLS/npm"
  mkdir -p "$TOOLS/npm"
  (cd "$TOOLS/npm" && npm install --silent --no-audit --no-fund dclint@3)
fi
if ! command -v promtool >/dev/null; then
  step "installing Debian's prometheus package (promtool)"
  apt_get() { if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo -n apt-get "$@"; fi; }
  apt_get update -qq
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends prometheus >/dev/null
fi

step "compose file against the Compose Specification schema"
"$TOOLS/venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec \
  docker-compose.yml deploy/compose.kafka-3.yml || bad "compose schema"

step "dclint (errors only)"
"$TOOLS/npm/node_modules/.bin/dclint" -q docker-compose.yml deploy/compose.kafka-3.yml || bad "dclint"

if docker compose version >/dev/null 2>&1; then
  step "docker compose config"
  docker compose config -q || bad "docker compose config"
  docker compose -f docker-compose.yml -f deploy/compose.kafka-3.yml config -q || bad "3-node config"
else
  step "docker compose config: skipped (no compose plugin here)"
fi

step "promtool check config"
promtool check config deploy/prometheus/prometheus.yml || bad "prometheus config"

step "shell scripts parse"
for script in deploy/kafka/create-topics.sh deploy/demo/demo.sh deploy/demo/load.sh deploy/validate.sh deploy/postgres/passwords.sh; do
  bash -n "$script" || bad "$script"
done

step "deploy/ against the sources"
"$TOOLS/venv/bin/python" deploy/check_sources.py || bad "check_sources"

if [ "$fail" -ne 0 ]; then
  echo "deploy validation FAILED" >&2
  exit 1
fi
echo "deploy validation passed"
