//! The backends this build knows: the engine's built-in ones (`serial`,
//! the fallback, `parallel`, `gpu`), plus `mpi` when built with the `mpi`
//! feature.

use quadflow_systems::config::Catalog;

/// This build's backend kinds.
pub fn catalog() -> Catalog {
    quadflow_systems::backends::builtin()
}
