//! The ledger as one JSON blob in Azure Blob Storage, reached through a SAS URL. A write is
//! conditional on the ETag the run read (`If-Match`), or on the blob still not existing
//! (`If-None-Match: *`), so two runs never overwrite each other: the later one gets
//! [`StateError::Conflict`], exactly as with the file store.
//!
//! It speaks through the official SDK (`azure_storage_blob`) over imagegen's own HTTP client
//! ([`http::client`]: user agent, timeouts). The SDK's pipeline owns each request, so it cannot
//! be handed to [`http::send`]; its retries are set from the same [`RetryPolicy`] instead.
//!
//! The SAS is a bearer secret. It is kept in a [`SecretString`], put into a URL only when a
//! request is built, and scrubbed from every text that could echo it (service messages,
//! transport errors, whose URLs carry the query) before that text reaches an error.

use std::fmt;
use std::sync::{Arc, OnceLock};

use azure_core::error::ErrorKind;
use azure_core::http::{
    ClientOptions, Etag, ExponentialRetryOptions, RequestContent, RetryOptions, Transport,
    UserAgentOptions,
};
use azure_storage_blob::models::{
    AppendBlobClientAppendBlockOptions, AppendBlobClientAppendBlockResultHeaders,
    AppendBlobClientCreateOptions, AppendBlobClientCreateResultHeaders,
    BlobClientGetPropertiesResultHeaders, BlobClientUploadOptions,
};
use azure_storage_blob::{BlobClient, BlobClientOptions, StorageError};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::journal::{self, Folded, Header, Record};
use super::{
    Base, LEDGER_FORMAT_VERSION, Ledger, MissingLedger, Revision, Rewrite, Snapshot, StateError,
    assemble, current_snapshot_form, parse_snapshot, snapshot_form,
};

/// How many times a reader reads again when the snapshot was replaced while it read the
/// journal (another run's compaction).
const READ_ATTEMPTS: usize = 5;
use crate::http::{self, RetryPolicy, Timeouts};

/// Environment variable that chooses the ledger: a path, or a blob URL.
pub const STATE_VAR: &str = "IMAGEGEN_STATE";
/// Environment variable holding the SAS when the blob URL in [`STATE_VAR`] has no query, so a
/// pipeline can keep the URL in plain sight and the token in a secret.
pub const SAS_VAR: &str = "IMAGEGEN_STATE_SAS";
/// What a SAS must allow: reading the ledger, creating it the first time, and replacing it.
pub const NEEDED_PERMISSIONS: &str = "read, create and write (sp=rcw)";

/// Shown instead of the SAS or its signature wherever a text would have held them.
const REDACTED: &str = "[redacted]";

/// What went wrong with a ledger blob. Every variant names the blob by its URL without the
/// query; none holds the SAS.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{STATE_VAR} `{shown}` is not a usable blob URL: {reason}")]
    BadUrl { shown: String, reason: String },

    #[error(
        "the ledger {location} has no SAS: give it as the URL's query \
         (`{location}?sv=...&sig=...`) or in {SAS_VAR}"
    )]
    MissingSas { location: String },

    #[error(
        "the SAS for the ledger {location} has no signature (`sig=`): copy the whole SAS token \
         into the URL's query or into {SAS_VAR}"
    )]
    UnsignedSas { location: String },

    #[error("cannot prepare requests to the ledger {location}: {reason}")]
    Client { location: String, reason: String },

    #[error(
        "Azure Storage refused the SAS for the ledger {location} ({status} {code}: {message}). \
         The SAS may have expired, been revoked, or be signed for another account or container, \
         or lack a permission: the ledger needs {NEEDED_PERMISSIONS}. Issue a new SAS and set it \
         in {STATE_VAR}'s query or in {SAS_VAR}"
    )]
    Refused {
        location: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error(
        "the container `{container}` of the ledger {location} does not exist ({status} \
         ContainerNotFound); create it first: imagegen creates the ledger blob, never its \
         container"
    )]
    ContainerMissing {
        location: String,
        container: String,
        status: u16,
    },

    #[error(
        "{operation} the ledger {location} failed: Azure Storage answered {status} {code}: \
         {message}; {}",
        status_hint(*status)
    )]
    Status {
        operation: Operation,
        location: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error(
        "{operation} the ledger {location} failed: {cause}; check the account name in \
         {STATE_VAR} and the network"
    )]
    Transport {
        operation: Operation,
        location: String,
        cause: String,
    },

    #[error(
        "{operation} the ledger {location}: the answer has no ETag; check that {STATE_VAR} is a \
         Blob Storage URL and that no proxy drops headers"
    )]
    NoEtag {
        operation: Operation,
        location: String,
    },
}

/// Which request failed, as errors say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "reading",
            Self::Write => "writing",
        })
    }
}

/// What to check after an answer no other variant explains.
fn status_hint(status: u16) -> &'static str {
    if status >= 500 {
        "the service kept failing through every retry: run again later"
    } else {
        "check the container and blob names in IMAGEGEN_STATE"
    }
}

