//! `imagegen demo`: the whole loop on this machine, with no secrets and no network, told in
//! `story.rs`. The story needs the Image Factory emulator, which the `emulator` feature (on by
//! default) builds in. A build without it, such as the production pipeline's, keeps the command
//! and answers why it has no demo and what to run instead: a first responder who types the
//! command the docs show meets that, not a bare "unrecognized subcommand".

#[cfg(feature = "emulator")]
mod channel_server;
#[cfg(feature = "emulator")]
mod story;

#[cfg(feature = "emulator")]
pub use story::demo;

/// What `imagegen demo` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct DemoRequest {
    /// Leave the throw-away folder in place and say where it is.
    pub keep: bool,
}

#[cfg(not(feature = "emulator"))]
const NO_EMULATOR: &str = "this imagegen was built without the Image Factory emulator (with no \
    default features, as the production pipeline's release build is), so it has no demo: run \
    `cargo run --locked -- demo` in a checkout of imagegen";

/// `imagegen demo` in a build without the emulator: an error that says why, and what to run.
#[cfg(not(feature = "emulator"))]
pub fn demo(_context: &super::Context, _request: DemoRequest) -> anyhow::Result<crate::exit::Exit> {
    anyhow::bail!(NO_EMULATOR)
}
