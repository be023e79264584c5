//! # quadflow-mpi
//!
//! The distributed core of quadflow's MPI executor: the mesh split into
//! parts, each rank assembling its own rows with the engine's phases, and
//! distributed Jacobi-CG and AMG-CG over the ranks. Every rank reads (or
//! generates) its own blocks of the mesh, the ranks partition it together
//! and move elements and nodes to their parts, so that no rank holds the
//! whole mesh (or, the way before, rank 0 reads the mesh, partitions it
//! and sends every rank its part); the parts then work independently,
//! exchanging only halo values and a few reductions.
//!
//! - [`slice`]: a rank's blocks of the mesh read from a
//!   [`quadflow_systems::pipeline::MeshBlocks`] source and validated there
//!   (failures agreed, named by their index in the whole mesh).
//! - [`rcb`]: recursive coordinate bisection of the blocks' element
//!   centroids without gathering them (the serial RCB's parts exactly).
//! - [`migrate`]: the parts built from the blocks (elements and nodes
//!   moved to their owners, the halo plan) and their figures.
//! - [`bound`]: the whole mesh's boundary checks and floating mesh
//!   components, found on the parts.
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
//! - [`dist`]: global row ids by rank and halo plans built from the ids a
//!   rank needs.
//! - [`cg`]: distributed Jacobi-CG on the equilibrated system (the engine's
//!   fused kernels on each rank's own block, [`kernels`], plus its ghost
//!   block), stopped by the engine's convergence rule.
//! - [`amg`] ([`amg_setup`], [`amg_cycle`], [`amg_solve`]): distributed
//!   smoothed-aggregation AMG-CG with the engine's setup and smoother on each rank's rows, fewer ranks as
//!   levels shrink, the engine's hierarchy on the last rank.
//! - [`threads`]: a rank's local work on its thread pool, its
//!   communication on its own thread.
//! - [`device`]: one GPU per rank, the distributed Jacobi-CG's kernels on
//!   it.
//! - [`driver`]: the whole distributed run (partition and distribute on
//!   rank 0, assemble, solve, gather), with errors agreed by every rank.
//! - [`group`]: the process group of a run (both ways of reading, the
//!   join, the figures reported).
//! - [`study`]: the partition-only scaling model, and the I/O model.
//!
//! ## What is gathered where
//! Read in blocks (the default): nothing. Each rank reads its blocks;
//! the partition is computed by reductions of small histograms (METIS,
//! for small meshes or when asked, gathers only the element connectivity
//! onto rank 0); elements and nodes move rank to rank; the results go
//! back to the blocks and every rank writes its rows of the results file.
//! Read by the lead: the mesh is read and partitioned on rank 0 and the
//! parts scattered (one message per rank), and `u` and the element fields
//! are gathered onto rank 0 at the end. Either way assembly and the solve
//! stay distributed: one rank runs its local backend's own solve; several
//! run the engine's kernels and AMG setup on their rows. AMG's levels move
//! onto fewer ranks as they shrink (below 5,000 rows a rank, half the
//! ranks hand their rows to the other half); the rank holding the last of
//! them runs the engine's own hierarchy
//! (`quadflow_systems::amg::Hierarchy`) below.
//!
//! ## Plugging it into the pipeline (for the `mpi` backend)
//! 1. Before the pipeline exists: every rank reads its blocks and
//!    [`group::Group`]'s `split_blocks` ([`slice::read`], [`rcb::rcb`],
//!    [`migrate::build_part`], [`bound::report`]) gives it its
//!    [`part::Part`]; or rank 0 loads and validates the mesh and
//!    [`driver::distribute`] partitions it and gives every rank its
//!    [`part::Part`]. The rank's pipeline is built on `part.mesh` (the
//!    local mesh, with [`quadflow_systems::mesh::Mesh::part_of`] set, so
//!    the boundary resolves against the whole mesh); the scene's local
//!    backend (`serial`, `parallel`, `gpu`) runs quadrature, assembly and
//!    boundary unchanged ([`assemble::assemble_local`] shows the plan).
//! 2. Solve phase of the `mpi` backend: [`assemble::LocalSystem::from_assembled`]
//!    on the `LinearSystem` resource, then [`cg::solve_cg_jacobi_on`] or
//!    [`amg::solve_amg_cg_on`] with the rank's communicator and threads; write
//!    [`cg::with_ghosts`] of the owned `u` into `Solution.u` (local
//!    numbering), so that the local post phase can run on the part.
//! 3. Post: every rank post-processes its local elements; the per-element
//!    outputs of [`part::Part::owned_elements`] (each element once) and the
//!    owned `u` go to the ranks holding their blocks by global id, and
//!    every rank writes its rows of the results file (or they go to rank
//!    0, [`cg::gather_u`], which writes it). Phase times: the maximum over
//!    ranks.
//! 4. Errors: any failure must be agreed ([`comm::agree`]) before a rank
//!    leaves a phase, or the others wait in the next collective.
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
pub mod amg_cycle;
pub mod amg_setup;
pub mod amg_solve;
pub mod assemble;
pub mod backend;
pub mod bound;
pub mod cg;
pub mod comm;
pub mod device;
pub mod dist;
pub mod driver;
pub mod group;
pub mod kernels;
pub mod migrate;
pub mod part;
pub mod partition;
pub mod rcb;
pub mod slice;
pub mod study;
pub mod threads;
pub mod wire;
