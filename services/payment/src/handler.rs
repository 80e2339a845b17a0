//! The Kafka side: `payment.commands` in, `payment.events` out (through the outbox, in the
//! same transaction as the account change).

use saga_consumer::{Handler, HandlerError, Incoming, Tx};
use saga_contracts::Metadata;
use saga_contracts::messages::payment::{
    ChargePayment, DeclineReason, PaymentCharged, PaymentCommand, PaymentCommandRefused,
    PaymentDeclined, PaymentRefunded, RefundPayment,
};
use saga_outbox::Outbox;

use crate::payments::{self, ChargeOutcome, Decline, PaymentError};

/// Answers ChargePayment and RefundPayment.
#[derive(Clone)]
pub struct PaymentHandler {
    outbox: Outbox,
}

impl PaymentHandler {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }

    #[tracing::instrument(skip_all, fields(order_id = %cmd.meta.order_id))]
    pub async fn charge(&self, tx: &mut Tx<'_>, cmd: &ChargePayment) -> Result<(), HandlerError> {
        let meta = Metadata::caused_by(&cmd.meta);
        // In a savepoint: an amount that overflows the balance (SQLSTATE 22003) is refused
        // with a reply, leaving nothing behind.
        let mut sp = sqlx::Acquire::begin(tx.conn()).await?;
        let result =
            payments::charge(&mut sp, cmd.meta.order_id, &cmd.customer_id, &cmd.amount).await;
        let result = match result {
            Err(e) if is_numeric_overflow(&e) => {
                sp.rollback().await?;
                outcome("charge", "refused");
                return self.refuse(tx, &cmd.meta, "ChargePayment").await;
            }
            // Any other failure (a deadlock, a lost connection) must reach the runtime as it
            // is, to be classified and retried: roll the savepoint back. Releasing a failed
            // savepoint fails with 25P02 (transaction aborted), a permanent error that would
            // dead-letter a command that only had to be retried (found by the chaos soak).
            Err(e) => {
                sp.rollback().await?;
                Err(e)
            }
            Ok(done) => {
                sp.commit().await?;
                Ok(done)
            }
        };
        match result.map_err(handler_error)? {
            ChargeOutcome::Charged { payment_id, amount } => {
                outcome("charge", "charged");
                let reply = PaymentCharged {
                    meta,
                    payment_id,
                    amount,
                };
                self.outbox.send(tx, &reply).await
            }
            ChargeOutcome::Declined { reason, detail } => {
                outcome("charge", reason.as_str());
                let reply = PaymentDeclined {
                    meta,
                    reason: decline_reason(reason),
                    detail,
                };
                self.outbox.send(tx, &reply).await
            }
        }?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %cmd.meta.order_id))]
    pub async fn refund(&self, tx: &mut Tx<'_>, cmd: &RefundPayment) -> Result<(), HandlerError> {
        let mut sp = sqlx::Acquire::begin(tx.conn()).await?;
        let amount = match payments::refund(&mut sp, cmd.meta.order_id).await {
            Err(e) if is_numeric_overflow(&e) => {
                sp.rollback().await?;
                outcome("refund", "refused");
                return self.refuse(tx, &cmd.meta, "RefundPayment").await;
            }
            // Any other failure (a deadlock, a lost connection) must reach the runtime as it
            // is, to be classified and retried: roll the savepoint back. Releasing a failed
            // savepoint fails with 25P02 (transaction aborted), a permanent error that would
            // dead-letter a command that only had to be retried (found by the chaos soak).
            Err(e) => {
                sp.rollback().await?;
                return Err(handler_error(e));
            }
            Ok(done) => {
                sp.commit().await?;
                done
            }
        };
        outcome(
            "refund",
            if amount.amount_minor > 0 {
                "refunded"
            } else {
                "nothing"
            },
        );
        let reply = PaymentRefunded {
            meta: Metadata::caused_by(&cmd.meta),
            amount,
        };
        self.outbox.send(tx, &reply).await?;
        Ok(())
    }
}

impl PaymentHandler {
    /// Answer a well-formed command that cannot be carried out: every command gets a reply.
    async fn refuse(
        &self,
        tx: &mut Tx<'_>,
        cmd: &Metadata,
        command: &str,
    ) -> Result<(), HandlerError> {
        tracing::warn!(
            command,
            "command refused: the amount overflows the account balance"
        );
        let reply = PaymentCommandRefused {
            meta: Metadata::caused_by(cmd),
            command: command.to_owned(),
            reason: "the amount overflows the account balance".to_owned(),
        };
        self.outbox.send(tx, &reply).await?;
        Ok(())
    }
}

/// SQLSTATE 22003 numeric_value_out_of_range on a balance update.
fn is_numeric_overflow(e: &PaymentError) -> bool {
    match e {
        PaymentError::Database(db) => db
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "22003"),
        _ => false,
    }
}

impl Handler for PaymentHandler {
    type Message = PaymentCommand;

    async fn handle(
        &self,
        tx: &mut Tx<'_>,
        msg: &Incoming<PaymentCommand>,
    ) -> Result<(), HandlerError> {
        match &msg.message {
            PaymentCommand::ChargePayment(cmd) => self.charge(tx, cmd).await,
            PaymentCommand::RefundPayment(cmd) => self.refund(tx, cmd).await,
        }
    }

    async fn lock_batch(
        &self,
        tx: &mut Tx<'_>,
        msgs: &[&Incoming<PaymentCommand>],
    ) -> Result<(), HandlerError> {
        let mut charging = Vec::new();
        let mut refunding = Vec::new();
        for msg in msgs {
            match &msg.message {
                PaymentCommand::ChargePayment(cmd) => charging.push(cmd.customer_id.as_str()),
                PaymentCommand::RefundPayment(cmd) => {
                    refunding.push(*cmd.meta.order_id.as_uuid());
                }
            }
        }
        payments::lock_for_batch(tx, &charging, &refunding)
            .await
            .map_err(handler_error)
    }
}

fn decline_reason(d: Decline) -> DeclineReason {
    match d {
        Decline::UnknownAccount => DeclineReason::UnknownAccount,
        Decline::InsufficientCredit => DeclineReason::InsufficientCredit,
        Decline::CurrencyMismatch => DeclineReason::CurrencyMismatch,
        Decline::Other => DeclineReason::Other,
    }
}

fn handler_error(e: PaymentError) -> HandlerError {
    match e {
        PaymentError::Database(e) => HandlerError::Database(e),
        // A broken row will not get better by retrying; the admin-only errors cannot occur here.
        e => HandlerError::Permanent(e.to_string()),
    }
}

/// Counts business outcomes (`payment_commands_total{command, outcome}`); the consumer runtime
/// already counts messages, retries and dead letters.
fn outcome(command: &'static str, outcome: &'static str) {
    metrics::counter!("payment_commands_total", "command" => command, "outcome" => outcome)
        .increment(1);
}
