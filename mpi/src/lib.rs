//! # quadflow-mpi
//!
//! The distributed core of quadflow's MPI executor: the mesh split into
//! parts, each rank assembling its own rows with the engine's phases, and
//! distributed Jacobi-CG and AMG-CG over the ranks. Rank 0 reads the mesh,
//! partitions it and sends every rank its part; the parts then work
//! independently, exchanging only halo values and a few reductions.
//!
//! - [`partition`]: RCB (pure Rust) and METIS k-way element partitions,
//!   node ownership, the quality report (edge cut, halos, imbalance).
//! - [`part`]: a rank's part under **owner-computes**: its owned nodes
//!   (rows), every element touching them (in global order, so each owned
//!   row sums its contributions as the serial assembly does), ghosts,
//!   local numbering, the halo plan, and the local engine `Mesh`.
//! - [`assemble`]: the engine's quadrature, assembly and boundary phases
//!   of any local backend run on a part; the owned rows kept.
//! - [`comm`]: the [`comm::Comm`] trait (all-reduce, non-blocking
//!   neighbour exchange, all-to-all, broadcast) with a single-rank and an
//!   in-process multi-rank (threads) implementation, and rsmpi's behind
//!   the feature `mpi`.
//! - [`dist`]: distributed sparse matrices (owned rows, local columns,
//!   interior rows first) and halo plans built from global ids.
//! - [`cg`]: distributed Jacobi-CG on the equilibrated system.
//! - [`amg`]: distributed smoothed-aggregation AMG-CG.
//! - [`driver`]: the whole distributed run (partition and distribute on
//!   rank 0, assemble, solve, gather), with errors agreed by every rank.
//! - [`study`]: the partition-only scaling model.
//!
//! ## What is gathered where
//! The mesh is read and partitioned on rank 0 and the parts scattered
//! (one message per rank). Assembly and the fine levels of both solvers
//! stay distributed. AMG's coarse operator, once it is small (a few
//! thousand rows), is gathered onto rank 0, where the engine's host AMG
//! (`quadflow_systems::amg::Hierarchy`) takes over the rest of the
//! hierarchy; each V-cycle gathers the coarse residual there and
//! scatters the correction back. `u` is gathered onto rank 0 at the end.
//!
//! ## Features
//! `metis` (default): METIS, compiled from the C sources the `metis`
//! crate ships (a C compiler is all it needs). `mpi`: rsmpi over the
//! system's MPI (`install-deps.sh` installs OpenMPI and libclang); without
//! it the crate builds and its tests run on [`comm::SingleRank`] and
//! [`comm::ThreadComm`].

// Row loops index several row-aligned vectors at once; explicit index
// loops mirror the formulas (as in the engine).
#![allow(clippy::needless_range_loop)]

pub mod amg;
pub mod assemble;
pub mod cg;
pub mod comm;
pub mod dist;
pub mod driver;
pub mod part;
pub mod partition;
pub mod study;
pub mod wire;
