//! What pgcopy tells the user: logging, the progress display, the report, the verification's
//! table, the dry run's plan, the
//! confirmation question, and the end of a run that failed whole.

pub(crate) mod checks;
pub(crate) mod confirm;
pub(crate) mod dry_run;
pub(crate) mod fatal;
pub(crate) mod format;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod progress;
pub(crate) mod report;
