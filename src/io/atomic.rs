//! The all-or-nothing file write every writer of quadflow uses.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writes in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w).map_err(|e| format!("cannot write: {e}"))?;
        w.flush().map_err(|e| format!("cannot write: {e}"))?;
        let file = w.into_inner().map_err(|e| format!("cannot write: {e}"))?;
        file.sync_all().map_err(|e| format!("cannot write: {e}"))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
}
