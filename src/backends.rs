//! The backends this build knows: the engine's built-in ones (`serial`,
//! the fallback, `parallel`, `gpu`), plus `mpi` when built with the `mpi`
//! feature ([`quadflow_mpi::backend`], registered last: it wraps one of
//! the others).

use quadflow_systems::config::Catalog;

/// This build's backend kinds.
pub fn catalog() -> Catalog {
    #[allow(unused_mut)]
    let mut c = quadflow_systems::backends::builtin();
    #[cfg(feature = "mpi")]
    c.register(quadflow_mpi::backend::MpiKind::world());
    c
}

/// Backends of other builds: their names and how to get them.
const NOT_BUILT: &[(&str, &str)] = &[(
    "mpi",
    "the mpi backend needs a build with MPI: cargo build --release --features mpi (OpenMPI and libclang first: mpi/install-deps.sh; see the README, \"MPI\")",
)];

/// How to build the backend `name` where this build lacks it (`None` for
/// a name no build knows, or one this build has).
pub fn not_built(name: &str) -> Option<&'static str> {
    if catalog().get(name).is_some() {
        return None;
    }
    NOT_BUILT.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_of_another_build_says_how_to_build_it() {
        assert!(not_built("serial").is_none());
        assert!(not_built("nonesuch").is_none());
        if cfg!(feature = "mpi") {
            assert!(not_built("mpi").is_none());
            assert!(catalog().get("mpi").is_some());
        } else {
            assert!(not_built("mpi").unwrap().contains("--features mpi"));
        }
    }
}
