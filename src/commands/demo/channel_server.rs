//! The demo's Visual Studio channel manifest, served on loopback: the document
//! `https://aka.ms/vs/17/release/channel` publishes, in its real shape, announcing this week's
//! release, so that the demo finds the new version as the daily pipeline finds it. A bare
//! HTTP/1.1 answer on a thread of its own: the demo's steps block while it answers.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The manifest server; stops when dropped.
pub struct ChannelServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl ChannelServer {
    /// Serves a manifest announcing `display` (such as `17.12.1`) at every path.
    pub fn start(display: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let body = manifest(display);
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    // One request a connection; a client that hangs up early is no matter.
                    let _ = answer(stream, &body);
                }
            }
        });
        Ok(Self { address, stop })
    }

    /// `http://127.0.0.1:<port>/`: what the demo rewrites `https://aka.ms/` to.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

fn answer(stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && line != "\r\n" {
        line.clear();
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )
}

/// A channel manifest with the members the real one has where imagegen reads.
fn manifest(display: &str) -> String {
    let build = format!("{display}.35527");
    serde_json::json!({
        "manifestVersion": "1.1",
        "info": {
            "id": format!("VisualStudio.17.Release/{display}+{build}"),
            "buildBranch": "d17",
            "buildVersion": build,
            "manifestName": "VisualStudio",
            "manifestType": "channel",
            "productDisplayVersion": display,
            "productLine": "Dev17",
            "productLineVersion": "2022",
            "productMilestone": "RTW",
            "productName": "Visual Studio",
        },
        "channelItems": [
            {
                "id": "Microsoft.VisualStudio.Product.Enterprise",
                "version": build,
                "type": "ChannelProduct",
                "releaseNotes": format!("https://learn.microsoft.com/visualstudio/releases/2022/release-notes-v{display}"),
            },
            {
                "id": "Microsoft.VisualStudio.Setup.Bootstrapper.Enterprise",
                "version": build,
                "type": "Bootstrapper",
                "payloads": [{ "fileName": "vs_Enterprise.exe", "url": "http://127.0.0.1/vs_Enterprise.exe" }],
            },
        ],
    })
    .to_string()
}
