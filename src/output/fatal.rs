//! How a run that failed as a whole ends: the error's whole chain on stderr with the
//! program's prefix, the same as a JSON document where `--json` was asked, exit code 2; and
//! output cut short by a closed pipe, which is no failure.

use crate::exit::Exit;
use crate::pg::error::describe;
use std::io::Write as _;

/// The exit of a command that returned `err`; `json` also prints it as a document.
pub(crate) fn exit_for(err: &anyhow::Error, json: bool) -> Exit {
    if is_broken_pipe(err) {
        return Exit::Success;
    }
    let message = describe(err);
    let _ = write!(
        super::format::stderr(),
        "{}",
        super::logging::fatal_line(&message)
    );
    if json {
        let doc = serde_json::json!({
            "pgcopy_version": env!("CARGO_PKG_VERSION"),
            "status": Exit::Usage.status(),
            "exit_code": Exit::Usage.code(),
            "error": message,
        });
        // Nothing is left to tell if stdout is gone too.
        let _ = super::format::print_json(&doc);
    }
    Exit::Usage
}

/// Output cut short by a closed pipe (`pgcopy list | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
