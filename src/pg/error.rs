//! Why something failed, told apart from typed errors (SQLSTATEs, `io::Error`, the driver's
//! closed connection, pgcopy's own markers), never from message text: whether a table is
//! worth another try, whether a session is gone, whether a lock was not granted in time; and
//! an error written on one line with the server's detail and hint.

use crate::pg::wire::ServerError;
use postgres::error::SqlState;
use std::time::Duration;

/// What kind of failure an error is, which decides what pgcopy does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The session itself is gone (terminated, server shut down or restarted, connection
    /// broken). Other sessions to the same server may be gone too without knowing it yet:
    /// an idle session learns only at its next statement. Worth another try.
    Lost,
    /// The statement failed in a way the same statement will likely get past (serialization
    /// failure, deadlock, too many connections, a pool that had no session in time).
    Transient,
    /// A lock was not granted within `lock_timeout` (or `NOWAIT` found it taken).
    LockTimeout,
    /// The same statement would fail the same way: a constraint, a permission, a type, or
    /// pgcopy's own finding.
    Permanent,
}

impl Kind {
    /// Whether a table that failed so should be copied again.
    pub(crate) fn is_worth_retrying(self) -> bool {
        matches!(self, Kind::Lost | Kind::Transient)
    }
}

/// A failure that says itself it is worth another try, whatever caused it.
#[derive(Debug)]
pub(crate) struct TryLater(pub String);

impl std::fmt::Display for TryLater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TryLater {}

/// Work stopped on purpose (an interrupt, the source's snapshot lost): said as it is, not
/// with the steps it stopped in ("reading the source: reading from the source: …").
#[derive(Debug)]
pub(crate) struct Stopped(pub String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stopped {}

/// An error said in words an operator can act on (see `Target::explain`), which keeps the
/// error it explains so that its kind is still known.
#[derive(Debug)]
pub(crate) struct Explained {
    pub(crate) text: String,
    pub(crate) cause: anyhow::Error,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// No source: the text already says what the cause would.
impl std::error::Error for Explained {}

/// What kind of failure `err` is: decided by the first cause in its chain that says.
pub(crate) fn kind(err: &anyhow::Error) -> Kind {
    // `downcast_ref` also finds a `TryLater` given as context to another error, at any depth;
    // `chain` yields such a layer as the context wrapper, not as the `TryLater` itself.
    if err.downcast_ref::<TryLater>().is_some() || err.chain().any(|cause| cause.is::<TryLater>()) {
        return Kind::Transient;
    }
    for cause in err.chain() {
        if let Some(explained) = cause.downcast_ref::<Explained>() {
            return kind(&explained.cause);
        }
        if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
            return match pg.code() {
                Some(code) => state_kind(code),
                // No SQLSTATE: the connection broke, closed or timed out.
                None => Kind::Lost,
            };
        }
        if let Some(server) = cause.downcast_ref::<ServerError>() {
            return state_kind(&SqlState::from_code(server.code()));
        }
        if cause.is::<std::io::Error>() {
            return Kind::Lost;
        }
        if cause.is::<r2d2::Error>() {
            return Kind::Transient;
        }
    }
    Kind::Permanent
}

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

fn state_kind(code: &SqlState) -> Kind {
    match code.code() {
        // Class 08 (connection exception), 57P01 admin_shutdown (terminated, or the server is
        // shutting down), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up), and
        // the timeouts that end a session (pgcopy switches them off, but a pooler or an older
        // session may not): 25P03 idle_in_transaction_session_timeout, 57P05
        // idle_session_timeout.
        c if c.starts_with("08") => Kind::Lost,
        "57P01" | "57P02" | "57P03" | "57P05" | "25P03" => Kind::Lost,
        // 40001 serialization_failure (also how a standby cancels a query that conflicts with
        // recovery), 40P01 deadlock_detected, 53300 too_many_connections.
        "40001" | "40P01" | "53300" => Kind::Transient,
        "55P03" => Kind::LockTimeout,
        _ => Kind::Permanent,
    }
}

/// The wait before try `attempt + 1` (attempt counts from 1): 1 s, 2 s, 4 s, … at most 30 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// An error and its causes on one line, server errors as `db_error` shows them; work
/// stopped on purpose as why it stopped alone.
pub(crate) fn describe(err: &anyhow::Error) -> String {
    if let Some(stopped) = err.chain().find_map(|c| c.downcast_ref::<Stopped>()) {
        return stopped.0.clone();
    }
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        if let Some(pg) = cause.downcast_ref::<postgres::Error>() {
            parts.push(db_error(pg));
        } else if cause.downcast_ref::<postgres::error::DbError>().is_none() {
            // A DbError is the source of the postgres::Error just described.
            parts.push(cause.to_string());
        }
    }
    parts.join(": ")
}

/// A server error on one line: the message, then its detail and hint; other errors as
/// they display.
pub(crate) fn db_error(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_string();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" (DETAIL: {detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (HINT: {hint})"));
            }
            text
        }
        None => err.to_string(),
    }
}

/// The TLS failure somewhere in `err`'s causes: rustls's own error, or the `io::Error` a
/// TLS stream wraps it in.
pub(crate) fn tls_failure(err: &anyhow::Error) -> Option<&rustls::Error> {
    err.chain().find_map(|cause| {
        cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> anyhow::Error {
        anyhow::Error::new(ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: "m".into(),
            detail: None,
            hint: None,
        })
        .context("copying")
    }

    #[test]
    fn classifies_server_states() {
        assert_eq!(kind(&server("57P01")), Kind::Lost);
        assert_eq!(kind(&server("08006")), Kind::Lost);
        assert_eq!(kind(&server("40P01")), Kind::Transient);
        assert_eq!(kind(&server("40001")), Kind::Transient);
        assert_eq!(kind(&server("53300")), Kind::Transient);
        assert_eq!(kind(&server("55P03")), Kind::LockTimeout);
        assert_eq!(kind(&server("23514")), Kind::Permanent);
        assert_eq!(kind(&server("42501")), Kind::Permanent);
        assert_eq!(kind(&server("57014")), Kind::Permanent);
        assert!(!Kind::LockTimeout.is_worth_retrying());
        assert!(Kind::Lost.is_worth_retrying());
    }

    #[test]
    fn our_own_errors_are_permanent_and_broken_sockets_lost() {
        assert_eq!(
            kind(&anyhow::anyhow!(
                "the source sent 3 rows but the destination took 2"
            )),
            Kind::Permanent
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(kind(&anyhow::Error::new(io).context("reading")), Kind::Lost);
        let later = anyhow::Error::new(TryLater("queued".into())).context("reading");
        assert_eq!(kind(&later), Kind::Transient);
        // A server's error the caller knows to be worth another try, said with more context.
        let in_use = server("55006")
            .context(TryLater("the slot is still in use".into()))
            .context("following");
        assert_eq!(kind(&in_use), Kind::Transient);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let explained = Explained {
            text: "connection refused: is the server running?".into(),
            cause: anyhow::Error::new(refused),
        };
        assert_eq!(kind(&anyhow::Error::new(explained)), Kind::Lost);
    }

    #[test]
    fn finds_a_tls_failure_inside_an_io_error() {
        let tls = rustls::Error::General("handshake".into());
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        assert!(tls_failure(&anyhow::Error::new(io).context("connecting")).is_some());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(tls_failure(&anyhow::Error::new(io)).is_none());
    }

    #[test]
    fn backs_off_exponentially_up_to_half_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
