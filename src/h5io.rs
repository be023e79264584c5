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

/// Reference results (temporary stub until the reader lands).
#[derive(Debug, Clone, Default)]
pub struct Reference {
    /// u
    pub u: Vec<f64>,
    /// vel
    pub vel: Vec<[f64; 2]>,
    /// abs_vel
    pub abs_vel: Vec<f64>,
    /// pressure
    pub pressure: Vec<f64>,
    /// iterations
    pub iterations: i64,
    /// converged
    pub converged: bool,
    /// residual
    pub true_relative_residual: f64,
    /// nnz
    pub matrix_nnz: i64,
}

/// Reads a reference file.
pub fn read_reference(path: &Path) -> Result<Reference, H5Error> {
    let _ = path;
    todo!()
}

/// Attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// integer
    Int(i64),
    /// float
    Float(f64),
    /// string
    Str(String),
}

/// Results to write.
pub struct ResultsData<'a> {
    /// u
    pub u: &'a [f64],
    /// vel
    pub vel: &'a [[f64; 2]],
    /// abs_vel
    pub abs_vel: &'a [f64],
    /// pressure
    pub pressure: &'a [f64],
    /// attributes
    pub attrs: Vec<(String, Attr)>,
}

/// Writes results.
pub fn write_results(path: &Path, data: &ResultsData) -> Result<(), H5Error> {
    let _ = (path, data.u);
    todo!()
}
