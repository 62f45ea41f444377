//! The command line: the raw argh structs (`args`), their help made readable (`help`), and
//! their validation into the configurations everything else reads (`config`), as
//! ripgrep's low and high args.

pub(crate) mod args;
pub(crate) mod config;
mod help;
