//! Everything about talking to PostgreSQL, and nothing about what a copy is: connection
//! strings and the environment (`conninfo`, `pgpass`, `tls`), the one way every session
//! connects (`target`) and the pools of them (`pool`), what every session sets first
//! (`session_setup`), the readers' own wire-protocol client (`wire`), what a server is and
//! the snapshot sessions share (`server`), what kind of failure an error is (`error`), and
//! quoting (`sql`).

pub(crate) mod conninfo;
pub(crate) mod error;
pub(crate) mod pgpass;
pub(crate) mod pool;
pub(crate) mod server;
pub(crate) mod session_setup;
pub(crate) mod sql;
pub(crate) mod target;
pub(crate) mod tls;
pub(crate) mod wire;
