//! How the store's queries reach a connection: each store call is one unit
//! of work that the adapter runs to its end on its own (SQLite: one job on
//! the connection's thread; PostgreSQL: a task of its own), so a caller
//! dropped at any `.await` (a reset connection, G11) cannot leave a
//! transaction open or half applied; it only loses the answer.

use std::future::Future;

use tokio::sync::oneshot;

use super::sql::{Mode, Tx, Work};
use super::{Store, StoreError};

impl Store {
    /// Runs `f` in a read-write transaction; `f` commits it (dropping the
    /// `Tx` without a commit rolls back).
    pub(super) async fn write<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Tx>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.unit(Mode::Write, f).await
    }

    /// Runs `f` on a reader connection: each statement on its own.
    pub(super) async fn read<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Tx>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.unit(Mode::Read, f).await
    }

    /// Runs `f` on the write connection with no transaction around it:
    /// each statement commits on its own.
    pub(super) async fn autocommit<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Tx>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.unit(Mode::Autocommit, f).await
    }

    async fn unit<T, F, Fut>(&self, mode: Mode, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Box<dyn Tx>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let work: Work = Box::new(move |tx| {
            Box::pin(async move {
                let _ = answer.send(f(tx).await);
            })
        });
        self.db.run(mode, work).await?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("a unit of work ended without an answer".into()))?
    }
}
