//! Azurite, the local Azure Storage emulator, for tests that need a real Blob service: installed
//! once with npm under `<repo>/target/test-tools/azurite`, started per test on a free loopback
//! port with in-memory storage, and stopped when dropped. It also signs the SAS tokens a
//! pipeline would be given, with the emulator's well-known account key.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use super::manifest_dir;

/// The emulator's built-in account and its published key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The service version the SAS tokens are signed for and the helper's own requests ask for;
/// its string-to-sign is the one documented since 2020-12-06.
const SAS_VERSION: &str = "2020-12-06";
/// The npm package installed when no `AZURITE_BIN` is given.
const PACKAGE: &str = "azurite@3";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries at starting the emulator: another process may take the free port before it binds it.
const START_ATTEMPTS: u32 = 3;

/// A running emulator; killed when dropped.
pub struct Azurite {
    child: Child,
    port: u16,
    /// Its working folder and output, read back when it fails to start.
    _folder: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Azurite {
    /// Installs the emulator if needed and starts it, returning once it accepts connections.
    pub fn start() -> Azurite {
        let program = azurite_blob();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&program) {
                Ok(azurite) => return azurite,
                Err(failure) => last_failure = failure,
            }
        }
        panic!(
            "Azurite ({}) did not start in {START_ATTEMPTS} tries:\n{last_failure}",
            program.display()
        );
    }

    fn try_start(program: &Path) -> Result<Azurite, String> {
        let port = free_port();
        let folder = tempfile::tempdir().expect("create Azurite's working folder");
        let stdout = File::create(folder.path().join("stdout.log")).expect("create a log file");
        let stderr = File::create(folder.path().join("stderr.log")).expect("create a log file");
        let mut child = Command::new(program)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args([
                "--inMemoryPersistence",
                "--silent",
                // The SDK asks for a service version newer than the emulator knows.
                "--skipApiVersionCheck",
                "--loose",
                // The account is the first path segment, whatever the host name.
                "--disableProductStyleUrl",
                // Otherwise it reports usage over the network, which tests never need.
                "--disableTelemetry",
            ])
            .current_dir(folder.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                break;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                let why = match exited {
                    Some(status) => format!("it exited ({status})"),
                    None => format!("port {port} did not answer within {START_TIMEOUT:?}"),
                };
                return Err(format!(
                    "{why}\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    read_log(&folder.path().join("stderr.log")),
                    read_log(&folder.path().join("stdout.log"))
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Azurite {
            child,
            port,
            _folder: folder,
            http: reqwest::Client::new(),
        })
    }

    /// The account's Blob endpoint, `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates the container `name` and returns the name.
    pub async fn container(&self, name: &str) -> String {
        let answer = self
            .http
            .put(format!(
                "{}/{name}?restype=container&{}",
                self.endpoint(),
                self.account_sas()
            ))
            .header("x-ms-version", SAS_VERSION)
            .header("content-length", "0")
            .send()
            .await
            .expect("Azurite answers");
        let status = answer.status();
        assert_eq!(
            status.as_u16(),
            201,
            "creating container {name}: {}",
            answer.text().await.unwrap_or_default()
        );
        name.to_owned()
    }

    /// The blob's URL with no query.
    pub fn blob_url_without_sas(&self, container: &str, blob: &str) -> String {
        format!("{}/{container}/{blob}", self.endpoint())
    }

    /// The blob's URL with [`sas`](Self::sas) as its query.
    pub fn blob_url(&self, container: &str, blob: &str) -> String {
        format!(
            "{}?{}",
            self.blob_url_without_sas(container, blob),
            self.sas(container)
        )
    }

    /// A SAS for every blob of `container` allowing what the ledger needs (read, create,
    /// write), valid for an hour.
    pub fn sas(&self, container: &str) -> String {
        self.sas_with(
            container,
            "rcw",
            jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1),
        )
    }

    /// A service SAS for `container` with other permissions or another expiry.
    pub fn sas_with(&self, container: &str, permissions: &str, expiry: jiff::Timestamp) -> String {
        service_sas(container, permissions, expiry)
    }

    /// Writes `bytes` to the blob unconditionally, as something other than imagegen would,
    /// and returns its ETag.
    pub async fn put_blob(&self, container: &str, blob: &str, bytes: &[u8]) -> String {
        let answer = self
            .http
            .put(self.blob_url(container, blob))
            .header("x-ms-version", SAS_VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("Azurite answers");
        assert_eq!(answer.status().as_u16(), 201, "writing {container}/{blob}");
        etag_of(&answer)
    }

    /// The blob's bytes and ETag as stored, or `None` when it does not exist.
    pub async fn blob(&self, container: &str, blob: &str) -> Option<(Vec<u8>, String)> {
        let answer = self
            .http
            .get(self.blob_url(container, blob))
            .header("x-ms-version", SAS_VERSION)
            .send()
            .await
            .expect("Azurite answers");
        match answer.status().as_u16() {
            404 => None,
            200 => {
                let etag = etag_of(&answer);
                let bytes = answer.bytes().await.expect("read the blob");
                Some((bytes.to_vec(), etag))
            }
            status => panic!("reading {container}/{blob} answered {status}"),
        }
    }

    /// An account SAS allowing only the creation of containers, for [`container`](Self::container).
    fn account_sas(&self) -> String {
        let expiry = format_expiry(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1));
        let (permissions, services, resource_types) = ("c", "b", "c");
        let string_to_sign = [
            ACCOUNT,
            permissions,
            services,
            resource_types,
            "", // start
            &expiry,
            "", // IP range
            "", // protocol
            SAS_VERSION,
            "", // encryption scope
            "",
        ]
        .join("\n");
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", SAS_VERSION)
            .append_pair("ss", services)
            .append_pair("srt", resource_types)
            .append_pair("sp", permissions)
            .append_pair("se", &expiry)
            .append_pair("sig", &sign(&string_to_sign))
            .finish()
    }
}

