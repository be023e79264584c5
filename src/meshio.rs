//! Mesh files of any supported format, chosen by extension: HDF5 (`.h5`,
//! `.hdf5`, see [`crate::h5io`]) and gmsh (`.msh`, see [`crate::gmsh`]);
//! and the all-or-nothing file write the output modules share.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::gmsh::{self, MshVersion};
use crate::h5io::{self, RawMesh};
use crate::run::AppError;

/// The mesh file formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshFormat {
    /// HDF5 (`.h5`, `.hdf5`): datasets `x`, `y`, `quad8`.
    Hdf5,
    /// gmsh (`.msh`), MSH 2.2 or 4.1.
    Gmsh,
}

/// What the error messages list as supported.
pub const SUPPORTED: &str = ".h5 or .hdf5 (HDF5) and .msh (gmsh 2.2 or 4.1)";

impl MeshFormat {
    /// The format of `path` by its extension (case does not matter).
    ///
    /// # Errors
    ///
    /// [`AppError::Other`] naming the file and the supported extensions for
    /// any other extension, or none.
    pub fn of(path: &Path) -> Result<Self, AppError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("h5" | "hdf5") => Ok(MeshFormat::Hdf5),
            Some("msh") => Ok(MeshFormat::Gmsh),
            _ => Err(AppError::Other(format!(
                "{}: unknown mesh file extension; supported: {SUPPORTED}",
                path.display()
            ))),
        }
    }
}

/// A mesh read from a file, with what the reader has to say about it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshFile {
    /// Coordinates and connectivity.
    pub raw: RawMesh,
    /// Named node sets (gmsh physical groups; none from HDF5).
    pub node_sets: BTreeMap<String, Vec<u32>>,
    /// Elements of types quadflow does not use that were skipped (gmsh).
    pub ignored_elements: usize,
    /// Nodes no element uses that were left out (gmsh).
    pub dropped_nodes: usize,
}

/// Reads a mesh file, choosing the reader by extension (see [`MeshFormat`]).
///
/// # Errors
///
/// An unsupported extension, or the reader's error.
pub fn read_mesh_file(path: &Path) -> Result<MeshFile, AppError> {
    Ok(match MeshFormat::of(path)? {
        MeshFormat::Hdf5 => MeshFile {
            raw: h5io::read_mesh(path)?,
            ..MeshFile::default()
        },
        MeshFormat::Gmsh => {
            let m = gmsh::read_msh(path)?;
            if m.ignored_elements > 0 {
                tracing::info!(
                    "{}: {} elements of other types than quadrangles and lines ignored",
                    path.display(),
                    m.ignored_elements
                );
            }
            MeshFile {
                raw: m.raw,
                node_sets: m.node_sets,
                ignored_elements: m.ignored_elements,
                dropped_nodes: m.dropped_nodes,
            }
        }
    })
}

/// Reads a mesh and its named node sets, choosing the reader by extension:
/// `.h5` and `.hdf5` are HDF5 (no node sets), `.msh` is gmsh.
///
/// # Errors
///
/// An unsupported extension (the message names the supported ones), or the
/// reader's error.
pub fn read_any_mesh(path: &Path) -> Result<(RawMesh, BTreeMap<String, Vec<u32>>), AppError> {
    let m = read_mesh_file(path)?;
    Ok((m.raw, m.node_sets))
}

/// Writes a mesh file, choosing the writer by extension: HDF5 (int32
/// connectivity, gzip; node sets are not stored) or gmsh of variant
/// `msh_version`. All or nothing, as every writer here.
///
/// # Errors
///
/// An unsupported extension, or the writer's error.
pub fn write_any_mesh(
    path: &Path,
    raw: &RawMesh,
    node_sets: &BTreeMap<String, Vec<u32>>,
    msh_version: MshVersion,
) -> Result<Option<gmsh::MshWritten>, AppError> {
    match MeshFormat::of(path)? {
        MeshFormat::Hdf5 => {
            let int64 = raw.x.len() > i32::MAX as usize;
            h5io::write_mesh(path, raw, int64, true)?;
            Ok(None)
        }
        MeshFormat::Gmsh => Ok(Some(gmsh::write_msh(path, raw, node_sets, msh_version)?)),
    }
}

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
    fn formats_by_extension() {
        assert_eq!(
            MeshFormat::of(Path::new("a/b.h5")).unwrap(),
            MeshFormat::Hdf5
        );
        assert_eq!(
            MeshFormat::of(Path::new("b.HDF5")).unwrap(),
            MeshFormat::Hdf5
        );
        assert_eq!(
            MeshFormat::of(Path::new("b.msh")).unwrap(),
            MeshFormat::Gmsh
        );
        for bad in ["b.vtu", "b", "b.h5.txt"] {
            let e = MeshFormat::of(Path::new(bad)).unwrap_err().to_string();
            assert!(
                e.contains(".msh") && e.contains(".h5") && e.contains(bad),
                "{e}"
            );
        }
    }

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
