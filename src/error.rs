//! The application's error: any failure of a command, with a message for
//! the user. Every lower module has its own error type; this one gathers
//! them, so nothing below the commands imports it.

use crate::generate;
use crate::scene::SceneError;
use quadflow_systems::mesh::MeshError;
use quadflow_systems::pipeline::PipelineError;

/// Any failure of the application, with a message for the user.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Scene file.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// A mesh file (any format).
    #[error(transparent)]
    MeshFile(#[from] crate::io::MeshIoError),
    /// HDF5 file.
    #[error(transparent)]
    H5(#[from] crate::io::h5::H5Error),
    /// gmsh file.
    #[error(transparent)]
    Gmsh(#[from] crate::io::gmsh::GmshError),
    /// VTU output.
    #[error(transparent)]
    Vtu(#[from] crate::io::vtu::VtuError),
    /// PNG plot.
    #[error(transparent)]
    Plot(#[from] crate::viz::raster::PlotError),
    /// Mesh validation (with the mesh's origin).
    #[error("{origin}: {source}")]
    Mesh {
        /// where the mesh came from
        origin: String,
        /// what is wrong
        source: MeshError,
    },
    /// Generator.
    #[error(transparent)]
    Generate(#[from] generate::GenerateError),
    /// The run itself.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Anything else, already phrased.
    #[error("{0}")]
    Other(String),
    /// A failure already reported to the user (by a process of a group,
    /// before the group ended); only the exit status is left to set.
    #[error("the failure reported above")]
    Reported,
}
