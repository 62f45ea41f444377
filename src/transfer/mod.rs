//! Moving the rows: the lanes of readers and writers and their scheduling (`lanes`), the
//! sessions each lane keeps (`sessions`), counting rows in the COPY stream (`rows`), and one
//! table's destination transaction (`write`).

pub(crate) mod lanes;
pub(crate) mod rows;
pub(crate) mod sessions;
pub(crate) mod write;
