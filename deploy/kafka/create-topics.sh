#!/bin/bash
# Creates the suite's topics (docs/architecture.md, "Topics") on a real Kafka cluster.
# Runs in the `kafka-init` container of docker-compose.yml, from the apache/kafka image.
# Existing topics are left alone (--if-not-exists), so it is safe on every `up`.
# The list mirrors saga_contracts::topics::{ALL, DEAD_LETTERS} with
# saga_kafka::DEFAULT_PARTITIONS; deploy/validate.sh checks that it does.
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
PARTITIONS="${PARTITIONS:-4}"
REPLICATION_FACTOR="${REPLICATION_FACTOR:-1}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"

TOPICS=(
  order.events
  order.commands
  inventory.commands
  inventory.events
  payment.commands
  payment.events
  shipping.commands
  shipping.events
  dead-letters
)

# Dead letters are kept for an operator to inspect and replay, not forever (docs/security.md).
DEAD_LETTER_RETENTION_MS="${DEAD_LETTER_RETENTION_MS:-2592000000}" # 30 days

for topic in "${TOPICS[@]}"; do
  extra=()
  if [ "$topic" = dead-letters ]; then
    extra=(--config "retention.ms=$DEAD_LETTER_RETENTION_MS")
  fi
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" \
    "${extra[@]}"
done
# --if-not-exists keeps an existing topic's settings: apply the retention to it as well.
"$KAFKA_BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --alter --entity-type topics \
  --entity-name dead-letters --add-config "retention.ms=$DEAD_LETTER_RETENTION_MS"

# Fail the init container (and so every service that waits on it) unless every topic is
# there with its partitions: a service must never start against a half-made topic set.
for topic in "${TOPICS[@]}"; do
  count=$("$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --topic "$topic" \
    | grep -c 'Partition: ')
  if [ "$count" -lt "$PARTITIONS" ]; then
    echo "topic $topic has $count partitions, expected at least $PARTITIONS" >&2
    exit 1
  fi
  echo "topic $topic: $count partitions"
done
