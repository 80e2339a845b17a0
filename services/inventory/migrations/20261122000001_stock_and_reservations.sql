-- Stock per SKU. `available` can be reserved; `reserved` is held by open reservations.
-- The CHECKs are the last guard against overselling if a code path ever forgets to lock.
CREATE TABLE stock (
    sku        text PRIMARY KEY,
    available  integer NOT NULL CONSTRAINT stock_available_non_negative CHECK (available >= 0),
    reserved   integer NOT NULL DEFAULT 0 CONSTRAINT stock_reserved_non_negative CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per order: the outcome of the first ReserveStock (or the tombstone of a
-- ReleaseStock that came first), so every later command for the order is answered from it.
CREATE TABLE reservations (
    order_id       uuid PRIMARY KEY,
    reservation_id uuid UNIQUE,
    status         text NOT NULL CONSTRAINT reservations_status_known
                   CHECK (status IN ('pending', 'reserved', 'unavailable', 'released', 'tombstone')),
    -- StockUnavailable's shortages, kept so a duplicate command gets the same reply.
    shortages      jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservations_reserved_has_id
        CHECK (status NOT IN ('reserved', 'released') OR reservation_id IS NOT NULL)
);

CREATE TABLE reservation_lines (
    order_id uuid NOT NULL REFERENCES reservations (order_id),
    sku      text NOT NULL REFERENCES stock (sku),
    quantity integer NOT NULL CONSTRAINT reservation_lines_quantity_positive CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);
