//! Accounts and payments: the payment service's state and the only code that changes it.
//!
//! Every command is idempotent by order id: the first ChargePayment or RefundPayment for an
//! order inserts its `payments` row, and every later command for that order is answered from
//! that row. The account row is locked for the charge, so concurrent charges against one
//! account queue up and can never together spend more than its credit.

use saga_contracts::Money;
use saga_contracts::ids::{CustomerId, OrderId, PaymentId};
use saga_ledger::{Ledger, ledger_status};
use sqlx::PgConnection;
use uuid::Uuid;

ledger_status! {
    /// Where an order's payment stands (`payments.status`).
    pub enum PaymentStatus {
        /// Claimed by a ChargePayment still deciding (inside its transaction).
        Pending = "pending",
        Charged = "charged",
        /// Refused; the reason and detail are recorded.
        Declined = "declined",
        /// Charged, then refunded in full.
        Refunded = "refunded",
        /// A RefundPayment came before any ChargePayment.
        Tombstone = "tombstone",
    }
    pending = Pending, tombstone = Tombstone
}

/// One row per order: the outcome of its first command.
const PAYMENTS: Ledger<PaymentStatus> = Ledger::new("payments");

/// The currency of a zero amount that belongs to no currency (ISO 4217 "XXX"): the refund of
/// an order nothing was ever asked of.
pub const NO_CURRENCY: &str = "XXX";

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(
        "account {customer_id} holds {held} charged in {current}; its currency cannot change to {requested}"
    )]
    CurrencyChange {
        customer_id: CustomerId,
        current: String,
        requested: String,
        held: i64,
    },
    #[error("credit must not be negative, got {0}")]
    NegativeCredit(i64),
    #[error("account {0} has an invalid currency {1:?}")]
    CorruptAccount(CustomerId, String),
    #[error("payment of order {0} is in an unexpected state {1:?}")]
    CorruptState(OrderId, String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A customer's account as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub customer_id: CustomerId,
    /// Credit still available for charges.
    pub credit: Money,
    /// Sum of the charges not refunded.
    pub charged: Money,
}

/// Why a charge was declined; stored as its name and mapped to the contract's enum at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    UnknownAccount,
    InsufficientCredit,
    CurrencyMismatch,
    Other,
}

impl Decline {
    pub fn as_str(self) -> &'static str {
        match self {
            Decline::UnknownAccount => "UNKNOWN_ACCOUNT",
            Decline::InsufficientCredit => "INSUFFICIENT_CREDIT",
            Decline::CurrencyMismatch => "CURRENCY_MISMATCH",
            Decline::Other => "OTHER",
        }
    }

    fn parse(s: &str) -> Decline {
        match s {
            "UNKNOWN_ACCOUNT" => Decline::UnknownAccount,
            "INSUFFICIENT_CREDIT" => Decline::InsufficientCredit,
            "CURRENCY_MISMATCH" => Decline::CurrencyMismatch,
            _ => Decline::Other,
        }
    }
}

/// The answer to a ChargePayment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged {
        payment_id: PaymentId,
        amount: Money,
    },
    Declined {
        reason: Decline,
        detail: String,
    },
}