/// Whether `IMAGEGEN_STATE` names a blob rather than a file.
pub fn is_blob_url(text: &str) -> bool {
    let starts_with = |prefix: &str| {
        text.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    };
    starts_with("https://") || starts_with("http://")
}

/// The ledger kept as one JSON blob.
pub struct BlobStore {
    /// The blob's URL without query or fragment: the only form people ever see.
    location: Url,
    container: String,
    sas: SecretString,
    retry: RetryPolicy,
    timeouts: Timeouts,
    missing: MissingLedger,
    /// Built at the first request, then shared by every request so connections are reused.
    http: OnceLock<reqwest::Client>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("location", &self.display())
            .field("sas", &REDACTED)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl BlobStore {
    /// Reads `url` (from `IMAGEGEN_STATE`):
    /// `https://<account>.blob.core.windows.net/<container>/<path/to/blob>?<SAS>`, or plain http
    /// on loopback for a local emulator, whose first path segment is the account. Without a
    /// query the SAS is `sas_from_env` (the caller reads `IMAGEGEN_STATE_SAS`). Sends nothing.
    pub fn from_url(url: &str, sas_from_env: Option<&str>) -> Result<BlobStore, StateError> {
        let url = url.trim();
        let bad = |reason: &str| BlobError::BadUrl {
            shown: shown_form(url),
            reason: reason.to_owned(),
        };
        let mut location = Url::parse(url).map_err(|error| bad(&error.to_string()))?;
        if !location.username().is_empty() || location.password().is_some() {
            return Err(
                bad("it must not hold a user name or password; the SAS is the credential").into(),
            );
        }
        let path_style = match location.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
            None => return Err(bad("it has no host").into()),
        };
        match location.scheme() {
            "https" => {}
            "http" if is_loopback(&location) => {}
            "http" => {
                return Err(bad(
                    "plain http is accepted only for a local emulator (127.0.0.1, ::1 or \
                     localhost), since the SAS would cross the network in clear; use https",
                )
                .into());
            }
            _ => return Err(bad("it must start with https://").into()),
        }
        let segments: Vec<&str> = location
            .path_segments()
            .map(Iterator::collect)
            .unwrap_or_default();
        // An emulator (or any address without an account in its host name) names the account
        // first: http://127.0.0.1:10000/devstoreaccount1/<container>/<blob>.
        let container_index = usize::from(path_style);
        let blob_named = segments.len() > container_index + 1
            && segments[container_index..]
                .iter()
                .all(|segment| !segment.is_empty());
        if !blob_named {
            return Err(bad(if path_style {
                "it must name an account, a container and a blob, like \
                 http://127.0.0.1:10000/<account>/<container>/<path/to/state.json>"
            } else {
                "it must name a container and a blob, like \
                 https://<account>.blob.core.windows.net/<container>/<path/to/state.json>"
            })
            .into());
        }
        let container = segments[container_index].to_owned();
        let query = location
            .query()
            .filter(|query| !query.is_empty())
            .map(str::to_owned);
        location.set_query(None);
        location.set_fragment(None);
        let sas = query
            .or_else(|| {
                sas_from_env
                    .map(|sas| sas.trim().trim_start_matches('?'))
                    .filter(|sas| !sas.is_empty())
                    .map(str::to_owned)
            })
            .ok_or_else(|| BlobError::MissingSas {
                location: location.to_string(),
            })?;
        if signature_values(&sas).is_empty() {
            return Err(BlobError::UnsignedSas {
                location: location.to_string(),
            }
            .into());
        }
        Ok(BlobStore {
            location,
            container,
            sas: SecretString::from(sas),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            missing: MissingLedger::Empty,
            http: OnceLock::new(),
        })
    }

    /// What this store takes a ledger that does not exist for.
    pub fn missing(&self) -> MissingLedger {
        self.missing
    }

    /// The same store, treating a missing blob as `missing` says.
    pub fn with_missing(mut self, missing: MissingLedger) -> Self {
        self.missing = missing;
        self
    }

    /// The same store, trying requests again under `retry` instead of the default policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The blob's URL without its query (so without the SAS), as errors and logs show it.
    pub fn display(&self) -> String {
        self.location.to_string()
    }

    /// Reads the ledger with the revision (the blob's ETag) a later [`save`](Self::save) must
    /// find; a missing blob is an empty ledger whose revision says "does not exist" (unless
    /// the store refuses a missing ledger). The journal blob beside it is folded in.
    pub async fn load(&self) -> Result<Snapshot, StateError> {
        self.load_for(true).await
    }

    /// Reads the ledger only to look at it.
    pub async fn read(&self) -> Result<Ledger, StateError> {
        Ok(self.load_for(false).await?.ledger)
    }

    /// The journal blob's URL: the ledger blob's name with `.journal` after it.
    fn journal_location(&self) -> Url {
        let mut location = self.location.clone();
        let path = journal::journal_name(location.path());
        location.set_path(&path);
        location
    }

