//! What every session pgcopy opens does first, on either side and whatever it is for (the
//! source snapshot, readers, writers, the main destination session, verify, list, recover):
//! pin the settings that a role, a database or the server configuration could otherwise
//! give it, as pg_dump's `setup_connection` does. Settings made with `ALTER ROLE … SET` or
//! `ALTER DATABASE … SET` apply to every new session; without this they would cut a copy
//! short (timeouts), hide rows from it (row-level security) or change what the catalog says
//! (`search_path`).

use postgres::Client;

/// The settings, set for the session (not a transaction), so `RESET` and a rolled-back
/// transaction keep them:
///
/// - `statement_timeout`, `lock_timeout`, `idle_in_transaction_session_timeout`,
///   `idle_session_timeout` (14+) and `transaction_timeout` (17+) off: a copy's statements
///   run as long as their table takes, its snapshot is held idle in a transaction for the
///   whole run, and its pooled sessions wait idle between tables. pgcopy sets
///   `lock_timeout` itself, with `SET LOCAL`, where it means one (`--lock-timeout`).
/// - `row_security = off`: a table whose rows a policy would filter for this role fails
///   loudly instead of copying (or verifying) only the rows the policy lets through.
/// - `search_path = ''`: `format_type`, `pg_get_constraintdef`, `pg_get_indexdef` and `reg*`
///   output name every object outside `pg_catalog` with its schema, so the two sides compare
///   equal whatever paths they are set to, and a saved definition means the same object
///   whichever session runs it later. Functions the destination runs during a load (column
///   defaults, checks, index expressions) must not depend on the path, as with pg_restore.
/// - `standard_conforming_strings = on`: the literals pgcopy quotes (`sql::quote_literal`)
///   mean what they say.
/// - `default_tablespace = ''`: indexes built again go where the database puts them, not
///   where a role's default would.
///
/// Settings a server version does not have are skipped, so one statement fits every version.
pub(crate) const SESSION_SETUP: &str = "SELECT pg_catalog.set_config(s.name, s.value, false)
     FROM (VALUES ('statement_timeout', '0'),
                  ('lock_timeout', '0'),
                  ('idle_in_transaction_session_timeout', '0'),
                  ('idle_session_timeout', '0'),
                  ('transaction_timeout', '0'),
                  ('row_security', 'off'),
                  ('standard_conforming_strings', 'on'),
                  ('default_tablespace', ''),
                  ('search_path', '')) AS s(name, value)
     WHERE s.name IN (SELECT name FROM pg_catalog.pg_settings)";

/// Runs `SESSION_SETUP` on a new postgres-crate session.
pub(crate) fn apply(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(SESSION_SETUP)
}
