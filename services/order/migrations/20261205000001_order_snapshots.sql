-- Snapshots of the order fold (`snapshot.rs`): the state after event `version`, so a fold
-- starts from the latest snapshot instead of event 1. Derived data: deleting every row only
-- makes folds slower until the snapshots are written again.
-- fold_version is the `SNAPSHOT_FOLD_VERSION` of the code that wrote the state; a row of
-- another fold version is ignored and replaced in place. covers_until is the latest
-- recorded_at among events 1..=version: an `as_of` fold may start from the snapshot only when
-- every event it covers was recorded at or before `as_of`.
CREATE TABLE order_snapshots (
    order_id     uuid        NOT NULL,
    version      integer     NOT NULL CHECK (version >= 1),
    fold_version integer     NOT NULL,
    state        jsonb       NOT NULL,
    last_seq     bigint      NOT NULL,
    covers_until timestamptz NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_snapshots_pkey PRIMARY KEY (order_id, version)
);