    /// Reads the snapshot, then the journal, then the snapshot's ETag again: a compaction by
    /// another run in between is read again, since the journal may belong to the new snapshot.
    async fn load_for(&self, for_writer: bool) -> Result<Snapshot, StateError> {
        let journal_location = self.journal_location();
        let mut attempt = 1;
        loop {
            let snapshot = self.download_at(&self.location).await?;
            let journal = self.download_at(&journal_location).await?;
            let now = self.etag_at(&self.location).await?;
            if now.as_deref() != snapshot.as_ref().map(|(_, etag)| etag.as_str())
                && attempt < READ_ATTEMPTS
            {
                attempt += 1;
                continue;
            }
            let (ledger, mut base) = assemble(
                &self.display(),
                snapshot.as_ref().map(|(bytes, _)| bytes.as_slice()),
                journal.as_ref().map(|(bytes, _)| bytes.as_slice()),
                self.missing,
                for_writer,
            )?;
            base.journal_tag = journal.map(|(_, etag)| etag);
            let revision = match snapshot {
                Some((_, etag)) => Revision::tagged(etag),
                None => Revision::absent(),
            };
            return Ok(Snapshot {
                ledger,
                revision,
                base,
            });
        }
    }

    /// Appends `records` to the journal blob, on the condition that it is still the one read
    /// (its ETag). The first append after a compaction (or to a ledger of format 1, or to none)
    /// writes the snapshot `durable` first, then starts a journal. Returns the bytes written.
    pub(crate) async fn append(
        &self,
        revision: &mut Revision,
        base: &mut Base,
        durable: &Ledger,
        records: &[Record],
    ) -> Result<u64, StateError> {
        let mut written = 0;
        if base.needs_start() {
            if base.snapshot_id.is_none() || base.snapshot_version < LEDGER_FORMAT_VERSION {
                written += self.write_snapshot(revision, base, durable, None).await?;
            }
            let snapshot_id = base
                .snapshot_id
                .clone()
                .expect("a journal starts after its snapshot is written");
            let header = Header::new(&snapshot_id);
            let journal = self
                .blob_client_at(&self.journal_location())?
                .append_blob_client();
            let mut create = AppendBlobClientCreateOptions {
                blob_content_type: Some("application/x-ndjson".to_owned()),
                ..Default::default()
            };
            match (&base.journal_tag, base.journal_exists) {
                (Some(etag), true) => create.if_match = Some(Etag::from(etag.clone())),
                _ => create.if_none_match = Some(Etag::from("*")),
            }
            let created = journal
                .create(Some(create))
                .await
                .map_err(|error| self.write_error(error))?;
            let etag = created
                .etag()
                .ok()
                .flatten()
                .ok_or_else(|| self.no_etag())?
                .to_string();
            base.journal_exists = true;
            base.journal_tag = Some(etag);
            let mut bytes = header.line();
            bytes.extend(journal::record_lines(records, durable));
            let appended = self.append_block(base, bytes).await?;
            base.journal = Some(journal::Tail {
                header,
                valid_bytes: appended,
                records: records.len(),
            });
            return Ok(written + appended);
        }
        let bytes = journal::record_lines(records, durable);
        written += self.append_block(base, bytes).await?;
        let tail = base
            .journal
            .as_mut()
            .expect("a journal that needs no start exists");
        tail.valid_bytes += written;
        tail.records += records.len();
        Ok(written)
    }

    async fn append_block(&self, base: &mut Base, bytes: Vec<u8>) -> Result<u64, StateError> {
        let journal = self
            .blob_client_at(&self.journal_location())?
            .append_blob_client();
        let length = bytes.len() as u64;
        let options = AppendBlobClientAppendBlockOptions {
            if_match: base.journal_tag.clone().map(Etag::from),
            ..Default::default()
        };
        let appended = journal
            .append_block(RequestContent::from(bytes), length, Some(options))
            .await
            .map_err(|error| self.write_error(error))?;
        base.journal_tag = Some(
            appended
                .etag()
                .ok()
                .flatten()
                .ok_or_else(|| self.no_etag())?
                .to_string(),
        );
        Ok(length)
    }

    /// Writes `durable` as the snapshot, folding the journal, then deletes the journal unless
    /// another run appended to it meanwhile (the snapshot says how much of it it folded).
    pub(crate) async fn compact(
        &self,
        revision: &mut Revision,
        base: &mut Base,
        durable: &Ledger,
    ) -> Result<u64, StateError> {
        let folded = base.journal.as_ref().map(|tail| Folded {
            id: tail.header.id.clone(),
            bytes: tail.valid_bytes,
        });
        let written = self
            .write_snapshot(revision, base, durable, folded.as_ref())
            .await?;
        if base.journal_exists {
            // Emptied by creating it again, which the SAS's create and write allow (deleting
            // would need a delete permission), on the condition that no run appended since.
            let journal = self
                .blob_client_at(&self.journal_location())?
                .append_blob_client();
            let options = AppendBlobClientCreateOptions {
                blob_content_type: Some("application/x-ndjson".to_owned()),
                if_match: base.journal_tag.clone().map(Etag::from),
                ..Default::default()
            };
            match journal.create(Some(options)).await {
                Ok(created) => {
                    base.journal_tag = created.etag().ok().flatten().map(|e| e.to_string())
                }
                Err(error) => tracing::info!(
                    "the journal of {} was left in place ({}); the snapshot says how much of it \
                     it holds",
                    self.display(),
                    self.scrub(&error.to_string())
                ),
            }
        }
        Ok(written)
    }

