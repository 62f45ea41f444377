//! Following a live source with logical replication (`copy --follow`, issue 19), built in
//! steps. Here so far: whether a source can be followed at all (`readiness`), which the
//! `status` command reports and `--follow` will refuse on. Imported only by `commands/`.

pub(crate) mod readiness;