/// A service SAS for a container (`sr=c`), signed as documented for versions from 2020-12-06.
pub fn service_sas(container: &str, permissions: &str, expiry: jiff::Timestamp) -> String {
    let expiry = format_expiry(expiry);
    let resource = "c";
    let canonical = format!("/blob/{ACCOUNT}/{container}");
    let string_to_sign = [
        permissions,
        "", // start
        &expiry,
        &canonical,
        "", // stored access policy
        "", // IP range
        "", // protocol
        SAS_VERSION,
        resource,
        "", // snapshot time
        "", // encryption scope
        "", // Cache-Control
        "", // Content-Disposition
        "", // Content-Encoding
        "", // Content-Language
        "", // Content-Type
    ]
    .join("\n");
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("sr", resource)
        .append_pair("sp", permissions)
        .append_pair("se", &expiry)
        .append_pair("sig", &sign(&string_to_sign))
        .finish()
}

/// The `sig` value of a SAS query, decoded.
pub fn signature_of(sas: &str) -> String {
    url::form_urlencoded::parse(sas.as_bytes())
        .find(|(name, _)| name == "sig")
        .map(|(_, value)| value.into_owned())
        .expect("a SAS has a signature")
}

fn format_expiry(expiry: jiff::Timestamp) -> String {
    expiry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn sign(string_to_sign: &str) -> String {
    let key = BASE64
        .decode(ACCOUNT_KEY)
        .expect("the account key is base64");
    BASE64.encode(hmac_sha256(&key, string_to_sign.as_bytes()))
}

/// HMAC-SHA256 (RFC 2104) over the sha2 the crate already uses.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|key_byte| key_byte ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn etag_of(answer: &reqwest::Response) -> String {
    answer
        .headers()
        .get("etag")
        .and_then(|etag| etag.to_str().ok())
        .expect("Azurite sends an ETag")
        .to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut file| file.read_to_string(&mut text));
    text
}

/// The `azurite-blob` program: `AZURITE_BIN`, or the copy under `target/test-tools`, installed
/// with npm the first time, once per process; a file lock keeps test processes running at once
/// (two `cargo test` runs of one checkout) from installing it twice over each other.
fn azurite_blob() -> PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            if let Some(program) = std::env::var_os("AZURITE_BIN") {
                return PathBuf::from(program);
            }
            // Under the manifest's target/, not CARGO_TARGET_DIR, so `cargo test` and .ci/run
            // share one copy whatever the build folder.
            let tools = manifest_dir().join("target/test-tools/azurite");
            let name = if cfg!(windows) {
                "azurite-blob.cmd"
            } else {
                "azurite-blob"
            };
            let program = tools.join("node_modules/.bin").join(name);
            if program.exists() {
                return program;
            }
            std::fs::create_dir_all(&tools).expect("create target/test-tools/azurite");
            let lock = File::create(tools.join("install.lock")).expect("create the install lock");
            lock.lock()
                .expect("wait for another test installing Azurite");
            if !program.exists() {
                install(&tools);
            }
            assert!(
                program.exists(),
                "npm installed {PACKAGE} into {}, but {} is missing",
                tools.display(),
                program.display()
            );
            program
        })
        .clone()
}

fn install(tools: &Path) {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let output = Command::new(npm)
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(tools)
        .arg(PACKAGE)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "the blob store tests run Azurite, installed with npm, but `{npm}` cannot run \
                 ({error}). Install Node.js 18 or later with npm (Debian or Ubuntu: `apt-get \
                 install nodejs npm`; elsewhere see the Node.js download page), or set \
                 AZURITE_BIN to an azurite-blob program"
            )
        });
    assert!(
        output.status.success(),
        "`npm install {PACKAGE}` into {} failed ({}):\n{}\n{}",
        tools.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
