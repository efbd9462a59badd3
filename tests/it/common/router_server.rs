//! A stand-in HTTP service for tests that are not async: an axum router served on loopback from
//! a thread of its own, answering whatever the test's routes answer.

use std::net::SocketAddr;

/// An axum router served on an ephemeral loopback port; stops when dropped.
pub struct RouterServer {
    address: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RouterServer {
    /// Serves `router` on a thread with its own runtime, and returns once it listens.
    pub fn start(router: axum::Router) -> Self {
        let (ready, address) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime starts");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port");
                ready
                    .send(listener.local_addr().expect("a bound address"))
                    .expect("the test waits for the address");
                let serve = axum::serve(listener, router);
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            address: address.recv().expect("the server starts"),
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }
}
