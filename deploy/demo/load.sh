#!/bin/bash
# Places orders continuously so the dashboards (Grafana, Kafka UI, Jaeger, the lag exporter)
# have something to show: `docker compose --profile load up -d load`. Every order is for
# LOAD-MUG; the stock and credit it needs are topped up every REFILL_EVERY orders, and one
# order in ten goes to an unserved country, so compensations show too.
#
# RATE orders per second (default 2). URLs as in demo.sh (the container overrides them).
set -euo pipefail

ORDER_URL="${ORDER_URL:-http://127.0.0.1:18080}"
INVENTORY_URL="${INVENTORY_URL:-http://127.0.0.1:18082}"
PAYMENT_URL="${PAYMENT_URL:-http://127.0.0.1:18083}"
SAGA_ADMIN_TOKEN="${SAGA_ADMIN_TOKEN:-dev-admin-token-change-me}"
RATE="${RATE:-2}"
REFILL_EVERY="${REFILL_EVERY:-500}"
SKU="LOAD-MUG"
CUSTOMER="load-$(date +%s)"

admin_put() {
  curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' \
    -H "authorization: Bearer $SAGA_ADMIN_TOKEN" --data "$2" "$1"
}

refill() {
  admin_put "$INVENTORY_URL/stock/$SKU" "{\"available\": $((REFILL_EVERY * 2))}"
  admin_put "$PAYMENT_URL/accounts/$CUSTOMER" \
    "{\"credit\": {\"amount_minor\": $((REFILL_EVERY * 2000)), \"currency\": \"EUR\"}}"
}

until curl -fsS -o /dev/null "$ORDER_URL/healthz"; do sleep 1; done
admin_put "$ORDER_URL/catalog/$SKU" '{"unit_price": {"amount_minor": 900, "currency": "EUR"}}'
refill

pause=$(awk "BEGIN { print 1 / $RATE }")
n=0
while true; do
  n=$((n + 1))
  country=FR
  [ $((n % 10)) -eq 0 ] && country=JP
  curl -sS -o /dev/null -w "order $n: %{http_code}\n" -X POST "$ORDER_URL/orders" \
    -H 'content-type: application/json' \
    --data "{\"customer_id\": \"$CUSTOMER\", \"items\": [{\"sku\": \"$SKU\", \"quantity\": 1}],
      \"shipping_address\": {\"name\": \"Load\", \"line1\": \"1 Main St\", \"line2\": null,
      \"city\": \"Paris\", \"postal_code\": \"75001\", \"country\": \"$country\"}}" || true
  if [ $((n % REFILL_EVERY)) -eq 0 ]; then refill || echo "refill failed" >&2; fi
  sleep "$pause"
done
