//! imagegen: keeps Helix's Windows base images built from the definitions committed here.
//!
//! Loading and rendering are pure ([`catalog`], [`definitions`], [`variables`]); [`plan`] turns
//! them and the ledger ([`state`]) into plain data; [`commands`] runs a request and writes its
//! results through [`output`].

pub mod apply;
pub mod atomic_file;
pub mod catalog;
pub mod commands;
pub mod definitions;
pub mod diagnostics;
pub mod duration;
pub mod exit;
pub mod factory;
pub mod fleet;
pub mod http;
pub mod json;
pub mod ledger_copy;
pub mod limiter;
pub mod osob;
pub mod output;
pub mod plan;
pub mod platform;
pub mod preflight;
pub mod pull_request;
pub mod runtime;
pub mod selection;
pub mod settings;
pub mod sources;
pub mod state;
pub mod suggest;
pub mod variables;
