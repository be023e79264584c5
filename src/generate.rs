//! Built-in mesh generators for the reference geometries (stub).
use crate::h5io::RawMesh;

/// Geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// straight
    StraightChannel,
    /// venturi
    Venturi,
}
impl Geometry {
    /// all
    pub const ALL: [Geometry; 2] = [Geometry::StraightChannel, Geometry::Venturi];
    /// name
    pub fn name(self) -> &'static str {
        match self {
            Geometry::StraightChannel => "straight_channel",
            Geometry::Venturi => "venturi",
        }
    }
    /// parse
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == s)
    }
}
/// err
#[derive(Debug, thiserror::Error)]
#[error("generate")]
pub struct GenerateError;
/// gen
pub fn generate(g: Geometry, n: usize) -> Result<RawMesh, GenerateError> {
    let _ = (g, n);
    todo!()
}
