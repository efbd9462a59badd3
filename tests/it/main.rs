//! The end-to-end tests, gathered in one test binary: each module is the scenarios of one part of
//! imagegen over real HTTP, real git and the real binary; `common` and `common_pr` are the stand-ins
//! and throw-away repositories they share. One binary links the heavy dependencies (git2,
//! octocrab, the Azure SDK) once instead of once per file.

mod common;
mod common_pr;

mod blob_store;
mod cli;
mod demo;
mod doctor;
mod factory;
mod inputs;
mod json_output;
mod ledger;
mod limits;
mod osob;
mod osob_story;
mod platform;
mod pr_providers;
mod reconcile;
mod settings;
mod vars;
