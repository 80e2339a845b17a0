//! The Kafka side: `payment.commands` in, `payment.events` out (through the outbox, in the
//! same transaction as the account change).

use saga_consumer::{Handler, HandlerError, Incoming};
use saga_contracts::Metadata;
use saga_contracts::messages::payment::{
    ChargePayment, DeclineReason, PaymentCharged, PaymentCommand, PaymentDeclined, PaymentRefunded,
    RefundPayment,
};
use saga_outbox::Outbox;
use sqlx::PgConnection;

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
    pub async fn charge(
        &self,
        tx: &mut PgConnection,
        cmd: &ChargePayment,
    ) -> Result<(), HandlerError> {
        let meta = Metadata::caused_by(&cmd.meta);
        match payments::charge(tx, cmd.meta.order_id, &cmd.customer_id, &cmd.amount)
            .await
            .map_err(handler_error)?
        {
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
    pub async fn refund(
        &self,
        tx: &mut PgConnection,
        cmd: &RefundPayment,
    ) -> Result<(), HandlerError> {
        let amount = payments::refund(tx, cmd.meta.order_id)
            .await
            .map_err(handler_error)?;
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

impl Handler for PaymentHandler {
    type Message = PaymentCommand;

    async fn handle(
        &self,
        tx: &mut PgConnection,
        msg: &Incoming<PaymentCommand>,
    ) -> Result<(), HandlerError> {
        match &msg.message {
            PaymentCommand::ChargePayment(cmd) => self.charge(tx, cmd).await,
            PaymentCommand::RefundPayment(cmd) => self.refund(tx, cmd).await,
        }
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
