//! The OSOB git workspace (git2): a bare cache that fetches the base and pull-request branches,
//! reads files as committed, writes a commit without a checkout (so bytes and line endings stay
//! exactly as they are), and pushes the branch with a lease so that no one's work is clobbered.

use std::cell::RefCell;
use std::path::Path;

use git2::{Cred, Direction, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository};
use secrecy::{ExposeSecret, SecretString};

use super::mapping::CommitAuthor;

/// What went wrong with git. Holds URLs without credentials, never a token.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("cannot open the OSOB cache at {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot reach the OSOB repository {url}: {}", describe(source))]
    Remote {
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("the OSOB repository {url} has no branch {branch}")]
    NoBranch { url: String, branch: String },
    #[error("git failed while {doing}: {source}")]
    Git {
        doing: String,
        #[source]
        source: git2::Error,
    },
    #[error("the push of {branch} to {url} was refused: {reason}")]
    PushRejected {
        url: String,
        branch: String,
        reason: String,
    },
    #[error(
        "{branch} on {url} moved while this run worked (expected {expected}, found {found}); \
         nothing was overwritten"
    )]
    LeaseLost {
        url: String,
        branch: String,
        expected: String,
        found: String,
    },
}

impl WorkspaceError {
    /// Another writer won a race; fetching again and redoing the work may succeed.
    pub fn is_race(&self) -> bool {
        matches!(self, Self::LeaseLost { .. } | Self::PushRejected { .. })
    }
}

fn describe(error: &git2::Error) -> String {
    let message = error.message().trim_end_matches('.');
    match error.code() {
        git2::ErrorCode::Auth => format!("{message} (check the token)"),
        _ => message.to_string(),
    }
}

