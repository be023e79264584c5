//! Pictures: the rasteriser ([`raster`]) and field plots over the mesh
//! ([`plot`]).

pub mod plot;
pub mod raster;
