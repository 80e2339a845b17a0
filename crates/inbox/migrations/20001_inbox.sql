-- Inbox: one row per (consumer group, message) whose effect has committed. The row is
-- written in the same transaction as the effect, so "seen" and "applied" never disagree.
CREATE TABLE IF NOT EXISTS inbox (
    consumer_group TEXT        NOT NULL,
    message_id     UUID        NOT NULL,
    topic          TEXT        NOT NULL,
    kafka_partition INT        NOT NULL,
    kafka_offset   BIGINT      NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, message_id)
);
CREATE INDEX IF NOT EXISTS inbox_received_at ON inbox (received_at);
