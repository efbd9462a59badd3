//! Replacing a file's contents so that a reader, or a run killed half-way, sees the old file or
//! the new one and never a part of either: the ledger and `vars set` both write this way.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`. A symlink is
/// followed and the existing file's permissions are kept. The folder must exist: creating one
/// is the caller's decision (a missing folder in a path someone typed is a typo).
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_if(path, bytes, || Ok(true)).map(|_| ())
}

/// [`replace`], but only if `still` says so once the new contents are on disk, just before
/// the rename: a writer that checks there what it read (under a lock every writer takes) leaves
/// no moment in which another write could slip in unseen. Returns whether the file was
/// replaced; when it was not, the file is untouched and no temporary file is left.
pub fn replace_if(
    path: &Path,
    bytes: &[u8],
    still: impl FnOnce() -> std::io::Result<bool>,
) -> std::io::Result<bool> {
    let existing = path.canonicalize().ok();
    let target = existing.clone().unwrap_or_else(|| path.to_path_buf());
    let folder = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{stem}-"))
        .suffix(".tmp")
        .tempfile_in(&folder)?;
    temporary.write_all(bytes)?;
    if let Some(existing) = &existing {
        temporary
            .as_file()
            .set_permissions(std::fs::metadata(existing)?.permissions())?;
    }
    temporary.as_file().sync_all()?;
    if !still()? {
        return Ok(false);
    }
    temporary.persist(&target).map_err(|error| error.error)?;
    // The rename itself is durable only once the folder is synced.
    #[cfg(unix)]
    std::fs::File::open(&folder)?.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_created_but_never_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let error = replace(&dir.path().join("a/b/state.json"), b"two").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn a_replacement_the_last_check_refuses_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        let replaced = replace_if(&path, b"new", || {
            // Another writer got in between: the check sees it.
            std::fs::write(&path, "theirs")?;
            Ok(false)
        })
        .unwrap();
        assert!(!replaced);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions_and_symlinks_are_followed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("variables.json");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file is left behind");
    }
}
