//! Ctrl-C, SIGTERM and SIGHUP: a flag the copy checks between chunks. The first signal asks
//! the copy to stop; pgcopy then puts the destination back before it exits. A second one
//! does not cut that short. Only a third exits at once, leaving the state file for
//! `pgcopy recover`.

use crate::exit::Exit;
use anyhow::{Context, Result};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the handler, before the destination changes; later calls do nothing.
pub(crate) fn install() -> Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    ctrlc::set_handler(|| match SIGNALS.fetch_add(1, Ordering::SeqCst) {
        0 => {
            STOP.store(true, Ordering::SeqCst);
            // Never a panic in the handler, whatever stderr is.
            let _ = writeln!(
                std::io::stderr(),
                "\npgcopy: interrupted: stopping (a copy puts the destination's keys back first)"
            );
        }
        1 => {
            let _ = writeln!(
                std::io::stderr(),
                "\npgcopy: still putting the destination's keys back; interrupt once more to \
                 exit at once and leave that to `pgcopy recover`"
            );
        }
        _ => std::process::exit(i32::from(Exit::Interrupted.code())),
    })
    .context("installing the Ctrl-C handler")
}

/// Whether an interrupt has been asked for.
pub(crate) fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
