//! What outlives a run or stops it: the state file that lets a killed copy be put back and
//! resumed (`file`), and the signals that interrupt a copy (`interrupt`).

pub(crate) mod file;
pub(crate) mod interrupt;
