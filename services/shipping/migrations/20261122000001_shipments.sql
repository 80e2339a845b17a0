-- One row per order: the outcome of the first ScheduleShipment (or the tombstone of a
-- CancelShipment that came first), so every later command for the order is answered from it.
CREATE TABLE shipments (
    order_id       uuid PRIMARY KEY,
    shipment_id    uuid UNIQUE,
    status         text NOT NULL CONSTRAINT shipments_status_known
                   CHECK (status IN ('pending', 'scheduled', 'refused', 'cancelled', 'dispatched', 'tombstone')),
    country        text,
    address        jsonb,
    lines          jsonb,
    refusal_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    dispatched_at  timestamptz,
    CONSTRAINT shipments_booked_has_id
        CHECK (status NOT IN ('scheduled', 'dispatched') OR shipment_id IS NOT NULL),
    CONSTRAINT shipments_dispatched_has_time
        CHECK (status <> 'dispatched' OR dispatched_at IS NOT NULL)
);
