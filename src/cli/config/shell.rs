//! The shells `pgcopy completions` writes a script for, checked once here so the generators
//! get one of them, never a string.

use anyhow::bail;
use std::str::FromStr;

/// A shell pgcopy has a completion script for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    /// Every shell, in the order help names them.
    pub(crate) const ALL: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

    /// The name the command line gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Zsh => "zsh",
            Shell::Fish => "fish",
        }
    }
}

impl FromStr for Shell {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Shell> {
        match Shell::ALL.into_iter().find(|shell| shell.name() == text) {
            Some(shell) => Ok(shell),
            None => bail!("no completion script for the shell {text:?}: give bash, zsh or fish"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shells_by_name() {
        for shell in Shell::ALL {
            assert_eq!(shell.name().parse::<Shell>().unwrap(), shell);
        }
        let err = "powershell".parse::<Shell>().unwrap_err().to_string();
        assert!(err.contains("bash, zsh or fish"), "{err}");
    }
}