/// A URL fit to show: without any user name or password in it.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.has_authority() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The credentials git sends over https.
pub struct GitAuth {
    pub username: String,
    pub token: SecretString,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A commit on a branch that was not made by imagegen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCommit {
    pub id: String,
    pub author: String,
    pub summary: String,
}

/// The OSOB repository as imagegen sees it: a bare cache and the remote it mirrors.
pub struct Workspace {
    repo: Repository,
    url: String,
    auth: Option<GitAuth>,
}

impl Workspace {
    /// Opens (or creates) the bare cache at `cache` for the repository at `url` (https, file URL
    /// or local path).
    pub fn open(cache: &Path, url: &str, auth: Option<GitAuth>) -> Result<Self, WorkspaceError> {
        let cache_error = |source| WorkspaceError::Cache {
            path: cache.display().to_string(),
            source,
        };
        let repo = match Repository::open_bare(cache) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(cache)
                    .map_err(|error| cache_error(git2::Error::from_str(&error.to_string())))?;
                Repository::init_bare(cache).map_err(cache_error)?
            }
        };
        Ok(Self {
            repo,
            url: url.to_string(),
            auth,
        })
    }

    pub fn url(&self) -> String {
        display_url(&self.url)
    }

    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        if let Some(auth) = &self.auth {
            let tried = RefCell::new(false);
            callbacks.credentials(move |_url, _user, _allowed| {
                // A refused token is not asked again and again.
                if tried.replace(true) {
                    return Err(git2::Error::new(
                        git2::ErrorCode::Auth,
                        git2::ErrorClass::Http,
                        "the token was refused",
                    ));
                }
                Cred::userpass_plaintext(&auth.username, auth.token.expose_secret())
            });
        }
        callbacks
    }

    fn remote_error(&self, source: git2::Error) -> WorkspaceError {
        WorkspaceError::Remote {
            url: self.url(),
            source,
        }
    }

    /// Every ref the remote has (`refs/heads/main`, ...) and its commit, as `git ls-remote`
    /// lists them: connecting with the token shows that the repository answers and lets it in.
    pub fn remote_refs(&self) -> Result<Vec<(String, Oid)>, WorkspaceError> {
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(|source| self.remote_error(source))?;
        let connection = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks()), None)
            .map_err(|source| self.remote_error(source))?;
        Ok(connection
            .list()
            .map_err(|source| self.remote_error(source))?
            .iter()
            .map(|head| (head.name().to_string(), head.oid()))
            .collect())
    }

    /// Fetches `branches` into `refs/remotes/origin/*`; a branch the remote lacks is forgotten
    /// locally, so [`tip`](Self::tip) says it is absent.
    pub fn fetch(&self, branches: &[&str]) -> Result<(), WorkspaceError> {
        let existing: Vec<String> = self
            .remote_refs()?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(|source| self.remote_error(source))?;
        let mut refspecs = Vec::new();
        for branch in branches {
            let remote_ref = format!("refs/heads/{branch}");
            let tracking = format!("refs/remotes/origin/{branch}");
            if existing.contains(&remote_ref) {
                refspecs.push(format!("+{remote_ref}:{tracking}"));
            } else if let Ok(mut reference) = self.repo.find_reference(&tracking) {
                reference.delete().map_err(|source| WorkspaceError::Git {
                    doing: format!("forgetting {branch}"),
                    source,
                })?;
            }
        }
        if refspecs.is_empty() {
            return Ok(());
        }
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.callbacks());
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|source| self.remote_error(source))
    }

    /// The fetched tip of a branch, if the remote has it.
    pub fn tip(&self, branch: &str) -> Option<Oid> {
        self.repo
            .refname_to_id(&format!("refs/remotes/origin/{branch}"))
            .ok()
    }

    /// Like [`tip`](Self::tip), for a branch that must exist.
    pub fn required_tip(&self, branch: &str) -> Result<Oid, WorkspaceError> {
        self.tip(branch).ok_or_else(|| WorkspaceError::NoBranch {
            url: self.url(),
            branch: branch.to_string(),
        })
    }

    /// A file's bytes as committed in `commit`, or `None` if it has no such file.
    pub fn read(&self, commit: Oid, path: &str) -> Result<Option<Vec<u8>>, WorkspaceError> {
        let git = |source| WorkspaceError::Git {
            doing: format!("reading {path}"),
            source,
        };
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|commit| commit.tree())
            .map_err(git)?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(error) if error.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(error) => return Err(git(error)),
        };
        let blob = self.repo.find_blob(entry.id()).map_err(git)?;
        Ok(Some(blob.content().to_vec()))
    }

    /// Writes a commit on top of `parent` that changes `files` (path, new bytes) and nothing
    /// else; each file keeps its mode.
    pub fn commit(
        &self,
        parent: Oid,
        files: &[(String, Vec<u8>)],
        message: &str,
        author: &CommitAuthor,
    ) -> Result<Oid, WorkspaceError> {
        let git = |doing: &str| {
            let doing = doing.to_string();
            move |source| WorkspaceError::Git { doing, source }
        };
        let parent = self
            .repo
            .find_commit(parent)
            .map_err(git("finding the base"))?;
        let tree = parent.tree().map_err(git("reading the base tree"))?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, bytes) in files {
            let blob = self.repo.blob(bytes).map_err(git("writing a file"))?;
            let mode = tree
                .get_path(Path::new(path))
                .ok()
                .and_then(|entry| match entry.filemode() {
                    0o100755 => Some(git2::FileMode::BlobExecutable),
                    _ => None,
                })
                .unwrap_or(git2::FileMode::Blob);
            update.upsert(path.as_str(), blob, mode);
        }
        let tree_id = update
            .create_updated(&self.repo, &tree)
            .map_err(git("building the tree"))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(git("reading the tree"))?;
        let signature = git2::Signature::now(&author.name, &author.email)
            .map_err(git("making the signature"))?;
        self.repo
            .commit(None, &signature, &signature, message, &tree, &[&parent])
            .map_err(git("committing"))
    }

    /// The commits on `branch_tip` that are not on `base_tip` and were not made by `author`.
    pub fn foreign_commits(
        &self,
        branch_tip: Oid,
        base_tip: Oid,
        author: &CommitAuthor,
    ) -> Result<Vec<ForeignCommit>, WorkspaceError> {
        let git = |source| WorkspaceError::Git {
            doing: "reading the pull-request branch".to_string(),
            source,
        };
        let mut walk = self.repo.revwalk().map_err(git)?;
        walk.push(branch_tip).map_err(git)?;
        walk.hide(base_tip).map_err(git)?;
        let mut foreign = Vec::new();
        for id in walk {
            let commit = self.repo.find_commit(id.map_err(git)?).map_err(git)?;
            let by_bot = |signature: git2::Signature<'_>| {
                signature.email().ok() == Some(author.email.as_str())
            };
            if !(by_bot(commit.author()) && by_bot(commit.committer())) {
                foreign.push(ForeignCommit {
                    id: commit.id().to_string(),
                    author: commit.author().to_string(),
                    summary: commit
                        .summary()
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                        .to_string(),
                });
            }
        }
        Ok(foreign)
    }

    /// Whether `branch_tip` already holds exactly the tree of `commit` on top of `base_tip`: then pushing
    /// again would change nothing but a timestamp.
    pub fn is_same_change(&self, branch_tip: Oid, base_tip: Oid, commit: Oid) -> bool {
        let (Ok(branch), Ok(new)) = (
            self.repo.find_commit(branch_tip),
            self.repo.find_commit(commit),
        ) else {
            return false;
        };
        branch.tree_id() == new.tree_id()
            && branch.parent_count() == 1
            && branch.parent_id(0).ok() == Some(base_tip)
    }

    /// Pushes `commit` to `branch`, replacing what is there only if it still is `expected`
    /// (`None`: the branch must not exist), like `git push --force-with-lease`.
    pub fn push(
        &self,
        branch: &str,
        commit: Oid,
        expected: Option<Oid>,
    ) -> Result<(), WorkspaceError> {
        let local = format!("refs/heads/{branch}");
        self.repo
            .reference(&local, commit, true, "imagegen: the pull-request branch")
            .map_err(|source| WorkspaceError::Git {
                doing: format!("pointing {branch} at the new commit"),
                source,
            })?;
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(|source| self.remote_error(source))?;
        let lease: RefCell<Option<(Oid, Oid)>> = RefCell::new(None);
        let rejection: RefCell<Option<String>> = RefCell::new(None);
        let mut callbacks = self.callbacks();
        let wanted = expected.unwrap_or(Oid::ZERO_SHA1);
        callbacks.push_negotiation(|updates| {
            for update in updates {
                if update.src() != wanted {
                    lease.replace(Some((wanted, update.src())));
                    return Err(git2::Error::from_str("the branch moved"));
                }
            }
            Ok(())
        });
        callbacks.push_update_reference(|_reference, status| {
            if let Some(status) = status {
                rejection.replace(Some(status.to_string()));
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let result = remote.push(&[format!("+{local}:{local}")], Some(&mut options));
        if let Some((expected, found)) = lease.take() {
            let show = |oid: Oid| {
                if oid.is_zero() {
                    "no branch".to_string()
                } else {
                    oid.to_string()[..12].to_string()
                }
            };
            return Err(WorkspaceError::LeaseLost {
                url: self.url(),
                branch: branch.to_string(),
                expected: show(expected),
                found: show(found),
            });
        }
        result.map_err(|source| self.remote_error(source))?;
        if let Some(reason) = rejection.take() {
            return Err(WorkspaceError::PushRejected {
                url: self.url(),
                branch: branch.to_string(),
                reason,
            });
        }
        // Keep the tracking ref in step, so a later read in this run sees what was pushed.
        let _ = self.repo.reference(
            &format!("refs/remotes/origin/{branch}"),
            commit,
            true,
            "imagegen: pushed",
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            display_url("https://user:secret@dev.azure.com/o/p/_git/r"),
            "https://dev.azure.com/o/p/_git/r"
        );
        assert_eq!(display_url("/srv/osob.git"), "/srv/osob.git");
    }
}
