//! The participant ledger: what inventory, payment and shipping each keep per order so that
//! every saga command is idempotent and an undo that overtakes its action is not lost.
//!
//! Each participant has one table with one row per order (`order_id` primary key, a `status`
//! text column and `updated_at`). The action *claims* the order by inserting the `pending`
//! row: a duplicate or concurrent command finds the row (waiting for a concurrent claimer's
//! transaction to end) and is answered from what it records. The undo, when nothing is known
//! about the order, inserts a *tombstone* instead, so a late action is refused rather than
//! holding stock, money or a booking that nobody will ever give back.
//!
//! A participant names its statuses with [`ledger_status!`] (a typed enum stored as text) and
//! runs these steps through [`Ledger`]; what a status means stays in the participant.

use std::fmt::Debug;
use std::marker::PhantomData;

use saga_contracts::ids::OrderId;
use sqlx::PgConnection;

#[doc(hidden)]
pub use {serde as __serde, sqlx as __sqlx};

/// A participant's statuses: an enum made by [`ledger_status!`].
pub trait LedgerStatus:
    Copy
    + Eq
    + Debug
    + Send
    + Sync
    + Unpin
    + 'static
    + for<'r> sqlx::Decode<'r, sqlx::Postgres>
    + for<'q> sqlx::Encode<'q, sqlx::Postgres>
    + sqlx::Type<sqlx::Postgres>
{
    /// Claimed by an action that has not decided yet (visible only inside its transaction).
    const PENDING: Self;
    /// The undo came first: the action, when it arrives, must be refused.
    const TOMBSTONE: Self;
    /// The text stored in the `status` column.
    fn as_str(self) -> &'static str;
    fn parse(text: &str) -> Option<Self>;
}

/// One participant's ledger table.
#[derive(Debug)]
pub struct Ledger<S> {
    table: &'static str,
    status: PhantomData<fn() -> S>,
}

impl<S> Clone for Ledger<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Ledger<S> {}

impl<S: LedgerStatus> Ledger<S> {
    /// The ledger kept in `table` (a fixed name from the participant's migrations, never
    /// input).
    pub const fn new(table: &'static str) -> Self {
        Ledger {
            table,
            status: PhantomData,
        }
    }

    /// Claims the order for its action: `true` when this transaction inserted the pending
    /// row and so decides the outcome; `false` when a row exists (an earlier command, or an
    /// undo's tombstone) and the caller answers from it. A concurrent claimer of the same
    /// order blocks here until the other transaction ends.
    pub async fn claim(&self, conn: &mut PgConnection, order_id: OrderId) -> sqlx::Result<bool> {
        self.insert_unless_known(conn, order_id, S::PENDING).await
    }

    /// For an undo: records a tombstone when nothing is known about the order (`true`: there
    /// is nothing to undo, and a late action will be refused); `false` when the order has a
    /// row, which the caller then locks with [`Ledger::status_for_update`].
    pub async fn tombstone_unless_known(
        &self,
        conn: &mut PgConnection,
        order_id: OrderId,
    ) -> sqlx::Result<bool> {
        self.insert_unless_known(conn, order_id, S::TOMBSTONE).await
    }

    async fn insert_unless_known(
        &self,
        conn: &mut PgConnection,
        order_id: OrderId,
        status: S,
    ) -> sqlx::Result<bool> {
        let sql = format!(
            "INSERT INTO {} (order_id, status) VALUES ($1, $2) ON CONFLICT (order_id) DO NOTHING",
            self.table
        );
        let inserted = sqlx::query(&sql)
            .bind(order_id.as_uuid())
            .bind(status)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    /// The order's status with its row locked until the transaction ends; `None` when the
    /// order has no row.
    pub async fn status_for_update(
        &self,
        conn: &mut PgConnection,
        order_id: OrderId,
    ) -> sqlx::Result<Option<S>> {
        let sql = format!(
            "SELECT status FROM {} WHERE order_id = $1 FOR UPDATE",
            self.table
        );
        let row: Option<(S,)> = sqlx::query_as(&sql)
            .bind(order_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.map(|(s,)| s))
    }

    /// Moves the order to `status` (the caller holds the row: claimed or locked).
    pub async fn set_status(
        &self,
        conn: &mut PgConnection,
        order_id: OrderId,
        status: S,
    ) -> sqlx::Result<()> {
        let sql = format!(
            "UPDATE {} SET status = $2, updated_at = now() WHERE order_id = $1",
            self.table
        );
        sqlx::query(&sql)
            .bind(order_id.as_uuid())
            .bind(status)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// A participant's status enum, stored as text: `Type`/`Encode`/`Decode` for PostgreSQL
/// (an unknown text fails to decode), `Serialize` as the text, `Display`, and
/// [`LedgerStatus`].
///
/// ```
/// saga_ledger::ledger_status! {
///     /// Where a reservation stands.
///     pub enum ReservationStatus {
///         Pending = "pending",
///         Reserved = "reserved",
///         Tombstone = "tombstone",
///     }
///     pending = Pending, tombstone = Tombstone
/// }
/// assert_eq!(ReservationStatus::Reserved.to_string(), "reserved");
/// ```
#[macro_export]
macro_rules! ledger_status {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
        pending = $pending:ident, tombstone = $tombstone:ident
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $crate::LedgerStatus for $name {
            const PENDING: Self = $name::$pending;
            const TOMBSTONE: Self = $name::$tombstone;
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
            fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl $name {
            /// The text stored in the `status` column.
            pub fn as_str(self) -> &'static str {
                <$name as $crate::LedgerStatus>::as_str(self)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::__serde::Serialize for $name {
            fn serialize<Ser: $crate::__serde::Serializer>(
                &self,
                serializer: Ser,
            ) -> ::std::result::Result<Ser::Ok, Ser::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl $crate::__sqlx::Type<$crate::__sqlx::Postgres> for $name {
            fn type_info() -> $crate::__sqlx::postgres::PgTypeInfo {
                <str as $crate::__sqlx::Type<$crate::__sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &$crate::__sqlx::postgres::PgTypeInfo) -> bool {
                <str as $crate::__sqlx::Type<$crate::__sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> $crate::__sqlx::Encode<'q, $crate::__sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut $crate::__sqlx::postgres::PgArgumentBuffer,
            ) -> ::std::result::Result<
                $crate::__sqlx::encode::IsNull,
                $crate::__sqlx::error::BoxDynError,
            > {
                <&str as $crate::__sqlx::Encode<'q, $crate::__sqlx::Postgres>>::encode(
                    self.as_str(),
                    buf,
                )
            }
        }

        impl<'r> $crate::__sqlx::Decode<'r, $crate::__sqlx::Postgres> for $name {
            fn decode(
                value: $crate::__sqlx::postgres::PgValueRef<'r>,
            ) -> ::std::result::Result<Self, $crate::__sqlx::error::BoxDynError> {
                let text = <&str as $crate::__sqlx::Decode<'r, $crate::__sqlx::Postgres>>::decode(value)?;
                <$name as $crate::LedgerStatus>::parse(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), text).into()
                })
            }
        }
    };
}
