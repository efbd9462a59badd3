//! The process exit codes, one meaning each, shared by the plan and every command.

/// Done: no problem, nothing to submit, nothing pending.
pub const OK: u8 = 0;
/// An error (every problem is listed), or a job that failed.
pub const ERROR: u8 = 1;
/// Changes planned or jobs still pending: a later run has work to do.
pub const PENDING: u8 = 2;