/// Sets the credit available to `customer_id` (admin), creating the account if needed.
pub async fn set_credit(
    conn: &mut PgConnection,
    customer_id: &CustomerId,
    credit: &Money,
) -> Result<Account, PaymentError> {
    if credit.amount_minor < 0 {
        return Err(PaymentError::NegativeCredit(credit.amount_minor));
    }
    let currency = credit.currency.to_string();
    let existing: Option<(String, i64)> = sqlx::query_as(
        "SELECT currency, charged_minor FROM accounts WHERE customer_id = $1 FOR UPDATE",
    )
    .bind(customer_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((current, held)) = existing {
        // Open charges are refunded in the currency they were made in.
        if current != currency && held > 0 {
            return Err(PaymentError::CurrencyChange {
                customer_id: customer_id.clone(),
                current,
                requested: currency,
                held,
            });
        }
    }
    let (currency, credit_minor, charged_minor): (String, i64, i64) = sqlx::query_as(
        "INSERT INTO accounts (customer_id, currency, credit_minor) VALUES ($1, $2, $3)
         ON CONFLICT (customer_id) DO UPDATE
             SET currency = EXCLUDED.currency, credit_minor = EXCLUDED.credit_minor,
                 updated_at = now()
         RETURNING currency, credit_minor, charged_minor",
    )
    .bind(customer_id.as_str())
    .bind(&currency)
    .bind(credit.amount_minor)
    .fetch_one(&mut *conn)
    .await?;
    account_from_row(customer_id.clone(), &currency, credit_minor, charged_minor)
}

/// What a credit adjustment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjusted {
    Applied(Account),
    /// The account keeps another currency; nothing changed.
    OtherCurrency(Account),
    /// The delta would take the credit below zero (or create an account with negative
    /// credit); nothing changed.
    WouldGoNegative(Option<Account>),
    /// The delta would take the credit past `i64::MAX` minor units; nothing changed.
    WouldOverflow(Account),
}

/// Adds `delta` (negative: removes) to the customer's credit (admin), creating the account on
/// a non-negative delta. A delta, not an absolute value: a charge committed between an
/// operator's read and write still counts, where `PUT` of a total would overwrite it.
pub async fn adjust_credit(
    conn: &mut PgConnection,
    customer_id: &CustomerId,
    delta: &Money,
) -> Result<Adjusted, PaymentError> {
    let currency = delta.currency.to_string();
    // One statement: the row lock serialises it with charges and refunds of the account.
    let applied: Option<(String, i64, i64)> = sqlx::query_as(
        "INSERT INTO accounts (customer_id, currency, credit_minor)
         SELECT $1, $2, $3 WHERE $3 >= 0
         ON CONFLICT (customer_id) DO UPDATE
             SET credit_minor = accounts.credit_minor + $3, updated_at = now()
             WHERE accounts.currency = $2
               AND accounts.credit_minor::numeric + $3 BETWEEN 0 AND 9223372036854775807
         RETURNING currency, credit_minor, charged_minor",
    )
    .bind(customer_id.as_str())
    .bind(&currency)
    .bind(delta.amount_minor)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((currency, credit, charged)) = applied {
        return Ok(Adjusted::Applied(account_from_row(
            customer_id.clone(),
            &currency,
            credit,
            charged,
        )?));
    }
    Ok(match account(conn, customer_id).await? {
        Some(a) if a.credit.currency != delta.currency => Adjusted::OtherCurrency(a),
        Some(a) if delta.amount_minor > 0 => Adjusted::WouldOverflow(a),
        other => Adjusted::WouldGoNegative(other),
    })
}

pub async fn account(
    conn: &mut PgConnection,
    customer_id: &CustomerId,
) -> Result<Option<Account>, PaymentError> {
    let row: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT currency, credit_minor, charged_minor FROM accounts WHERE customer_id = $1",
    )
    .bind(customer_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(currency, credit, charged)| {
        account_from_row(customer_id.clone(), &currency, credit, charged)
    })
    .transpose()
}

