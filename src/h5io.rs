//! HDF5 input and output without any system library (`hdf5-pure`).

use std::path::Path;

/// Mesh arrays as stored in a file (SPEC "Mesh"): node coordinates and
/// 0-based Quad-8 connectivity, before validation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawMesh {
    /// Node x coordinates.
    pub x: Vec<f64>,
    /// Node y coordinates.
    pub y: Vec<f64>,
    /// Elements, 8 node indices each.
    pub quad8: Vec<[i64; 8]>,
}

/// An HDF5 problem, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct H5Error {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Reads a mesh file (`x`, `y`, `quad8` at the root).
pub fn read_mesh(path: &Path) -> Result<RawMesh, H5Error> {
    let _ = path;
    todo!()
}
