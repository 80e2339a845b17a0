-- Each stored event records the version of its payload's shape, so events stored before a
-- change of an event type still fold: `upcast.rs` turns older shapes into the current one.
-- Rows written before this column existed have the first shape of every type: version 1.
ALTER TABLE order_events ADD COLUMN schema_version integer NOT NULL DEFAULT 1
    CHECK (schema_version >= 1);
