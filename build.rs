//! Build script: records the git commit the binary is built from, and whether the working tree
//! had changes, so `imagegen --version` can say exactly what runs in a pipeline.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable the crate reads with `env!`.
const COMMIT_VAR: &str = "IMAGEGEN_BUILD_COMMIT";

/// Said when git cannot tell: a source tarball, or no git on the machine.
pub const UNKNOWN_COMMIT: &str = "unknown commit";

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets the manifest dir"));
    // Naming any file turns off cargo's default of re-running on every change in the package,
    // which would rebuild the whole crate whenever a doc or a test changed.
    println!("cargo:rerun-if-changed=build.rs");
    let Some(build) = describe(&manifest_dir) else {
        println!("cargo:rustc-env={COMMIT_VAR}={UNKNOWN_COMMIT}");
        return;
    };
    // A commit, a checkout, a reset or staging a change rewrites one of these; an edit alone
    // does not, so the dirty mark follows edits at the next git operation. Watching the sources
    // as well would rebuild the library on every edit of the command line's files.
    for path in &build.watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env={COMMIT_VAR}={}", build.description());
}

/// What git says about the tree the crate is built from.
pub struct Build {
    /// The abbreviated commit id of HEAD.
    pub commit: String,
    /// Tracked files differ from HEAD (in the working tree or the index).
    pub dirty: bool,
    /// The files whose change means HEAD moved or the index changed: only those that exist,
    /// since cargo re-runs the script on every build while a named file is missing.
    pub watched: Vec<PathBuf>,
}

impl Build {
    /// `abc123def456`, or `abc123def456, dirty`.
    pub fn description(&self) -> String {
        if self.dirty {
            format!("{}, dirty", self.commit)
        } else {
            self.commit.clone()
        }
    }
}

/// Asks git about `dir`, which must be the top of its repository: a source tarball unpacked
/// inside another repository must not report that repository's commit.
pub fn describe(dir: &Path) -> Option<Build> {
    if !dir.join(".git").exists() {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let status = git(dir, &["status", "--porcelain", "--untracked-files=no"])?;
    let mut watched: Vec<PathBuf> = ["HEAD", "index", "packed-refs"]
        .into_iter()
        .filter_map(|name| git_path(dir, name))
        .collect();
    // On a branch, a commit moves the branch's ref, not HEAD itself; a detached HEAD (as in a
    // pipeline's checkout) holds the commit id in HEAD.
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git_path(dir, &reference));
    }
    watched.retain(|path| path.exists());
    Some(Build {
        commit,
        dirty: !status.is_empty(),
        watched,
    })
}

/// The path of a file in the repository's git directory, which a worktree splits between its
/// own folder (HEAD, index) and the shared one (refs).
fn git_path(dir: &Path, name: &str) -> Option<PathBuf> {
    git(dir, &["rev-parse", "--git-path", name]).map(|path| dir.join(path))
}

/// Runs git in `dir` and returns its trimmed output, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // `git status` may otherwise refresh the index, whose new timestamp would make cargo
        // run this script, and rebuild the crate, on every build.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim_end().to_string())
}
