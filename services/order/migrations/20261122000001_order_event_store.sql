-- Order service schema: the catalog it owns, the event store (source of truth for orders),
-- the CQRS read model with its projection checkpoint, and idempotency keys for POST /orders.

-- Catalog: the order service prices orders, so it owns the prices. Inventory owns stock only.
CREATE TABLE catalog (
    sku              text        PRIMARY KEY,
    unit_price_minor bigint      NOT NULL CHECK (unit_price_minor >= 0),
    currency         text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Event store. (order_id, version) is the primary key, so two writers that folded the same
-- version and both append version+1 conflict: optimistic concurrency without locks.
-- global_seq orders events across orders (the consistency token handed to clients);
-- tx_id lets the projector read only events of transactions that can no longer commit
-- "behind" it (a bigserial alone can commit out of order and would be skipped).
CREATE TABLE order_events (
    order_id    uuid        NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    type        text        NOT NULL,
    payload     jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    global_seq  bigserial   NOT NULL UNIQUE,
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT order_events_pkey PRIMARY KEY (order_id, version)
);
CREATE INDEX order_events_projection_order ON order_events (tx_id, global_seq);

-- Wake projectors (in every instance) when events are appended; they also poll.
CREATE FUNCTION order_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER order_events_notify AFTER INSERT ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION order_events_notify();

-- Read model for listing orders by customer. Derived data: it can be dropped and rebuilt
-- from order_events at any time.
CREATE TABLE order_summaries (
    order_id         uuid        PRIMARY KEY,
    customer_id      text        NOT NULL,
    status           text        NOT NULL,
    rejection_reason text,
    total_minor      bigint      NOT NULL,
    currency         text        NOT NULL,
    item_count       integer     NOT NULL,
    version          integer     NOT NULL,
    placed_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
-- Order ids are UUID v7 (time ordered), so (customer_id, order_id DESC) is newest first
-- and doubles as a keyset-pagination cursor.
CREATE INDEX order_summaries_by_customer ON order_summaries (customer_id, order_id DESC);

-- Where each projection stands in (tx_id, global_seq) order.
CREATE TABLE projection_checkpoints (
    name        text        PRIMARY KEY,
    last_tx_id  xid8        NOT NULL DEFAULT '0'::xid8,
    last_seq    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO projection_checkpoints (name) VALUES ('order_summaries');

-- Idempotency-Key for POST /orders, written in the order's transaction.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
