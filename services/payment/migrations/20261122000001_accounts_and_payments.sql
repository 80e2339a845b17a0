-- Customer accounts. `credit_minor` is the credit still available, `charged_minor` the sum of
-- open (not refunded) charges; both in minor units of `currency`.
CREATE TABLE accounts (
    customer_id   text PRIMARY KEY,
    currency      text NOT NULL CONSTRAINT accounts_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    credit_minor  bigint NOT NULL CONSTRAINT accounts_credit_non_negative CHECK (credit_minor >= 0),
    charged_minor bigint NOT NULL DEFAULT 0 CONSTRAINT accounts_charged_non_negative CHECK (charged_minor >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per order: the outcome of the first ChargePayment (or the tombstone of a
-- RefundPayment that came first), so every later command for the order is answered from it.
CREATE TABLE payments (
    order_id       uuid PRIMARY KEY,
    payment_id     uuid UNIQUE,
    customer_id    text,
    status         text NOT NULL CONSTRAINT payments_status_known
                   CHECK (status IN ('pending', 'charged', 'declined', 'refunded', 'tombstone')),
    amount_minor   bigint NOT NULL DEFAULT 0 CONSTRAINT payments_amount_non_negative CHECK (amount_minor >= 0),
    currency       text NOT NULL DEFAULT 'XXX',
    refunded_minor bigint NOT NULL DEFAULT 0,
    decline_reason text,
    decline_detail text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Refunds exactly what was charged, once: never more, never part.
    CONSTRAINT payments_refund_is_whole
        CHECK (refunded_minor = 0 OR (status = 'refunded' AND refunded_minor = amount_minor)),
    CONSTRAINT payments_charged_has_id
        CHECK (status NOT IN ('charged', 'refunded') OR payment_id IS NOT NULL)
);
