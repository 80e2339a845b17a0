#!/bin/bash
# Places one order along each path of the order saga and checks where it ends:
#   1. approved          stock reserved, payment charged, shipment scheduled, then dispatched
#   2. out of stock      StockUnavailable: nothing to undo, order rejected
#   3. payment declined  stock reserved, then released; order rejected
#   4. shipping refused  stock reserved and payment charged, both undone; order rejected
#
# Only the services' HTTP APIs are used (curl + jq). The URLs default to the ports of the local
# stack and of docker-compose.yml on the host; the demo container overrides them. Exits
# non-zero at the first path that does not end as expected.
set -euo pipefail

ORDER_URL="${ORDER_URL:-http://127.0.0.1:18080}"
INVENTORY_URL="${INVENTORY_URL:-http://127.0.0.1:18082}"
PAYMENT_URL="${PAYMENT_URL:-http://127.0.0.1:18083}"
SHIPPING_URL="${SHIPPING_URL:-http://127.0.0.1:18084}"
ORCHESTRATOR_URL="${ORCHESTRATOR_URL:-http://127.0.0.1:18085}"
# Prices, stock and credit are admin operations (docs/security.md): the services' admin token,
# docker-compose's documented dev default unless SAGA_ADMIN_TOKEN is set (`. .stack/stack.env`
# for the local stack).
SAGA_ADMIN_TOKEN="${SAGA_ADMIN_TOKEN:-dev-admin-token-change-me}"
# How long one saga may take to reach its end (the orchestrator re-sends an unanswered command
# after 30 s by default, so a lost message still finishes well within this).
DEADLINE_SECS="${DEADLINE_SECS:-90}"

# Unique customers per run, so the demo can run again on the same databases.
RUN="${RUN_ID:-$(date +%s)}"
RICH="demo-rich-$RUN"
POOR="demo-poor-$RUN"
WIDGET="DEMO-WIDGET"
RARE="DEMO-RARE"

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

# curl that fails on HTTP errors and shows the problem+json body when it does.
call() {
  local method=$1 url=$2 body=${3:-}
  local out status
  out=$(mktemp)
  if [ -n "$body" ]; then
    status=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" -H 'content-type: application/json' \
      -H "authorization: Bearer $SAGA_ADMIN_TOKEN" --data "$body" "$url")
  else
    status=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" "$url")
  fi
  if [ "${status:0:1}" != "2" ]; then
    echo "$method $url -> $status: $(cat "$out")" >&2
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

wait_healthy() {
  local name=$1 url=$2 end=$((SECONDS + DEADLINE_SECS))
  until curl -fsS -o /dev/null "$url/healthz"; do
    [ $SECONDS -lt $end ] || fail "$name at $url not healthy after ${DEADLINE_SECS}s"
    sleep 1
  done
}

# Polls `jq_filter` over GET `url` until it prints `want`, within the deadline.
wait_for() {
  local what=$1 url=$2 filter=$3 want=$4 end=$((SECONDS + DEADLINE_SECS)) got=""
  while true; do
    got=$(curl -fsS "$url" 2>/dev/null | jq -r "$filter" 2>/dev/null || true)
    [ "$got" = "$want" ] && return 0
    [ $SECONDS -lt $end ] || fail "$what: expected $want, still '$got' after ${DEADLINE_SECS}s ($url)"
    sleep 0.5
  done
}

place_order() {
  local customer=$1 sku=$2 quantity=$3 country=$4
  call POST "$ORDER_URL/orders" "$(jq -n --arg c "$customer" --arg s "$sku" --argjson q "$quantity" \
    --arg country "$country" '{customer_id: $c, items: [{sku: $s, quantity: $q}],
      shipping_address: {name: "Demo Customer", line1: "1 Main St", line2: null,
                         city: "Somewhere", postal_code: "12345", country: $country}}')" \
    | jq -r .order_id
}

# Waits for the order's final status and the saga's final state, then prints the saga.
expect_outcome() {
  local order_id=$1 status=$2 saga_state=$3
  wait_for "order $order_id status" "$ORDER_URL/orders/$order_id" .status "$status"
  wait_for "saga of order $order_id" "$ORCHESTRATOR_URL/sagas/$order_id" .state "$saga_state"
  curl -fsS "$ORDER_URL/orders/$order_id" \
    | jq -c '{order_id, status, rejection_reason, total}'
  curl -fsS "$ORCHESTRATOR_URL/sagas/$order_id" \
    | jq -c '{state, completed_steps, failure_reason, steps: [.timeline[] | .outcome]}'
}

available() { call GET "$INVENTORY_URL/stock/$1" | jq -r .available; }
credit() { call GET "$PAYMENT_URL/accounts/$1" | jq -r .credit.amount_minor; }

echo "== waiting for the services"
wait_healthy order "$ORDER_URL"
wait_healthy inventory "$INVENTORY_URL"
wait_healthy payment "$PAYMENT_URL"
wait_healthy shipping "$SHIPPING_URL"
wait_healthy orchestrator "$ORCHESTRATOR_URL"

echo "== seeding catalog, stock and accounts"
call PUT "$ORDER_URL/catalog/$WIDGET" '{"unit_price": {"amount_minor": 1250, "currency": "EUR"}}' >/dev/null
call PUT "$ORDER_URL/catalog/$RARE" '{"unit_price": {"amount_minor": 99900, "currency": "EUR"}}' >/dev/null
call PUT "$INVENTORY_URL/stock/$WIDGET" '{"available": 1000}' >/dev/null
call PUT "$INVENTORY_URL/stock/$RARE" '{"available": 1}' >/dev/null
call PUT "$PAYMENT_URL/accounts/$RICH" '{"credit": {"amount_minor": 1000000, "currency": "EUR"}}' >/dev/null
call PUT "$PAYMENT_URL/accounts/$POOR" '{"credit": {"amount_minor": 100, "currency": "EUR"}}' >/dev/null

echo "== 1. approved: 2 x $WIDGET to GB for $RICH"
order=$(place_order "$RICH" "$WIDGET" 2 GB)
expect_outcome "$order" APPROVED completed
wait_for "shipment of $order" "$SHIPPING_URL/shipments/$order" .status dispatched
echo "shipment dispatched"

echo "== 2. out of stock: 3 x $RARE (1 available)"
order=$(place_order "$RICH" "$RARE" 3 GB)
expect_outcome "$order" REJECTED aborted

echo "== 3. payment declined: 2 x $WIDGET for $POOR (credit 1.00 EUR)"
before=$(available "$WIDGET")
order=$(place_order "$POOR" "$WIDGET" 2 GB)
expect_outcome "$order" REJECTED aborted
after=$(available "$WIDGET")
[ "$before" = "$after" ] || fail "stock of $WIDGET not released: $before before, $after after"
echo "stock released: $WIDGET available $after"

echo "== 4. shipping refused: 2 x $WIDGET to JP (not served) for $RICH"
before_stock=$(available "$WIDGET")
before_credit=$(credit "$RICH")
order=$(place_order "$RICH" "$WIDGET" 2 JP)
expect_outcome "$order" REJECTED aborted
after_stock=$(available "$WIDGET")
after_credit=$(credit "$RICH")
[ "$before_stock" = "$after_stock" ] || fail "stock not released: $before_stock -> $after_stock"
[ "$before_credit" = "$after_credit" ] || fail "payment not refunded: $before_credit -> $after_credit"
echo "stock released and payment refunded: credit $after_credit"

echo "== demo passed: every saga path ended as expected"
echo "   see the sagas:  curl -s '$ORCHESTRATOR_URL/sagas?state=aborted' | jq"
