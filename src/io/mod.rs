//! Files: reading and writing meshes and results.
//!
//! - [`raw`]: the mesh arrays as a file holds them ([`RawMesh`]).
//! - [`atomic`]: the all-or-nothing write every writer uses.
//! - [`h5`]: HDF5 meshes, results and reference files (pure Rust).
//! - [`gmsh`]: gmsh `.msh` 2.2 and 4.1, ASCII and binary.
//! - [`vtu`]: ParaView output of a solved mesh.
//! - [`xdmf`]: the XDMF index by which ParaView opens HDF5 results of any
//!   size.
//!
//! This module chooses the mesh format by extension ([`read_mesh_file`],
//! [`write_any_mesh`]).

pub mod atomic;
pub mod gmsh;
pub mod h5;
pub mod raw;
pub mod vtu;
pub mod xdmf;

use std::collections::BTreeMap;
use std::path::Path;

pub use atomic::write_atomic;
use gmsh::{GmshError, MshVersion};
use h5::{H5Error, MeshLayout};
pub use raw::RawMesh;

/// A mesh file that cannot be read or written, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MeshIoError {
    /// An extension no reader or writer handles.
    #[error("{0}")]
    Format(String),
    /// HDF5.
    #[error(transparent)]
    H5(#[from] H5Error),
    /// gmsh.
    #[error(transparent)]
    Gmsh(#[from] GmshError),
}

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
    /// [`MeshIoError::Format`] naming the file and the supported extensions
    /// for any other extension, or none.
    pub fn of(path: &Path) -> Result<Self, MeshIoError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("h5" | "hdf5") => Ok(MeshFormat::Hdf5),
            Some("msh") => Ok(MeshFormat::Gmsh),
            _ => Err(MeshIoError::Format(format!(
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
    /// Named node sets (gmsh physical groups; HDF5 `node_sets/NAME`).
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
pub fn read_mesh_file(path: &Path) -> Result<MeshFile, MeshIoError> {
    Ok(match MeshFormat::of(path)? {
        MeshFormat::Hdf5 => {
            let (raw, node_sets) = h5::read_mesh_with_sets(path)?;
            MeshFile {
                raw,
                node_sets,
                ..MeshFile::default()
            }
        }
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
/// `.h5` and `.hdf5` are HDF5, `.msh` is gmsh.
///
/// # Errors
///
/// An unsupported extension (the message names the supported ones), or the
/// reader's error.
pub fn read_any_mesh(path: &Path) -> Result<(RawMesh, BTreeMap<String, Vec<u32>>), MeshIoError> {
    let m = read_mesh_file(path)?;
    Ok((m.raw, m.node_sets))
}

/// Writes a mesh file with its node sets, choosing the writer by extension:
/// HDF5 (int32 connectivity unless the mesh has more nodes than int32
/// holds, stored as `layout` says) or gmsh of variant `msh_version`. All or
/// nothing, as every writer here.
///
/// # Errors
///
/// An unsupported extension, or the writer's error.
pub fn write_any_mesh(
    path: &Path,
    raw: &RawMesh,
    node_sets: &BTreeMap<String, Vec<u32>>,
    msh_version: MshVersion,
    layout: MeshLayout,
) -> Result<Option<gmsh::MshWritten>, MeshIoError> {
    match MeshFormat::of(path)? {
        MeshFormat::Hdf5 => {
            let int64 = raw.x.len() > i32::MAX as usize;
            h5::write_mesh_with_sets(path, raw, node_sets, int64, layout)?;
            Ok(None)
        }
        MeshFormat::Gmsh => Ok(Some(gmsh::write_msh(path, raw, node_sets, msh_version)?)),
    }
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
}
