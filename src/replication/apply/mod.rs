//! The applier: the destination session that turns decoded changes into statements and
//! commits them, and its record of how far it got. Source transactions are applied in their
//! commit order, several to one destination transaction when they come faster than one
//! commit each (never a part of one: a group commits whole or not at all). The end of the
//! group's last source transaction is recorded in the same commit (`progress`), so what the
//! destination holds and where a resumed follower starts can never disagree: nothing lost,
//! nothing applied twice.
//!
//! Statements are prepared once per table and shape (`sql`, `pipeline`), sent pipelined
//! (`wire::pipeline`) and synced every few hundred, each checked for the one row it must
//! touch; a run of inserts into a table that nothing on the destination watches goes as one
//! `COPY`, checked for its row count. The destination's
//! triggers and foreign keys stay quiet, as during the copy: the session runs with
//! `session_replication_role = replica` where the role may set it, as PostgreSQL's own apply
//! worker does; else the keys stay dropped until cutover and each group switches off the
//! triggers of the tables it changes, on again before it commits.
//!
//! Its rooms: `run`, the loop: each message in its turn, groups begun and committed;
//! `state`, what the applier holds between messages; `session`, how the destination session
//! is set up; `relations`, the tables the stream describes, checked against the
//! destination's catalog (the destination's table: `table`), and their triggers kept quiet;
//! `staging`, the net changes held back and sent in bulk; `pipeline`, the prepared
//! statements queued and synced, each answer checked; `sql`, a statement's text for each
//! shape; `parts`, a change taken apart into its statement's parameters; `mark`, the
//! cutover mark. `state` defines the one `Applier`; the others add its methods, and call
//! one way only: `run` into the rest, `relations` into `staging` and `pipeline`, `staging`
//! into `pipeline`.

mod chunked;
mod mark;
mod parts;
mod pipeline;
mod relations;
mod run;
mod session;
mod sql;
mod staging;
mod state;
mod table;

pub(crate) use mark::{mark, MARK_PREFIX};
pub(crate) use relations::Joined;
pub(crate) use run::Ended;
pub(crate) use session::{prepare_session, Setup};
pub(crate) use state::{Applied, Applier};
