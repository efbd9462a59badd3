//! A git server over https for the end-to-end tests, as production OSOB is reached: TLS with a
//! certificate from a throw-away authority, Basic authentication with one user and token, and
//! git's own smart-HTTP service (`git http-backend`, run as a CGI program) behind it.
//!
//! The binary under test trusts the authority through `SSL_CERT_FILE` (see
//! [`GitHttpsServer::environment`]); nothing on the machine is changed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// One request as the git server saw it.
#[derive(Debug, Clone)]
pub struct GitRequest {
    pub method: String,
    /// The path and query, such as `/osob.git/info/refs?service=git-receive-pack`.
    pub target: String,
}

impl GitRequest {
    /// A push: the pack sent to `git-receive-pack`.
    pub fn is_push(&self) -> bool {
        self.method == "POST" && self.target.ends_with("/git-receive-pack")
    }
}

struct Shared {
    root: PathBuf,
    username: String,
    token: String,
    requests: Mutex<Vec<GitRequest>>,
}

/// Serves every bare repository under a folder at `https://127.0.0.1:<port>/<name>.git`.
pub struct GitHttpsServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    certificate_file: tempfile::NamedTempFile,
    task: JoinHandle<()>,
}

impl Drop for GitHttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHttpsServer {
    /// Starts serving `root` on the current tokio runtime; only `username` with `token` gets in.
    pub async fn start(root: &Path, username: &str, token: &str) -> Self {
        let (authority_pem, server_config) = certificates();
        let mut certificate_file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::io::Write::write_all(&mut certificate_file, authority_pem.as_bytes())
            .expect("write the authority's certificate");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            username: username.to_owned(),
            token: token.to_owned(),
            requests: Mutex::default(),
        });
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = serving.clone();
                tokio::spawn(async move {
                    // A client that gives up mid-handshake is its own business.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&shared, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            address,
            shared,
            certificate_file,
            task,
        }
    }

    /// The https URL of the repository `name` (a folder under the root, such as `osob.git`).
    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.address.port())
    }

    /// What the binary needs to trust this server.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![(
            "SSL_CERT_FILE",
            self.certificate_file.path().display().to_string(),
        )]
    }

    pub fn requests(&self) -> Vec<GitRequest> {
        self.shared
            .requests
            .lock()
            .expect("the request log")
            .clone()
    }

    /// How many packs were pushed so far.
    pub fn pushes(&self) -> usize {
        self.requests().iter().filter(|r| r.is_push()).count()
    }
}

/// A certificate authority's PEM, and a server configuration whose certificate it signed for
/// 127.0.0.1 and localhost.
fn certificates() -> (String, rustls::ServerConfig) {
    let authority_key = rcgen::KeyPair::generate().expect("an authority key");
    let mut authority_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).expect("authority parameters");
    authority_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "imagegen test authority");
    authority_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let authority = rcgen::CertifiedIssuer::self_signed(authority_params, authority_key)
        .expect("a self-signed authority");
    let server_key = rcgen::KeyPair::generate().expect("a server key");
    let mut server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server parameters");
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let server_certificate = server_params
        .signed_by(&server_key, &authority)
        .expect("a server certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![server_certificate.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .expect("a server configuration");
    (authority.pem(), config)
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", shared.username, shared.token))
    );
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == expected.as_bytes());
    let target = request
        .uri()
        .path_and_query()
        .map(|target| target.as_str().to_owned())
        .unwrap_or_default();
    shared
        .requests
        .lock()
        .expect("the request log")
        .push(GitRequest {
            method: request.method().to_string(),
            target,
        });
    if !authorized {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Basic realm=\"osob\"")
            .body(Full::new(Bytes::from_static(b"authentication required\n")))
            .expect("a response");
    }
    match http_backend(shared, request).await {
        Ok(response) => response,
        Err(error) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from(format!(
                "git http-backend: {error}\n"
            ))))
            .expect("a response"),
    }
}

/// Runs `git http-backend` for one request, as a web server runs a CGI program.
async fn http_backend(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, String> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let root = shared.root.clone();
    let username = shared.username.clone();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let (content_type, content_encoding, protocol) = (
        header("content-type"),
        header("content-encoding"),
        header("git-protocol"),
    );
    let output = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", content_encoding)
            .env("GIT_PROTOCOL", protocol)
            // An authenticated user is what lets http-backend accept a push.
            .env("REMOTE_USER", username)
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("a piped stdin");
        // Written from its own thread: a large pack would otherwise fill the pipe while the
        // program waits for us to read its output.
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &body));
        let output = child.wait_with_output()?;
        writer.join().expect("the writer thread")?;
        Ok::<_, std::io::Error>(output)
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| error.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    cgi_response(&output.stdout)
}

/// A CGI program's output (headers, a blank line, the body) as an HTTP response.
fn cgi_response(output: &[u8]) -> Result<Response<Full<Bytes>>, String> {
    let (head, body) = match output.windows(4).position(|window| window == b"\r\n\r\n") {
        Some(end) => (&output[..end], &output[end + 4..]),
        None => match output.windows(2).position(|window| window == b"\n\n") {
            Some(end) => (&output[..end], &output[end + 2..]),
            None => return Err("no header block in the CGI output".to_owned()),
        },
    };
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse::<u16>().ok())
                .ok_or_else(|| format!("a bad CGI status `{value}`"))?;
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|error| error.to_string())
}