/// Charges `amount` to the customer's account, or declines.
#[tracing::instrument(skip_all, fields(order_id = %order_id, customer_id = %customer_id))]
pub async fn charge(
    conn: &mut PgConnection,
    order_id: OrderId,
    customer_id: &CustomerId,
    amount: &Money,
) -> Result<ChargeOutcome, PaymentError> {
    let currency = amount.currency.to_string();
    // Claim the order first: a concurrent command for the same order blocks here until this
    // transaction ends, then sees the outcome instead of charging a second time.
    if !PAYMENTS.claim(conn, order_id).await? {
        return previous_charge_outcome(conn, order_id).await;
    }
    sqlx::query("UPDATE payments SET customer_id = $2, currency = $3 WHERE order_id = $1")
        .bind(order_id.as_uuid())
        .bind(customer_id.as_str())
        .bind(&currency)
        .execute(&mut *conn)
        .await?;

    let outcome = decide_charge(conn, customer_id, amount, &currency).await?;
    match &outcome {
        ChargeOutcome::Charged { payment_id, amount } => {
            sqlx::query(
                "UPDATE accounts SET credit_minor = credit_minor - $2,
                        charged_minor = charged_minor + $2, updated_at = now()
                 WHERE customer_id = $1",
            )
            .bind(customer_id.as_str())
            .bind(amount.amount_minor)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE payments SET status = $4, payment_id = $2, amount_minor = $3,
                        updated_at = now()
                 WHERE order_id = $1",
            )
            .bind(order_id.as_uuid())
            .bind(payment_id.as_uuid())
            .bind(amount.amount_minor)
            .bind(PaymentStatus::Charged)
            .execute(&mut *conn)
            .await?;
            tracing::info!(%payment_id, amount_minor = amount.amount_minor, %currency, "payment charged");
        }
        ChargeOutcome::Declined { reason, detail } => {
            sqlx::query(
                "UPDATE payments SET status = $4, decline_reason = $2, decline_detail = $3,
                        updated_at = now()
                 WHERE order_id = $1",
            )
            .bind(order_id.as_uuid())
            .bind(reason.as_str())
            .bind(detail)
            .bind(PaymentStatus::Declined)
            .execute(&mut *conn)
            .await?;
            tracing::info!(reason = reason.as_str(), %detail, "payment declined");
        }
    }
    Ok(outcome)
}

/// Locks, in `customer_id` order, every account a batch of commands will change: the
/// customers it charges and those of the orders it refunds. Batches of several partitions
/// run concurrently on the same hot accounts; taken message by message, their locks
/// interleave in different orders and deadlock. Taken here first, in one order, they only
/// queue.
pub async fn lock_for_batch(
    conn: &mut PgConnection,
    charging: &[&str],
    refunding: &[Uuid],
) -> Result<(), PaymentError> {
    sqlx::query(
        "SELECT 1 FROM accounts
         WHERE customer_id = ANY($1)
            OR customer_id IN (SELECT customer_id FROM payments WHERE order_id = ANY($2))
         ORDER BY customer_id FOR UPDATE",
    )
    .bind(charging)
    .bind(refunding)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Locks the account and decides; changes nothing.
async fn decide_charge(
    conn: &mut PgConnection,
    customer_id: &CustomerId,
    amount: &Money,
    currency: &str,
) -> Result<ChargeOutcome, PaymentError> {
    let declined = |reason, detail: String| Ok(ChargeOutcome::Declined { reason, detail });
    if amount.amount_minor <= 0 {
        return declined(
            Decline::Other,
            format!("amount must be positive, got {}", amount.amount_minor),
        );
    }
    let account: Option<(String, i64)> = sqlx::query_as(
        "SELECT currency, credit_minor FROM accounts WHERE customer_id = $1 FOR UPDATE",
    )
    .bind(customer_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some((account_currency, credit)) = account else {
        return declined(
            Decline::UnknownAccount,
            format!("no account for customer {customer_id}"),
        );
    };
    if account_currency != currency {
        return declined(
            Decline::CurrencyMismatch,
            format!("account is in {account_currency}, charge is in {currency}"),
        );
    }
    if credit < amount.amount_minor {
        return declined(
            Decline::InsufficientCredit,
            format!(
                "charge of {} exceeds available credit of {credit} ({currency} minor units)",
                amount.amount_minor
            ),
        );
    }
    Ok(ChargeOutcome::Charged {
        payment_id: PaymentId::new(),
        amount: *amount,
    })
}

/// `SAGA_TEST_DOUBLE_REFUND=1`: a deliberately broken build for the chaos soak's own test
/// (docs/soak.md), which must see money not conserved. Never set it anywhere else.
fn double_refund_switch() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("SAGA_TEST_DOUBLE_REFUND").is_ok_and(|v| v == "1"))
}

