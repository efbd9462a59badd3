//! A bare OSOB repository for the tests that run the whole loop up to the pull request: its
//! `main` holds tests/fixtures/osob, and the repository under test maps its definitions to it
//! through the local provider (which pushes the branch and opens no pull request).

use std::path::{Path, PathBuf};

use git2::{Repository, Signature};

use super::{Repo, manifest_dir};

pub struct Osob {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Osob {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let path = dir.path().join("osob.git");
        let repo = Repository::init_bare(&path).expect("create a bare repository");
        let mut files = Vec::new();
        collect_files(&manifest_dir().join("tests/fixtures/osob"), "", &mut files);
        let mut builder = git2::build::TreeUpdateBuilder::new();
        for (path, bytes) in &files {
            let blob = repo.blob(bytes).expect("write a blob");
            builder.upsert(path.as_str(), blob, git2::FileMode::Blob);
        }
        let empty = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let tree = repo
            .find_tree(builder.create_updated(&repo, &empty).unwrap())
            .unwrap();
        let signature = Signature::now("Someone", "maintainer@osob.invalid").unwrap();
        let commit = repo
            .commit(
                None,
                &signature,
                &signature,
                "OSOB as it stands",
                &tree,
                &[],
            )
            .unwrap();
        repo.reference("refs/heads/main", commit, true, "test")
            .unwrap();
        Self { _dir: dir, path }
    }

    /// What `--osob-url` and `IMAGEGEN_OSOB_URL` take.
    pub fn url(&self) -> String {
        self.path.display().to_string()
    }

    /// A file on a branch, or `None` when the branch or the file does not exist.
    pub fn read(&self, branch: &str, path: &str) -> Option<String> {
        let repo = Repository::open_bare(&self.path).ok()?;
        let tip = repo.refname_to_id(&format!("refs/heads/{branch}")).ok()?;
        let tree = repo.find_commit(tip).ok()?.tree().ok()?;
        let entry = tree.get_path(Path::new(path)).ok()?;
        String::from_utf8(repo.find_blob(entry.id()).ok()?.content().to_vec()).ok()
    }
}

fn collect_files(root: &Path, prefix: &str, files: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(root).expect("list the fixture") {
        let entry = entry.expect("read a folder entry");
        let name = entry.file_name().to_string_lossy().to_string();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.path().is_dir() {
            collect_files(&entry.path(), &relative, files);
        } else {
            files.push((relative, std::fs::read(entry.path()).expect("read a file")));
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
