//! Which failures are worth another try, and how long to wait before it. A lost connection,
//! a server shutting down or restarting, a serialization failure or deadlock: the same table
//! copied again will likely go through. A constraint violation, a permission error or a type
//! mismatch will fail the same way again: it fails the table at once, with the server's words.

use crate::pg::wire::ServerError;
use postgres::error::SqlState;
use std::time::Duration;

/// A failure that says itself it is worth another try, whatever caused it.
#[derive(Debug)]
pub(crate) struct TryLater(pub String);

impl std::fmt::Display for TryLater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TryLater {}

/// The SQLSTATE of the server error in `err`, from either kind of session.
pub(crate) fn sqlstate(err: &anyhow::Error) -> Option<SqlState> {
    err.chain().find_map(|cause| {
        if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
            return pg.code().cloned();
        }
        cause
            .downcast_ref::<ServerError>()
            .map(|server| SqlState::from_code(server.code()))
    })
}

/// Whether a table that failed with `err` should be copied again.
pub(crate) fn is_transient(err: &anyhow::Error) -> bool {
    if err.chain().any(|cause| cause.is::<TryLater>()) {
        return true;
    }
    for cause in err.chain() {
        if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
            return match pg.code() {
                Some(code) => transient_state(code),
                // No SQLSTATE: the connection broke, closed or timed out.
                None => true,
            };
        }
        if let Some(server) = cause.downcast_ref::<ServerError>() {
            return transient_state(&SqlState::from_code(server.code()));
        }
        if cause.downcast_ref::<r2d2::Error>().is_some()
            || cause.downcast_ref::<std::io::Error>().is_some()
        {
            return true;
        }
    }
    false
}

/// Whether `err` says the session itself is gone (terminated, server shut down or restarted,
/// connection broken). Other sessions to the same server may be gone too without knowing it
/// yet: an idle session learns only at its next statement.
pub(crate) fn is_connection_lost(err: &anyhow::Error) -> bool {
    for cause in err.chain() {
        if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
            return match pg.code() {
                Some(code) => lost_state(code),
                None => true,
            };
        }
        if let Some(server) = cause.downcast_ref::<ServerError>() {
            return lost_state(&SqlState::from_code(server.code()));
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
    }
    false
}

fn lost_state(code: &SqlState) -> bool {
    // Class 08 (connection exception), 57P01 admin_shutdown (terminated, or the server is
    // shutting down), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up), and the
    // timeouts that end a session (pgcopy switches them off, but a pooler or an older
    // session may not): 25P03 idle_in_transaction_session_timeout, 57P05
    // idle_session_timeout.
    let code = code.code();
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05" | "25P03")
}

fn transient_state(code: &SqlState) -> bool {
    // 40001 is also how a standby cancels a query that conflicts with recovery.
    lost_state(code)
        || matches!(
            code.code(),
            "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "53300" // too_many_connections
        )
}

/// The wait before try `attempt + 1` (attempt counts from 1): 1 s, 2 s, 4 s, … at most 30 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_states() {
        assert!(transient_state(&SqlState::ADMIN_SHUTDOWN));
        assert!(transient_state(&SqlState::CONNECTION_FAILURE));
        assert!(transient_state(&SqlState::T_R_DEADLOCK_DETECTED));
        assert!(transient_state(&SqlState::T_R_SERIALIZATION_FAILURE));
        assert!(!transient_state(&SqlState::CHECK_VIOLATION));
        assert!(!transient_state(&SqlState::INSUFFICIENT_PRIVILEGE));
        assert!(!transient_state(&SqlState::LOCK_NOT_AVAILABLE));
        assert!(!transient_state(&SqlState::QUERY_CANCELED));
    }

    #[test]
    fn tells_a_lost_session_from_a_failed_statement() {
        let lost = |code: SqlState| lost_state(&code);
        assert!(lost(SqlState::ADMIN_SHUTDOWN));
        assert!(lost(SqlState::CONNECTION_EXCEPTION));
        assert!(!lost(SqlState::T_R_DEADLOCK_DETECTED));
        assert!(!lost(SqlState::TOO_MANY_CONNECTIONS));
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        assert!(is_connection_lost(&anyhow::Error::new(io)));
        assert!(!is_connection_lost(&anyhow::anyhow!(
            "the destination writer stopped"
        )));
    }

    #[test]
    fn our_own_errors_are_permanent() {
        assert!(!is_transient(&anyhow::anyhow!(
            "the source sent 3 rows but the destination took 2"
        )));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_transient(&anyhow::Error::new(io).context("reading")));
        let later = anyhow::Error::new(TryLater("queued".into())).context("reading");
        assert!(is_transient(&later));
    }

    #[test]
    fn backs_off_exponentially_up_to_half_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
