//! The exit codes, as `--help` and the README document them: one enum (fd's
//! `exit_codes.rs`), so a code means the same thing wherever a command ends.

/// How a run ended, for scripts that check `$?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Every selected table was copied (or listed, verified, recovered).
    Success,
    /// One or more tables failed; the others were copied and everything was put back.
    TablesFailed,
    /// Usage, configuration, connection or schema error, before anything was written.
    Usage,
    /// A verification found a table that differs.
    VerifyMismatch,
    /// Interrupted (Ctrl-C, SIGTERM); the destination was put back as far as it had changed.
    Interrupted,
}

impl Exit {
    /// The process's exit status.
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::TablesFailed => 1,
            Exit::Usage => 2,
            Exit::VerifyMismatch => 3,
            Exit::Interrupted => 130,
        }
    }

    /// The word `--json` reports it with.
    pub(crate) fn status(self) -> &'static str {
        match self {
            Exit::Success => "ok",
            Exit::TablesFailed => "failed",
            Exit::Usage => "error",
            Exit::VerifyMismatch => "mismatch",
            Exit::Interrupted => "interrupted",
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            Exit::Success,
            Exit::TablesFailed,
            Exit::Usage,
            Exit::VerifyMismatch,
            Exit::Interrupted,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 3, 130]);
    }
}
