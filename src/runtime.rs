//! The one async runtime of the process: every client is built and every request runs on it.
//!
//! The commands are synchronous and step into async code with [`block_on`]. They used to start
//! a runtime per step, and a client built in one (octocrab spawns its request buffer's worker
//! when it is built; a reqwest pool keeps connections whose tasks live on the runtime that
//! opened them) was then used from another, or from none: a panic, or a connection that dies
//! with the runtime that drove it. One runtime for the life of the process, driven by whichever
//! step is running, removes that whole class of fault.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// Why the runtime could not start (the operating system refused a thread or an event queue).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot start the async runtime: {0}")]
pub struct RuntimeError(String);

static RUNTIME: OnceLock<Result<Runtime, RuntimeError>> = OnceLock::new();

/// The process's runtime, started on first use. Current-thread: spawned tasks (a client's
/// background workers) make progress while any step is inside [`block_on`].
pub fn shared() -> Result<&'static Runtime, RuntimeError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| RuntimeError(error.to_string()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `future` to completion on the process's runtime. Not for use from async code.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, RuntimeError> {
    Ok(shared()?.block_on(future))
}
