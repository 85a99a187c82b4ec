//! How the store's queries reach a connection: each store call is one unit
//! of work that the adapter runs to its end on its own (SQLite: one job on
//! the connection's thread; PostgreSQL: a task of its own), so a caller
//! dropped at any `.await` (a reset connection, G11) cannot leave a
//! transaction open or half applied; it only loses the answer.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use std::future::Future;

use tokio::sync::oneshot;

use super::pii::WithVault;
use super::rows::commit_one;
use super::sql::{Deliver, Mode, Row, Tx, Val, Work};
use super::{Store, StoreError};
use crate::events::{Envelope, Event, Stamp};

/// The first of the rows a query selected (`Store::rows`), if any.
pub(super) fn first_of<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

/// The three ways a unit of work meets its connection, one method each.
macro_rules! unit_method {
    ($(#[$doc:meta])* $name:ident, $mode:expr) => {
        $(#[$doc])*
        pub(super) async fn $name<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
        where
            T: Send + 'static,
            F: FnOnce(Box<dyn Tx>) -> Fut + Send + 'static,
            Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        {
            self.unit($mode, f).await
        }
    };
}

impl Store {
    unit_method!(
        /// Runs `f` in a read-write transaction; `f` commits it (dropping
        /// the `Tx` without a commit rolls back).
        write,
        Mode::Write
    );

    unit_method!(
        /// Runs `f` on a reader connection: each statement on its own.
        read,
        Mode::Read
    );

    unit_method!(
        /// Runs `f` on the write connection with no transaction around it:
        /// each statement commits on its own.
        autocommit,
        Mode::Autocommit
    );

    /// `write`, with `f` given its own copy of the `stamp` for the events
    /// it appends.
    pub(super) async fn write_as<T, F, Fut>(&self, stamp: &Stamp, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Tx>, Stamp) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let stamp = stamp.clone();
        self.write(move |tx| f(tx, stamp)).await
    }

    /// Every row `sql` selects, each read by `read`.
    pub(super) async fn rows<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<Val>,
        read: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.read(
            move |mut tx| async move { tx.query(&sql, &params).await?.iter().map(read).collect() },
        )
        .await
    }

    /// Runs one statement in a transaction of its own; how many rows it changed.
    pub(super) async fn exec_alone(
        &self,
        sql: String,
        params: Vec<Val>,
    ) -> Result<u64, StoreError> {
        self.write(move |mut tx| async move {
            let n = tx.exec(&sql, &params).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    /// Runs one statement and appends `event` in the same transaction.
    pub(super) async fn exec_and_append(
        &self,
        sql: &'static str,
        params: Vec<Val>,
        event: Event,
        stamp: &Stamp,
    ) -> Result<Envelope, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            tx.exec(sql, &params).await?;
            commit_one(tx, event, &stamp).await
        })
        .await
    }

    async fn unit<T, F, Fut>(&self, mode: Mode, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Tx>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let vault = self.vault.clone();
        let work: Work = Box::new(move |inner| {
            Box::pin(async move {
                let result = f(Box::new(WithVault { inner, vault })).await;
                // Answered once the transaction holding the writes has
                // ended: a commit that failed overrides a success.
                Box::new(move |held: Result<(), StoreError>| {
                    let _ = answer.send(match (held, result) {
                        (Err(e), Ok(_)) => Err(e),
                        (_, result) => result,
                    });
                }) as Deliver
            })
        });
        self.db.run(mode, work).await?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("a unit of work ended without an answer".into()))?
    }
}
