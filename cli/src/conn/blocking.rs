//! A connection for the commands, which run one statement after another: the asynchronous
//! driver on a runtime of the connection's own, as the synchronous `postgres` crate does it,
//! so the commands and `pgvault serve` share one driver, one `connect` and one store.

use super::connect::{connect, Connection};
use super::Target;
use crate::Failure;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::{Client, Notification, Transaction};

pub struct Db {
    runtime: tokio::runtime::Runtime,
    connection: Connection,
}

impl Db {
    /// Connects as `connect` does, asking for a password at a terminal if the server wants one.
    pub fn open(target: &Target) -> Result<Db, Failure> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::failed(format!("cannot start: {e}")))?;
        let connection = runtime.block_on(connect(target, true))?;
        Ok(Db { runtime, connection })
    }

    pub fn client(&self) -> &Client {
        &self.connection.client
    }

    /// Runs `f` (a statement of the store, on `client()`) to its end.
    pub fn wait<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// `f` in one transaction: committed when it returns Ok, rolled back otherwise.
    pub fn transaction<T>(
        &mut self,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let Db { runtime, connection } = self;
        runtime.block_on(async {
            let tx = connection.client.transaction().await?;
            let v = f(&tx).await?;
            tx.commit().await?;
            Ok(v)
        })
    }

    /// The next notification (after a LISTEN), waiting at most `timeout`: Ok(None) when none
    /// came, Err when the connection is gone.
    pub fn notification(&mut self, timeout: Duration) -> Result<Option<Notification>, Failure> {
        let Db { runtime, connection } = self;
        runtime.block_on(async {
            match tokio::time::timeout(timeout, connection.notifications.recv()).await {
                Ok(Some(n)) => Ok(Some(n)),
                Ok(None) => Err(Failure::connect("the connection was lost")),
                Err(_) if connection.client.is_closed() => Err(Failure::connect("the connection was lost")),
                Err(_) => Ok(None),
            }
        })
    }
}
