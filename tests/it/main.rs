//! The end-to-end tests, gathered in one test binary: each module is the scenarios of one part of
//! imagegen over real HTTP, real git and the real binary; `common` and `common_pr` are the stand-ins
//! and throw-away repositories they share. One binary links the heavy dependencies (git2,
//! octocrab, the Azure SDK) once instead of once per file.

mod common;
mod common_pr;

mod blob_store;
mod cli;
mod demo;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod doctor;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod factory;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod fleet;
mod inputs;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod json_output;
mod ledger;
mod ledger_copy;
mod limits;
mod osob;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod osob_story;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod platform;
mod pr_providers;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod reconcile;
// The emulator is a default feature: without it, these have nothing to run against.
#[cfg(feature = "emulator")]
mod settings;
mod vars;
mod vars_update;
