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

for topic in "${TOPICS[@]}"; do
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR"
done

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
