-- Saga instances and their timeline. All saga state lives here: a restarted orchestrator
-- continues from these rows, nothing in memory matters.

CREATE TABLE sagas (
    saga_id         uuid PRIMARY KEY,
    saga_type       text NOT NULL,
    -- One saga per order: a redelivered or republished OrderPlaced hits this constraint.
    order_id        uuid NOT NULL CONSTRAINT sagas_order_id_key UNIQUE,
    state           text NOT NULL
        CONSTRAINT sagas_state_check
        CHECK (state IN ('running', 'compensating', 'aborting', 'completed', 'aborted')),
    -- The step whose reply (running) or undo ack (compensating) is awaited.
    current_step    text,
    -- Steps whose action succeeded and that are not undone, in table order.
    completed_steps text[] NOT NULL DEFAULT '{}',
    data            jsonb NOT NULL,
    failure_reason  text,
    version         bigint NOT NULL DEFAULT 1,
    -- The message that caused the last transition: retried commands are caused by it too.
    cause_message_id uuid NOT NULL,
    correlation_id  uuid NOT NULL,
    -- Re-sends of the pending command since the last transition, and when the next is due
    -- (NULL once terminal).
    attempts        integer NOT NULL DEFAULT 0,
    next_retry_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX sagas_state_idx ON sagas (state, saga_id);
CREATE INDEX sagas_retry_due_idx ON sagas (next_retry_at) WHERE next_retry_at IS NOT NULL;

CREATE TABLE saga_transitions (
    saga_id         uuid NOT NULL REFERENCES sagas (saga_id),
    seq             integer NOT NULL,
    -- started | applied | ignored (a reply that did not match: duplicate, late, stale) | retried
    outcome         text NOT NULL
        CONSTRAINT saga_transitions_outcome_check
        CHECK (outcome IN ('started', 'applied', 'ignored', 'retried')),
    from_state      text,
    to_state        text NOT NULL,
    from_step       text,
    to_step         text,
    caused_by_message_id uuid,
    caused_by_type  text NOT NULL,
    -- [{"type": "ReserveStock", "message_id": "...", "step": "reserve_stock", "kind": "action"}]
    commands        jsonb NOT NULL DEFAULT '[]',
    detail          text,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, seq)
);