    async fn write_snapshot(
        &self,
        revision: &mut Revision,
        base: &mut Base,
        durable: &Ledger,
        folded: Option<&Folded>,
    ) -> Result<u64, StateError> {
        let bytes = current_snapshot_form(durable, folded);
        *revision = self.save(revision, &bytes).await?;
        base.snapshot_id = Some(journal::snapshot_id(&bytes));
        base.snapshot_version = LEDGER_FORMAT_VERSION;
        base.snapshot_bytes = bytes.len() as u64;
        base.journal = None;
        Ok(bytes.len() as u64)
    }

    /// Keeps a damaged ledger blob as `<name>.damaged-<UTC time>` beside it, then replaces it
    /// with an empty ledger on the condition that it is still the damaged blob read (its ETag),
    /// so that an import can restore it. Returns the kept copy's URL (without the SAS). A
    /// damaged ledger is never deleted: it may hold the only record of a job.
    pub async fn set_aside_damaged(&self) -> Result<String, StateError> {
        let Some((bytes, etag)) = self.download_at(&self.location).await? else {
            return Err(StateError::Missing {
                location: self.display(),
            });
        };
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        let mut kept = self.location.clone();
        kept.set_path(&format!("{}.damaged-{stamp}", self.location.path()));
        let options = BlobClientUploadOptions {
            blob_content_type: Some("application/json".to_owned()),
            if_none_match: Some(Etag::from("*")),
            ..Default::default()
        };
        self.blob_client_at(&kept)?
            .upload(RequestContent::from(bytes), Some(options))
            .await
            .map_err(|error| self.write_error(error))?;
        self.save(
            &Revision::tagged(etag),
            &super::written_form(&Ledger::default()),
        )
        .await?;
        Ok(kept.to_string())
    }

    fn write_error(&self, error: azure_core::Error) -> StateError {
        // A journal deleted by another run's compaction is a race lost, as a changed ETag is.
        if lost_the_race(&error) || error.http_status().map(u16::from) == Some(404) {
            StateError::Conflict {
                location: self.display(),
            }
        } else {
            self.explain(Operation::Write, error).into()
        }
    }

    fn no_etag(&self) -> StateError {
        BlobError::NoEtag {
            operation: Operation::Write,
            location: self.display(),
        }
        .into()
    }

    /// Replaces the ledger with `ledger`, provided the blob still has the ETag `expected` holds
    /// (or still does not exist). Returns the new ETag as the next write's revision.
    ///
    /// A write whose answer was lost and that is then tried again finds its own ETag gone and
    /// reports a conflict: that errs on the safe side, since the next run reads what it wrote.
    pub async fn save(&self, expected: &Revision, bytes: &[u8]) -> Result<Revision, StateError> {
        let bytes = bytes.to_vec();
        let mut options = BlobClientUploadOptions {
            blob_content_type: Some("application/json".to_owned()),
            ..Default::default()
        };
        match expected.tag() {
            Some(etag) => options.if_match = Some(Etag::from(etag)),
            None => options.if_none_match = Some(Etag::from("*")),
        }
        let client = self.blob_client()?;
        match client
            .upload(RequestContent::from(bytes), Some(options))
            .await
        {
            Ok(answer) => answer
                .etag
                .map(|etag| Revision::tagged(etag.to_string()))
                .ok_or_else(|| {
                    BlobError::NoEtag {
                        operation: Operation::Write,
                        location: self.display(),
                    }
                    .into()
                }),
            Err(error) if lost_the_race(&error) => Err(StateError::Conflict {
                location: self.display(),
            }),
            Err(error) => Err(self.explain(Operation::Write, error).into()),
        }
    }

    /// The ledger as read, or `None` when there is no blob (which [`read`](Self::read) takes
    /// for an empty ledger).
    pub async fn read_existing(&self) -> Result<Option<Ledger>, StateError> {
        if self.etag_at(&self.location).await?.is_none() {
            return Ok(None);
        }
        self.read().await.map(Some)
    }

