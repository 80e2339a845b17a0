-- Sagas that cannot finish on their own: step deadlines, an overall saga deadline, incidents
-- (a terminal-but-open state an operator resolves) and operator actions in the timeline.

ALTER TABLE sagas DROP CONSTRAINT sagas_state_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_state_check
    CHECK (state IN ('running', 'compensating', 'aborting', 'completed', 'aborted', 'incident'));

-- When the saga as a whole must have finished its forward steps (fixed at start).
ALTER TABLE sagas ADD COLUMN saga_deadline_at timestamptz;
-- The deadline that fires next while running: the earlier of the current step's deadline and
-- the saga deadline. NULL when the step has none, or the saga is not running. Durable, so a
-- restarted orchestrator fires it; claimed with SKIP LOCKED, so one instance fires it.
ALTER TABLE sagas ADD COLUMN deadline_at timestamptz;
-- When the pending command was first sent (the age of the oldest pending step).
ALTER TABLE sagas ADD COLUMN step_started_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX sagas_deadline_idx ON sagas (deadline_at) WHERE deadline_at IS NOT NULL;

ALTER TABLE saga_transitions DROP CONSTRAINT saga_transitions_outcome_check;
ALTER TABLE saga_transitions ADD CONSTRAINT saga_transitions_outcome_check
    CHECK (outcome IN ('started', 'applied', 'ignored', 'retried', 'timed_out', 'incident',
                       'operator'));

-- One row per incident; at most one open per saga.
CREATE TABLE saga_incidents (
    incident_id     uuid PRIMARY KEY,
    saga_id         uuid NOT NULL REFERENCES sagas (saga_id),
    -- undo_refused | attempts_exhausted | dead_lettered | processing_error
    cause           text NOT NULL,
    -- The state the saga was in (running/compensating/aborting), to resume from on retry.
    -- NULL when the row itself could not be read.
    state_before    text,
    step            text,
    -- The pending command (ReleaseStock, ...), NULL when unknown.
    command         text,
    error           text NOT NULL,
    attempts        integer NOT NULL,
    -- Where the dead letter is, when there is one: {"topic", "partition", "offset", "message_id"}.
    dead_letter     jsonb,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    -- retry | skip | abort
    resolution      text,
    resolution_reason text
);
CREATE UNIQUE INDEX saga_incidents_open_idx ON saga_incidents (saga_id) WHERE resolved_at IS NULL;