/// Refunds exactly what the order was charged, once. Returns the refunded amount: zero when
/// nothing was charged (in the charge's currency when known, else "XXX").
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn refund(conn: &mut PgConnection, order_id: OrderId) -> Result<Money, PaymentError> {
    // Nothing known about the order: leave a tombstone so a late ChargePayment is declined.
    if PAYMENTS.tombstone_unless_known(conn, order_id).await? {
        tracing::info!("refund before any charge: tombstone recorded");
        return money(0, NO_CURRENCY, order_id);
    }

    type Held = (PaymentStatus, Option<String>, i64, String);
    let (status, customer_id, amount_minor, currency): Held = sqlx::query_as(
        "SELECT status, customer_id, amount_minor, currency FROM payments
             WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    match status {
        PaymentStatus::Charged => {}
        // Already refunded: same answer, no second refund.
        PaymentStatus::Refunded => return money(amount_minor, &currency, order_id),
        PaymentStatus::Declined | PaymentStatus::Tombstone => {
            return money(0, &currency, order_id);
        }
        PaymentStatus::Pending => {
            return Err(PaymentError::CorruptState(order_id, status.to_string()));
        }
    }
    let Some(customer_id) = customer_id else {
        return Err(PaymentError::CorruptState(order_id, status.to_string()));
    };

    sqlx::query(
        "UPDATE accounts SET credit_minor = credit_minor + $2,
                charged_minor = charged_minor - $2, updated_at = now()
         WHERE customer_id = $1",
    )
    .bind(&customer_id)
    .bind(amount_minor)
    .execute(&mut *conn)
    .await?;
    if double_refund_switch() {
        // Test-only broken build: the refund is credited a second time.
        sqlx::query(
            "UPDATE accounts SET credit_minor = credit_minor + $2, updated_at = now()
             WHERE customer_id = $1",
        )
        .bind(&customer_id)
        .bind(amount_minor)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "UPDATE payments SET status = $2, refunded_minor = amount_minor, updated_at = now()
         WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .bind(PaymentStatus::Refunded)
    .execute(&mut *conn)
    .await?;
    tracing::info!(amount_minor, %currency, "payment refunded");
    money(amount_minor, &currency, order_id)
}

async fn previous_charge_outcome(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<ChargeOutcome, PaymentError> {
    type Row = (
        PaymentStatus,
        Option<Uuid>,
        i64,
        String,
        Option<String>,
        Option<String>,
    );
    let (status, payment_id, amount_minor, currency, reason, detail): Row = sqlx::query_as(
        "SELECT status, payment_id, amount_minor, currency, decline_reason, decline_detail
         FROM payments WHERE order_id = $1",
    )
    .bind(order_id.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    tracing::info!(%status, "duplicate ChargePayment answered from the recorded outcome");
    match (status, payment_id) {
        // A charge refunded since still answers as charged: the reply a duplicate command
        // gets must not depend on what happened in between.
        (PaymentStatus::Charged | PaymentStatus::Refunded, Some(id)) => {
            Ok(ChargeOutcome::Charged {
                payment_id: id.into(),
                amount: money(amount_minor, &currency, order_id)?,
            })
        }
        (PaymentStatus::Declined, _) => Ok(ChargeOutcome::Declined {
            reason: Decline::parse(reason.as_deref().unwrap_or_default()),
            detail: detail.unwrap_or_default(),
        }),
        (PaymentStatus::Tombstone, _) => Ok(ChargeOutcome::Declined {
            reason: Decline::Other,
            detail: "the order's payment was refunded before it was charged".to_owned(),
        }),
        _ => Err(PaymentError::CorruptState(order_id, status.to_string())),
    }
}

fn money(amount_minor: i64, currency: &str, order_id: OrderId) -> Result<Money, PaymentError> {
    let currency = currency
        .parse()
        .map_err(|_| PaymentError::CorruptState(order_id, format!("currency {currency:?}")))?;
    Ok(Money {
        amount_minor,
        currency,
    })
}

fn account_from_row(
    customer_id: CustomerId,
    currency: &str,
    credit_minor: i64,
    charged_minor: i64,
) -> Result<Account, PaymentError> {
    let currency: saga_contracts::Currency = currency
        .parse()
        .map_err(|_| PaymentError::CorruptAccount(customer_id.clone(), currency.to_owned()))?;
    Ok(Account {
        customer_id,
        credit: Money {
            amount_minor: credit_minor,
            currency,
        },
        charged: Money {
            amount_minor: charged_minor,
            currency,
        },
    })
}