    /// Saves the ledger unchanged, as a run saves it: on the condition that the blob still has
    /// the ETag read (`If-Match`); then reads it back. It shows that the SAS lets a run write
    /// the ledger, and changes none of its bytes (only its ETag and time). A missing blob is
    /// left missing.
    pub async fn rewrite_unchanged(&self) -> Result<Rewrite, StateError> {
        let Some((before, etag)) = self.download_at(&self.location).await? else {
            return Ok(Rewrite::Missing);
        };
        let (ledger, folded) = parse_snapshot(&self.display(), &before)?;
        if snapshot_form(&ledger, folded.as_ref()) != before {
            return Ok(Rewrite::NotAsWritten);
        }
        self.save(&Revision::tagged(etag), &before).await?;
        Ok(match self.download_at(&self.location).await? {
            Some((after, _)) if after == before => Rewrite::Unchanged {
                bytes: before.len(),
            },
            _ => Rewrite::ChangedAfter,
        })
    }

    /// What the SAS says of itself (never its signature).
    pub fn sas_terms(&self) -> SasTerms {
        SasTerms::parse(self.sas.expose_secret())
    }

    /// The ETag of the blob at `location`, or `None` when it does not exist.
    async fn etag_at(&self, location: &Url) -> Result<Option<String>, StateError> {
        let client = self.blob_client_at(location)?;
        match client.get_properties(None).await {
            Ok(answer) => Ok(answer.etag().ok().flatten().map(|etag| etag.to_string())),
            Err(error) if error.http_status().map(u16::from) == Some(404) => Ok(None),
            Err(error) => Err(self.explain(Operation::Read, error).into()),
        }
    }

    /// The bytes and ETag of the blob at `location`, or `None` when it does not exist.
    async fn download_at(&self, location: &Url) -> Result<Option<(Vec<u8>, String)>, StateError> {
        let client = self.blob_client_at(location)?;
        let answer = match client.download(None).await {
            Ok(answer) => answer,
            Err(error) if service_code(&error).as_deref() == Some("BlobNotFound") => {
                return Ok(None);
            }
            Err(error) => return Err(self.explain(Operation::Read, error).into()),
        };
        let etag = answer
            .properties
            .etag
            .map(|etag| etag.to_string())
            .ok_or_else(|| BlobError::NoEtag {
                operation: Operation::Read,
                location: self.display(),
            })?;
        let bytes = answer
            .body
            .collect()
            .await
            .map_err(|error| self.explain(Operation::Read, error))?;
        Ok(Some((bytes.to_vec(), etag)))
    }

    fn blob_client(&self) -> Result<BlobClient, BlobError> {
        self.blob_client_at(&self.location)
    }

    /// A client for the blob at `location` (the ledger, or its journal beside it).
    fn blob_client_at(&self, location: &Url) -> Result<BlobClient, BlobError> {
        let client_error = |reason: String| BlobError::Client {
            location: self.display(),
            reason: self.scrub(&reason),
        };
        let http = match self.http.get() {
            Some(http) => http,
            None => {
                let built = http::client(self.timeouts)
                    .map_err(|error| client_error(http::error_summary(&error)))?;
                self.http.get_or_init(|| built)
            }
        };
        let mut url = location.clone();
        url.set_query(Some(self.sas.expose_secret()));
        let options = BlobClientOptions {
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(http.clone()))),
                retry: sdk_retry(&self.retry),
                user_agent: UserAgentOptions {
                    application_id: Some(application_id()),
                },
                ..Default::default()
            },
            ..Default::default()
        };
        BlobClient::new(url, None, Some(options)).map_err(|error| client_error(error.to_string()))
    }

    /// Turns a failed request into an error that says what to check.
    fn explain(&self, operation: Operation, error: azure_core::Error) -> BlobError {
        let location = self.display();
        let Some(status) = error.http_status().map(u16::from) else {
            return BlobError::Transport {
                operation,
                location,
                cause: self.scrub(&transport_cause(&error)),
            };
        };
        let code = service_code(&error).unwrap_or_else(|| "(no error code)".to_owned());
        if status == 403 {
            BlobError::Refused {
                location,
                status,
                code,
                message: self.scrub(&service_message(error)),
            }
        } else if status == 404 && code == "ContainerNotFound" {
            BlobError::ContainerMissing {
                location,
                container: self.container.clone(),
                status,
            }
        } else {
            BlobError::Status {
                operation,
                location,
                status,
                code,
                message: self.scrub(&service_message(error)),
            }
        }
    }

    /// `text` with the SAS and its signature (as sent, and decoded) replaced.
    fn scrub(&self, text: &str) -> String {
        let sas = self.sas.expose_secret();
        let mut text = text.replace(sas, REDACTED);
        for signature in signature_values(sas) {
            text = text.replace(&signature, REDACTED);
        }
        text
    }
}

/// What a SAS says of itself in its query, without its signature: nothing secret. The service
/// alone knows whether it holds; these terms tell ahead of a request what it will refuse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SasTerms {
    /// `sp`: one letter per permission (`r` read, `c` create, `w` write, ...).
    pub permissions: Option<String>,
    /// `se`: when it stops working, as written.
    pub expiry: Option<String>,
    /// `si`: the stored access policy it refers to, which may hold the permissions and the
    /// expiry instead of the SAS.
    pub policy: Option<String>,
}

