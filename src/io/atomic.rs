//! The all-or-nothing file write every writer of quadflow uses.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writes in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name beside its target
/// (`.<name>.tmp-<pid>-<n>`): [`Staged::commit`] renames it over the
/// target; dropping it uncommitted removes it. What [`write_atomic`] is
/// made of, for writers that fill the file in more than one go (every
/// process of a group writing its rows).
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the temporary file of a write of `path`, empty.
    ///
    /// # Errors
    ///
    /// A message (without the path) saying what failed: no file name, the
    /// directory does not exist or is not writable.
    pub fn create(path: &Path) -> Result<(Self, fs::File), String> {
        let name = path
            .file_name()
            .ok_or_else(|| "not a file path (it has no file name)".to_string())?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    "; the directory does not exist"
                } else {
                    ""
                };
                format!("cannot create temporary file {}: {e}{hint}", tmp.display())
            })?;
        Ok((
            Self {
                tmp,
                path: path.to_path_buf(),
                committed: false,
            },
            file,
        ))
    }

    /// The temporary file's path.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Renames the temporary file over the target (its content must be
    /// on disk: synced by whoever wrote it).
    ///
    /// # Errors
    ///
    /// A message saying why the rename failed; the temporary is removed.
    pub fn commit(mut self) -> Result<(), String> {
        fs::rename(&self.tmp, &self.path)
            .map_err(|e| format!("cannot move {} into place: {e}", self.tmp.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a file whole or not at all: `write` fills a buffered temporary
/// file beside `path` (`.<name>.tmp-<pid>-<n>`), which is synced and renamed
/// over `path` once `write` has succeeded. On any failure the temporary is
/// removed and an existing `path` is left as it was.
///
/// # Errors
///
/// A message (without the path) saying what failed: no file name, the
/// directory does not exist or is not writable, or writing failed.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<fs::File>) -> std::io::Result<()>,
) -> Result<(), String> {
    let (staged, file) = Staged::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write(&mut w).map_err(|e| format!("cannot write: {e}"))?;
    w.flush().map_err(|e| format!("cannot write: {e}"))?;
    let file = w.into_inner().map_err(|e| format!("cannot write: {e}"))?;
    file.sync_all().map_err(|e| format!("cannot write: {e}"))?;
    drop(file);
    staged.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        std::fs::write(&p, "old").unwrap();
        let e = write_atomic(&p, |w| {
            w.write_all(b"new")?;
            Err(std::io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(e.contains("boom"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&p, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }

    #[test]
    fn a_staged_file_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.bin");
        let (s, mut f) = Staged::create(&p).unwrap();
        f.write_all(b"x").unwrap();
        let tmp = s.tmp().to_path_buf();
        assert!(tmp.exists() && !p.exists());
        drop(s);
        assert!(!tmp.exists() && !p.exists());
        let (s, mut f) = Staged::create(&p).unwrap();
        f.write_all(b"y").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"y");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
