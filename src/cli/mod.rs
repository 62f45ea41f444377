//! The command line: the raw argh structs (`args`), their help made readable (`help`),
//! their validation into the configurations everything else reads (`config`), as
//! ripgrep's low and high args, and the completion scripts and manual page made from that
//! help (`manual`).

pub(crate) mod args;
pub(crate) mod config;
mod help;
pub(crate) mod manual;