impl SasTerms {
    /// The terms of a SAS query (with or without its leading `?`).
    pub fn parse(sas: &str) -> Self {
        let mut terms = Self::default();
        for (name, value) in url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes()) {
            let value = Some(value.trim().to_owned()).filter(|value| !value.is_empty());
            match name.as_ref() {
                "sp" => terms.permissions = value,
                "se" => terms.expiry = value,
                "si" => terms.policy = value,
                _ => {}
            }
        }
        terms
    }

    /// When the SAS expires, if it says: `2030-01-31T00:00:00Z`, without seconds, or a date
    /// alone (midnight UTC). An error quotes the value, which is no secret.
    pub fn expires_at(&self) -> Option<Result<jiff::Timestamp, String>> {
        let written = self.expiry.as_deref()?;
        let parsed = written.parse::<jiff::Timestamp>().or_else(|error| {
            written
                .parse::<jiff::civil::Date>()
                .and_then(|date| date.to_zoned_datetime(jiff::tz::TimeZone::UTC))
                .map(|midnight| midnight.timestamp())
                .map_err(|_| error)
        });
        Some(parsed.map_err(|error| format!("se={written} is not a time ({error})")))
    }

    /// The permissions the ledger needs (read, create, write) that `sp` leaves out, by name;
    /// `None` when the SAS names no permissions.
    pub fn missing_permissions(&self) -> Option<Vec<&'static str>> {
        let granted = self.permissions.as_deref()?;
        Some(
            [('r', "read"), ('c', "create"), ('w', "write")]
                .into_iter()
                .filter(|(letter, _)| !granted.contains(*letter))
                .map(|(_, name)| name)
                .collect(),
        )
    }
}

/// A URL as an error may repeat it: without query, fragment, user name or password, all of
/// which may hold a secret.
fn shown_form(url: &str) -> String {
    let before_query = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = before_query.split_once("://") else {
        return before_query.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => before_query.to_owned(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

/// The values of `sig` in a SAS query, as written and percent-decoded; empty ones are left out.
fn signature_values(sas: &str) -> Vec<String> {
    let mut values = Vec::new();
    for pair in sas.split('&') {
        let Some(written) = pair.strip_prefix("sig=").filter(|value| !value.is_empty()) else {
            continue;
        };
        values.push(written.to_owned());
        for (name, decoded) in url::form_urlencoded::parse(pair.as_bytes()) {
            if name == "sig" && !decoded.is_empty() && decoded != written {
                values.push(decoded.into_owned());
            }
        }
    }
    values
}

/// The SDK's retries, bounded like every other request of imagegen.
fn sdk_retry(policy: &RetryPolicy) -> RetryOptions {
    if policy.max_attempts <= 1 {
        return RetryOptions::none();
    }
    let duration = |value: std::time::Duration| {
        azure_core::time::Duration::try_from(value).unwrap_or(azure_core::time::Duration::MAX)
    };
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: duration(policy.initial_backoff),
        max_retries: policy.max_attempts - 1,
        max_total_elapsed: duration(policy.max_elapsed),
        max_delay: duration(policy.max_backoff),
    })
}

/// imagegen's name in the SDK's user agent. The SDK panics on more than 24 characters or on
/// one outside an HTTP token (so no `/`): a semantic version holds only tokens, and a long one
/// falls back to the bare name.
fn application_id() -> String {
    const WITH_VERSION: &str = concat!("imagegen-", env!("CARGO_PKG_VERSION"));
    const LIMIT: usize = 24;
    if WITH_VERSION.len() <= LIMIT {
        WITH_VERSION.to_owned()
    } else {
        "imagegen".to_owned()
    }
}

/// Whether a refused write means "someone else wrote first": the ETag no longer matches, or
/// the blob this run meant to create exists. Other 409s and 412s (such as a lease) are not.
fn lost_the_race(error: &azure_core::Error) -> bool {
    let code = service_code(error);
    match error.http_status().map(u16::from) {
        Some(412) => matches!(code.as_deref(), None | Some("ConditionNotMet")),
        Some(409) => code.as_deref() == Some("BlobAlreadyExists"),
        _ => false,
    }
}

/// The `x-ms-error-code` of an HTTP error answer.
fn service_code(error: &azure_core::Error) -> Option<String> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
        _ => None,
    }
}

/// The service's message (its first line: the rest is a request id and a time), with the
/// authentication detail when there is one.
fn service_message(error: azure_core::Error) -> String {
    let Ok(storage) = StorageError::try_from(error) else {
        return "(no message)".to_owned();
    };
    let mut message = storage
        .message
        .as_deref()
        .and_then(|message| message.lines().next())
        .unwrap_or("(no message)")
        .trim()
        .to_owned();
    if let Some(detail) = storage.authentication_error_detail.as_deref() {
        message.push_str(" (");
        message.push_str(detail.trim());
        message.push(')');
    }
    message
}

