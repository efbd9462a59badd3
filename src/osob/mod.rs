//! OSOB, the repository that defines Helix queues: the mapping from definitions to its files,
//! the pure edit that swaps image names (and review dates) in them, and the git workspace that
//! reads its base branch and pushes the pull-request branch; `publish` holds the update's
//! parts (which images go in, the edits at the base tip, the push) and `step` runs the whole
//! OSOB step on them, returning a typed report.

pub mod edit;
pub mod mapping;
pub mod publish;
pub mod step;
pub mod workspace;
