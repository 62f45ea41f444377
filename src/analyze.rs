//! `ANALYZE` of the loaded tables, several at a time: a freshly loaded table has no planner
//! statistics, and the first queries against it would get bad plans without them.

use crate::conn::{describe, Pool};
use crate::sql::TableName;
use rayon::prelude::*;

/// Analyzes the tables, `parallel` at a time; returns the failures, one line each.
pub fn analyze(pool: &Pool, tables: &[&TableName], parallel: usize) -> Vec<String> {
    let threads = match rayon::ThreadPoolBuilder::new()
        .num_threads(parallel.max(1))
        .thread_name(|i| format!("pgcopy-analyze-{i}"))
        .build()
    {
        Ok(threads) => threads,
        Err(err) => return vec![format!("could not start the ANALYZE threads: {err}")],
    };
    threads.install(|| {
        tables
            .par_iter()
            .with_max_len(1)
            .filter_map(|table| {
                let sql = format!("ANALYZE {}", table.quoted());
                log::debug!("destination: {sql}");
                let result = pool
                    .get()
                    .map_err(anyhow::Error::from)
                    .and_then(|mut client| Ok(client.batch_execute(&sql)?));
                result
                    .err()
                    .map(|err| format!("ANALYZE {table} failed: {}", describe(&err)))
            })
            .collect()
    })
}
