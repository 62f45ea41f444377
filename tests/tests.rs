//! Integration tests: the real `pgcopy` binary against throwaway PostgreSQL clusters. One
//! test crate (as ripgrep does), a module per story, and one helper set in `util/`.

/// Refusals before anything is written: usage errors, unworkable connections, schema mismatches.
mod bad_input;
/// The chunked initial copy of `copy --follow`: chunks read while rows change, reconciled
/// through the stream; the snapshots it holds; a follower killed during it, resumed.
mod chunked;
/// `completions` and `man`: every flag help shows in each shell's script and the page, checked.
mod completions;
/// libpq's ways in: `PG*` variables, connection files, passwords, TLS modes and certificates.
mod connections;
/// Copying data: types, column order, partitions, quoted names, filters, dry runs, ANALYZE.
mod copying;
/// The destination as production has it: non-superuser roles, forced RLS, matviews, large objects.
mod destination;
/// The manual against `--help`: every option documented once in docs/; a short README; links.
mod documentation;
/// Kills, crashes, restarts and lost sessions mid-copy; `recover` and `--resume` afterwards.
mod faults;
/// Following a live source: whether it can be followed (`status`).
mod following;
/// A DBA's week while a follower runs: twins, identity columns, deferrable keys, restarts.
mod following_week;
/// Keys, constraints, indexes and triggers come back exactly; triggers fire only when asked.
mod keys_and_triggers;
/// Staging refreshes: columns masked as a rules file says; rules that do not fit refused.
mod masking;
/// Running unattended: a run's metrics file, a follower's metrics endpoint, JSON log lines.
mod observability;
/// Big tables in pieces: by integer key, composite key, pages, mostly TOAST; resumed by piece.
mod pieces;
/// What the operator sees: the progress bar, plain progress lines, JSON reports, listings.
mod reporting;
/// Thousands of small tables with a fixed number of catalog queries; one very large value;
/// no table waiting behind another's index builds while a lane is free.
mod scale;
/// Serial, identity and standalone sequences set to the source's values.
mod sequences;
/// The source as production has it: RLS, role timeouts, truncates, a standby, LATIN1.
mod source;
/// Staging refreshes of schemas nobody here wrote (pagila): subsets, permutations, masked keys.
mod staging;
/// Subsets that keep every key valid: closures through cycles, followers, a standby.
mod subsets;
/// Columns of another type on the destination: widened ones copied, narrowed ones refused.
mod type_changes;
/// Throwaway clusters, a database per test, the `pgcopy` runner and its assertions.
mod util;
/// `verify` and `copy --verify`: counts and checksums each server computes itself.
mod verifying;
/// Copies between PostgreSQL majors either way, and a server too old refused.
mod versions;
