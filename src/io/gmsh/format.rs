//! The types the gmsh reader and writer share: versions, errors, the
//! imported mesh.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::io::raw::RawMesh;

/// A mesh read from a `.msh` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportedMesh {
    /// Node coordinates (x, y; z is dropped) and Quad-8 connectivity,
    /// 0-based in the renumbered, dense node order.
    pub raw: RawMesh,
    /// Named node sets from the physical groups, sorted, without repeats,
    /// in the renumbered node order.
    pub node_sets: BTreeMap<String, Vec<u32>>,
    /// Elements of types other than 1, 8, 10 and 16 that were skipped.
    pub ignored_elements: usize,
    /// Nodes of the file that no quadrangle uses, left out of the mesh (the
    /// centre nodes of 9-node quadrangles among them).
    pub dropped_nodes: usize,
}

/// The four `.msh` variants [`write_msh`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MshVersion {
    /// MSH 2.2, ASCII.
    V22Ascii,
    /// MSH 4.1, ASCII (gmsh's default).
    #[default]
    V41Ascii,
    /// MSH 2.2, binary.
    V22Binary,
    /// MSH 4.1, binary.
    V41Binary,
}

impl MshVersion {
    /// All four, for tests and loops.
    pub const ALL: [MshVersion; 4] = [
        MshVersion::V22Ascii,
        MshVersion::V41Ascii,
        MshVersion::V22Binary,
        MshVersion::V41Binary,
    ];

    /// The variant of format `version` (`"2.2"` or `"4.1"`), binary or not;
    /// `None` for any other version.
    pub fn parse(version: &str, binary: bool) -> Option<Self> {
        match (version.trim(), binary) {
            ("2.2" | "2", false) => Some(MshVersion::V22Ascii),
            ("2.2" | "2", true) => Some(MshVersion::V22Binary),
            ("4.1" | "4", false) => Some(MshVersion::V41Ascii),
            ("4.1" | "4", true) => Some(MshVersion::V41Binary),
            _ => None,
        }
    }

    /// Whether the variant is binary.
    pub fn is_binary(self) -> bool {
        matches!(self, MshVersion::V22Binary | MshVersion::V41Binary)
    }

    /// Whether the variant is MSH 4.1.
    pub fn is_v41(self) -> bool {
        matches!(self, MshVersion::V41Ascii | MshVersion::V41Binary)
    }
}

impl fmt::Display for MshVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MshVersion::V22Ascii => "MSH 2.2 ASCII",
            MshVersion::V41Ascii => "MSH 4.1 ASCII",
            MshVersion::V22Binary => "MSH 2.2 binary",
            MshVersion::V41Binary => "MSH 4.1 binary",
        })
    }
}

/// Where in a file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line (ASCII files).
    Line(usize),
    /// 0-based byte offset (binary files, whose lines mean nothing).
    Byte(usize),
}

/// A problem with a `.msh` file: the file, where in it (when known) and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct GmshError {
    /// The file.
    pub path: String,
    /// Where in the file, if the problem has a place.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for GmshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(Location::Line(l)) => write!(f, "{}:{l}: {}", self.path, self.message),
            Some(Location::Byte(b)) => write!(f, "{} (byte {b}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl GmshError {
    /// An error about the whole file at `path`.
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            location: None,
            message: message.into(),
        }
    }
}

/// The message of a file without 8- or 9-node quadrangles.
pub const NO_QUADS: &str = "no 8- or 9-node quadrilaterals (types 16, 10) found; quadflow needs \
     Quad-8 elements (gmsh: Mesh.ElementOrder = 2, Mesh.SecondOrderIncomplete = 1, \
     Mesh.RecombineAll = 1)";
