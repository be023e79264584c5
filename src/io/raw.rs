//! The mesh arrays as a file holds them, before validation.

/// Mesh arrays as stored in a file (`docs/numerics.md`, "Mesh"): node coordinates and
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
