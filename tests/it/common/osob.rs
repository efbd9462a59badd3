//! A bare OSOB repository for the end-to-end tests: the fixture under tests/fixtures/osob
//! committed on `main` by a maintainer, and helpers to commit to it and read it back.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature};

use super::{Repo, manifest_dir};

/// The branch imagegen pushes, as the shipped mapping names it.
pub const BRANCH: &str = "imagegen/helix-images";
/// The author of imagegen's commits in the shipped mapping.
pub const BOT_EMAIL: &str = "imagegen@helix-images.invalid";

/// A bare OSOB repository whose `main` holds the fixture, made by an OSOB maintainer.
pub struct Osob {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Osob {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("osob.git");
        let repo = Repository::init_bare(&path).unwrap();
        let mut files = Vec::new();
        collect_files(&manifest_dir().join("tests/fixtures/osob"), "", &mut files);
        let osob = Self { _dir: dir, path };
        osob.commit_files(
            &repo,
            "main",
            None,
            &files,
            "OSOB as it stands",
            "maintainer@osob.invalid",
        );
        osob
    }

    pub fn repo(&self) -> Repository {
        Repository::open_bare(&self.path).unwrap()
    }

    /// The folder holding `osob.git`, for a server that serves it.
    #[cfg(feature = "emulator")]
    pub fn root(&self) -> &Path {
        self._dir.path()
    }

    pub fn url(&self) -> String {
        self.path.display().to_string()
    }

    /// Commits `files` on `branch` (on top of `parent`, or of the branch's tip) as `email`.
    pub fn commit_files(
        &self,
        repo: &Repository,
        branch: &str,
        parent: Option<Oid>,
        files: &[(String, Vec<u8>)],
        message: &str,
        email: &str,
    ) -> Oid {
        let reference = format!("refs/heads/{branch}");
        let parent = parent.or_else(|| repo.refname_to_id(&reference).ok());
        let parent_commit = parent.map(|id| repo.find_commit(id).unwrap());
        let mut builder = git2::build::TreeUpdateBuilder::new();
        for (path, bytes) in files {
            let blob = repo.blob(bytes).unwrap();
            builder.upsert(path.as_str(), blob, git2::FileMode::Blob);
        }
        let base_tree = match &parent_commit {
            Some(commit) => commit.tree().unwrap(),
            None => repo
                .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
                .unwrap(),
        };
        let tree = repo
            .find_tree(builder.create_updated(repo, &base_tree).unwrap())
            .unwrap();
        let signature = Signature::now("Someone", email).unwrap();
        let parents: Vec<&git2::Commit> = parent_commit.iter().collect();
        let id = repo
            .commit(None, &signature, &signature, message, &tree, &parents)
            .unwrap();
        repo.reference(&reference, id, true, "test").unwrap();
        id
    }

    pub fn tip(&self, branch: &str) -> Option<Oid> {
        self.repo()
            .refname_to_id(&format!("refs/heads/{branch}"))
            .ok()
    }

    pub fn read(&self, commit: Oid, path: &str) -> String {
        let repo = self.repo();
        let tree = repo.find_commit(commit).unwrap().tree().unwrap();
        let entry = tree.get_path(Path::new(path)).unwrap();
        String::from_utf8(repo.find_blob(entry.id()).unwrap().content().to_vec()).unwrap()
    }

    /// A file on a branch, or `None` when the branch or the file does not exist.
    #[cfg(feature = "emulator")]
    pub fn read_on(&self, branch: &str, path: &str) -> Option<String> {
        let repo = self.repo();
        let tip = repo.refname_to_id(&format!("refs/heads/{branch}")).ok()?;
        let tree = repo.find_commit(tip).ok()?.tree().ok()?;
        let entry = tree.get_path(Path::new(path)).ok()?;
        String::from_utf8(repo.find_blob(entry.id()).ok()?.content().to_vec()).ok()
    }
}

pub fn collect_files(root: &Path, prefix: &str, files: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.path().is_dir() {
            collect_files(&entry.path(), &relative, files);
        } else {
            files.push((relative, std::fs::read(entry.path()).unwrap()));
        }
    }
}

impl Repo {
    /// The shipped mapping, with the local provider, so that the OSOB step needs no token.
    pub fn map_to_local_osob(&self) -> &Self {
        let text = std::fs::read_to_string(manifest_dir().join("osob-mapping/osob.json"))
            .expect("read the shipped mapping");
        let mut mapping: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        mapping["provider"] = serde_json::json!({"kind": "local"});
        self.write(
            "osob-mapping/osob.json",
            &serde_json::to_string_pretty(&mapping).expect("JSON"),
        )
    }
}
