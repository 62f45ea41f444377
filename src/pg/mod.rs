//! Everything about talking to PostgreSQL: connection strings and the environment
//! (`conninfo`, `pgpass`, `tls`), connecting and the pools (`conn`), what every session sets
//! first (`session_setup`), the readers' own wire-protocol client (`wire`), which failures
//! are worth another try (`retry`), and quoting (`sql`). Nothing here knows what a copy is.

pub(crate) mod conn;
pub(crate) mod conninfo;
pub(crate) mod pgpass;
pub(crate) mod retry;
pub(crate) mod session_setup;
pub(crate) mod sql;
pub(crate) mod tls;
pub(crate) mod wire;
