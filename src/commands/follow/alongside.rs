//! Following alongside the chunked copy: started once the copy is planned, on a thread of
//! its own, from the slot's start (or, on `--resume`, from where the destination's progress
//! is), each change of a copied table decided by its chunk as the lanes read them
//! (`plan::chunks::registry`); and, once the copy is over, following goes on with the
//! copy's report handed to it, or, if the copy did not finish whole, it stops and the slot
//! stays for `--resume`.

use crate::cli::config::CopyConfig;
use crate::commands::keys;
use crate::exit::Exit;
use crate::pg::error::describe;
use crate::pg::server::lock_destination;
use crate::pg::wire;
use crate::plan::chunks::registry::Registry;
use crate::replication::decode::Lsn;
use crate::replication::slot::LsnText;
use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

/// The follower started alongside a copy, if it was.
pub(super) struct Alongside<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    cfg: &'env CopyConfig,
    follower: Option<Follower<'scope>>,
    /// The copy's `--json` report, handed to the follower once the copy is over.
    report: (Sender<Option<Value>>, Receiver<Option<Value>>),
}

struct Follower<'scope> {
    name: String,
    thread: ScopedJoinHandle<'scope, Result<Exit>>,
    registry: Arc<Registry>,
}

impl<'scope, 'env> Alongside<'scope, 'env> {
    pub(super) fn new(scope: &'scope Scope<'scope, 'env>, cfg: &'env CopyConfig) -> Self {
        Alongside {
            scope,
            cfg,
            follower: None,
            report: crossbeam_channel::bounded(1),
        }
    }

    /// Starts following the slot `name` from `start` (on `session`, the slot's, or a new
    /// one), its changes decided by `registry` as the copy goes on; the destination is ready
    /// for it (`ready_to_follow`).
    pub(super) fn start(
        &mut self,
        name: &str,
        start: Lsn,
        session: Option<wire::Connection>,
        registry: Arc<Registry>,
    ) -> Result<()> {
        let cfg = self.cfg;
        let report = self.report.1.clone();
        let copying = registry.clone();
        let owned = name.to_string();
        let thread = std::thread::Builder::new()
            .name("follower".into())
            .spawn_scoped(self.scope, move || {
                let report = move || report.recv().ok().flatten();
                super::stream::follow(cfg, &owned, session, report, Some(copying))
            })
            .context("starting the follower's thread")?;
        log::info!(
            "following {name} from {} while the copy goes on: a change of a chunk not read \
             yet is left to it, one of a table copied whole applies",
            LsnText(start)
        );
        self.follower = Some(Follower {
            name: name.to_string(),
            thread,
            registry,
        });
        Ok(())
    }

    /// Whether following started.
    pub(super) fn started(&self) -> bool {
        self.follower.is_some()
    }

    /// Once the copy is over (`copied`, with its report): following goes on until the
    /// cutover, what this returns; or, if the copy did not finish whole, it stops.
    pub(super) fn end(self, copied: Result<(Exit, Option<Value>)>) -> Result<Exit> {
        let cfg = self.cfg;
        let (sender, _) = self.report;
        let Some(Follower {
            name,
            thread,
            registry,
        }) = self.follower
        else {
            return copied.map(|(exit, _)| exit);
        };
        let join = |thread: ScopedJoinHandle<'scope, Result<Exit>>| {
            thread
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the follower's thread panicked")))
        };
        let (copied, report) = match copied {
            Ok(copied) => copied,
            Err(err) => {
                registry.stop(&describe(&err));
                drop(sender);
                if let Err(followed) = join(thread) {
                    log::debug!("the follower stopped: {}", describe(&followed));
                }
                return Err(err.context(format!(
                    "the replication slot {name} stays: `pgcopy copy --follow --resume` goes \
                     on with it (`pgcopy abandon` drops it instead)"
                )));
            }
        };
        if copied != Exit::Success {
            registry.stop("it did not finish whole");
            sender.send(report).ok();
            if let Err(followed) = join(thread) {
                log::debug!("the follower stopped: {}", describe(&followed));
            }
            log::error!(
                "not following on: the copy did not finish whole; the replication slot {name} \
                 stays, and `pgcopy copy --follow --resume` copies the chunks not recorded and \
                 follows on (`pgcopy abandon` drops the slot instead)"
            );
            let mut dest = cfg.dest.connect()?;
            lock_destination(&mut dest, &cfg.dest)?;
            keys::put_back_recorded(&cfg.state_dir, &mut dest)?;
            return Ok(copied);
        }
        // The copy's lock on the destination went with its sessions: following takes it
        // again when it next connects, and cutover does.
        registry.finish();
        log::info!("the initial copy is over; following goes on");
        sender.send(report).ok();
        join(thread)
    }
}
