#!/usr/bin/env bash
# Checks the alert rules and runs their unit tests (deploy/prometheus/alerts.test.yml).
# promtool comes with Debian's prometheus package, installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/prometheus"
if ! command -v promtool >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q prometheus
fi
promtool check rules alerts.yml
promtool test rules alerts.test.yml