/// A transport failure in a few words: the reqwest error's summary (which leaves out its URL),
/// or else the chain of messages.
fn transport_cause(error: &azure_core::Error) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = current {
        if let Some(transport) = cause.downcast_ref::<reqwest::Error>() {
            return http::error_summary(transport);
        }
        current = cause.source();
    }
    crate::output::error_chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::written_form;

    const SIGNATURE: &str = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";
    const DECODED_SIGNATURE: &str = "c2VjcmV0LXNpZ25hdHVyZQ==";

    fn sas() -> String {
        format!("sv=2020-12-06&sr=c&sp=rcw&se=2030-01-01T00%3A00%3A00Z&sig={SIGNATURE}")
    }

    fn store(url: &str) -> BlobStore {
        BlobStore::from_url(url, None).unwrap()
    }

    fn error_of(url: &str, sas_from_env: Option<&str>) -> String {
        let error = BlobStore::from_url(url, sas_from_env).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(
            !text.contains(DECODED_SIGNATURE) && !text.contains(SIGNATURE),
            "{text}"
        );
        error.to_string()
    }

    #[test]
    fn an_https_blob_url_is_shown_without_its_query() {
        let store = store(&format!(
            "https://acct.blob.core.windows.net/ledgers/imagegen/state.json?{}",
            sas()
        ));
        assert_eq!(
            store.display(),
            "https://acct.blob.core.windows.net/ledgers/imagegen/state.json"
        );
        assert_eq!(store.container, "ledgers");
        assert_eq!(store.sas.expose_secret(), sas());
    }

    #[test]
    fn plain_http_is_accepted_only_on_loopback() {
        for host in [
            "127.0.0.1:10000",
            "[::1]:10000",
            "localhost:10000",
            "LOCALHOST",
        ] {
            let store = store(&format!(
                "http://{host}/devstoreaccount1/c1/state.json?{}",
                sas()
            ));
            assert_eq!(store.container, "c1", "{host}");
        }
        for host in [
            "10.0.0.4",
            "acct.blob.core.windows.net",
            "127.0.0.1.example.com",
        ] {
            let message = error_of(&format!("http://{host}/c1/state.json?{}", sas()), None);
            assert!(
                message.contains("plain http is accepted only for a local emulator"),
                "{message}"
            );
        }
        let message = error_of(&format!("ftp://acct/c1/state.json?{}", sas()), None);
        assert!(message.contains("must start with https://"), "{message}");
    }

    #[test]
    fn a_url_without_a_query_takes_the_sas_from_its_own_value() {
        let url = "https://acct.blob.core.windows.net/c1/state.json";
        let store = BlobStore::from_url(url, Some(&format!(" ?{}\n", sas()))).unwrap();
        assert_eq!(store.sas.expose_secret(), sas());
        // The URL's own query wins over the separate value.
        let store =
            BlobStore::from_url(&format!("{url}?{}", sas()), Some("sv=1&sig=other")).unwrap();
        assert_eq!(store.sas.expose_secret(), sas());
    }

    #[test]
    fn without_any_sas_the_error_names_both_places_to_put_it() {
        for sas_from_env in [None, Some(""), Some("  ")] {
            let message = error_of(
                "https://acct.blob.core.windows.net/c1/state.json",
                sas_from_env,
            );
            assert_eq!(
                message,
                "the ledger https://acct.blob.core.windows.net/c1/state.json has no SAS: give it \
                 as the URL's query (`https://acct.blob.core.windows.net/c1/state.json?sv=...&sig=...`) \
                 or in IMAGEGEN_STATE_SAS"
            );
        }
    }

    #[test]
    fn a_sas_without_a_signature_is_refused() {
        let message = error_of(
            "https://acct.blob.core.windows.net/c1/state.json?sv=2020-12-06&sp=rcw",
            None,
        );
        assert!(message.contains("has no signature (`sig=`)"), "{message}");
    }

    #[test]
    fn the_url_must_name_a_container_and_a_blob() {
        for url in [
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net/c1",
            "https://acct.blob.core.windows.net/c1/",
            "https://acct.blob.core.windows.net/c1/folder/",
        ] {
            let message = error_of(&format!("{url}?{}", sas()), None);
            assert!(
                message.contains("must name a container and a blob"),
                "{url}: {message}"
            );
            assert!(message.contains(&format!("`{url}`")), "{message}");
        }
        let message = error_of(
            &format!("http://127.0.0.1:10000/devstoreaccount1/c1?{}", sas()),
            None,
        );
        assert!(
            message.contains("must name an account, a container and a blob"),
            "{message}"
        );
    }

    #[test]
    fn errors_about_the_url_never_repeat_its_query_or_credentials() {
        let message = error_of(
            &format!("https://user:hunter2@acct/c1/state.json?{}", sas()),
            None,
        );
        assert_eq!(
            message,
            "IMAGEGEN_STATE `https://acct/c1/state.json` is not a usable blob URL: it must not \
             hold a user name or password; the SAS is the credential"
        );
        let message = error_of(&format!("https://[oops/c1/state.json?{}", sas()), None);
        assert!(
            message.starts_with("IMAGEGEN_STATE `https://[oops/c1/state.json`"),
            "{message}"
        );
    }

    #[test]
    fn debug_output_hides_the_sas() {
        let store = store(&format!(
            "https://acct.blob.core.windows.net/c1/state.json?{}",
            sas()
        ));
        let debug = format!("{store:?} {store:#?}");
        assert!(
            !debug.contains(SIGNATURE) && !debug.contains("sig="),
            "{debug}"
        );
        assert!(
            debug.contains("https://acct.blob.core.windows.net/c1/state.json"),
            "{debug}"
        );
    }

    #[test]
    fn scrubbing_removes_the_signature_as_sent_and_decoded() {
        let store = store(&format!(
            "https://acct.blob.core.windows.net/c1/state.json?{}",
            sas()
        ));
        let scrubbed = store.scrub(&format!(
            "GET https://acct/c1/state.json?{} sig {DECODED_SIGNATURE} and {SIGNATURE}",
            sas()
        ));
        assert!(!scrubbed.contains(DECODED_SIGNATURE), "{scrubbed}");
        assert!(!scrubbed.contains(SIGNATURE), "{scrubbed}");
    }

    #[test]
    fn the_terms_of_a_sas_are_read_without_its_signature() {
        let terms = store(&format!(
            "https://acct.blob.core.windows.net/c1/state.json?{}",
            sas()
        ))
        .sas_terms();
        assert_eq!(terms.permissions.as_deref(), Some("rcw"));
        assert_eq!(terms.missing_permissions(), Some(vec![]));
        assert_eq!(
            terms.expires_at(),
            Some(Ok("2030-01-01T00:00:00Z".parse().unwrap()))
        );
        assert!(!format!("{terms:?}").contains(SIGNATURE));

        let read_only = SasTerms::parse("?sv=2020-12-06&sp=rl&se=2030-01-31&sig=x");
        assert_eq!(
            read_only.missing_permissions(),
            Some(vec!["create", "write"])
        );
        assert_eq!(
            read_only.expires_at(),
            Some(Ok("2030-01-31T00:00:00Z".parse().unwrap()))
        );
        let short = SasTerms::parse("se=2030-01-31T10%3A30Z&sp=racwdl");
        assert_eq!(
            short.expires_at(),
            Some(Ok("2030-01-31T10:30:00Z".parse().unwrap()))
        );
        assert_eq!(short.missing_permissions(), Some(vec![]));
        let policy = SasTerms::parse("sv=2020-12-06&si=imagegen&sig=x");
        assert_eq!(policy.policy.as_deref(), Some("imagegen"));
        assert_eq!(policy.missing_permissions(), None);
        assert_eq!(policy.expires_at(), None);
        let bad = SasTerms::parse("se=soon")
            .expires_at()
            .unwrap()
            .unwrap_err();
        assert!(bad.starts_with("se=soon is not a time"), "{bad}");
    }

    #[test]
    fn blob_urls_are_told_from_paths() {
        assert!(is_blob_url(
            "https://acct.blob.core.windows.net/c/state.json"
        ));
        assert!(is_blob_url(
            "HTTP://127.0.0.1:10000/devstoreaccount1/c/state.json"
        ));
        assert!(!is_blob_url(".imagegen/state.json"));
        assert!(!is_blob_url("C:\\state\\state.json"));
        assert!(!is_blob_url("https:"));
    }

    #[tokio::test]
    async fn an_unreachable_account_names_the_blob_and_hides_the_signature() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let store = store(&format!(
            "http://127.0.0.1:{port}/devstoreaccount1/c1/state.json?{}",
            sas()
        ))
        .with_retry(RetryPolicy::none());
        for error in [
            store.load().await.unwrap_err(),
            store
                .save(&Revision::absent(), &written_form(&Ledger::default()))
                .await
                .unwrap_err(),
        ] {
            let text = format!("{error} {error:?}");
            assert!(
                !text.contains(SIGNATURE) && !text.contains(DECODED_SIGNATURE),
                "{text}"
            );
            assert!(
                matches!(error, StateError::Blob(BlobError::Transport { .. })),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(&format!("the ledger http://127.0.0.1:{port}/devstoreaccount1/c1/state.json failed: could not connect")), "{message}");
        }
    }

    #[tokio::test]
    async fn a_throttled_write_is_tried_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        [("etag", "\"unused\"")],
                    )
                } else {
                    (axum::http::StatusCode::CREATED, [("etag", "\"0x8DCAFE\"")])
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let store = store(&format!(
            "http://127.0.0.1:{port}/devstoreaccount1/c1/state.json?{}",
            sas()
        ))
        .with_retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(10),
            ..RetryPolicy::default()
        });
        let revision = store
            .save(&Revision::absent(), &written_form(&Ledger::default()))
            .await
            .unwrap();
        assert_eq!(revision, Revision::tagged("\"0x8DCAFE\""));
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }
}
