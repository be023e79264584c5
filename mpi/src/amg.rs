//! Distributed smoothed-aggregation AMG: the engine's own setup and cycle
//! on each rank's rows, as one process runs them on all rows.
//!
//! A **distributed level** is, on each rank, `[A_oo | A_og]`: the rank's
//! rows of the level operator with its own columns (the square block the
//! engine's setup and kernels run on) and the couplings to ghost columns
//! (rows of the neighbours; a halo plan fills their values). Rows are
//! numbered globally by rank: rank `q` owns the ids `off[q]..off[q + 1]`.
//!
//! **Setup, per distributed level** (every rank; all collectives):
//! 1. the engine's strength of connection and three-pass aggregation on
//!    `A_oo` only: aggregates never cross ranks;
//! 2. `rho(D^-1 A)`: the engine's Lanczos estimate on each rank's block,
//!    the maximum over ranks (interlacing: a block's largest eigenvalue is
//!    at most the whole operator's, and at a few thousand rows a block
//!    has the operator's high frequencies);
//! 3. the engine's tentative prolongator, and its smoothed prolongator
//!    `P = (I - omega D^-1 A) T` on the rank's rows `[A_oo | A_og]`, with
//!    the aggregate and `T` of the ghost columns from their owners (one
//!    halo exchange): a boundary row's `P` reaches the neighbours'
//!    aggregates. (Smoothing with `A_oo` alone would keep `P`
//!    block-diagonal and spare the exchanges below, but it costs
//!    `y_tube_195k` 45 iterations instead of 33 on two ranks: the coarse
//!    space then has no overlap across the ranks' border.)
//! 4. the Galerkin product `A_c = P^T A P` as the engine's two sparse
//!    products on the rank's rows, `P_o^T [A_oo | A_og] [P_o ; P_g]`,
//!    where `P_g` are the neighbours' rows of `P` for this rank's ghosts
//!    (fetched once per level); the shares of coarse rows owned elsewhere
//!    (the columns of `P_o` in the neighbours' aggregates) go to their
//!    owners, who add them in rank order. The coarse ghost columns get a
//!    halo plan of their own, and `P`'s columns one (`p_halo`).
//!
//! **Fewer ranks as levels shrink**: while a level has fewer than
//! [`DistAmgSettings::agglomerate_below`] (5,000) rows per active rank, half the
//! active ranks hand their rows (global column ids) to the other half
//! (rank `r + s` to `r` at stride `s`), which append them after their
//! own; the level's halo is rebuilt. Once one rank holds a level, it runs
//! the engine's own single-process hierarchy
//! ([`quadflow_systems::amg::Hierarchy`]) for the rest. On one rank from
//! the start that is exactly the engine's hierarchy and cycle.
//!
//! **V-cycle**: on a distributed level the engine's smoother passes
//! ([`quadflow_systems::amg::sweep_start`], `sweep_step`, `sweep_finish`)
//! with one halo exchange before each product, the restriction `P^T r`
//! (the shares of the neighbours' coarse rows sent back to them) and the
//! prolongation `P x_c` (the coarse values of `P`'s ghost columns
//! fetched); the hand-overs send a rank's
//! coarse residual to its receiver and its correction back; the
//! single-rank tail runs the engine's cycle. The local work runs on the
//! rank's threads ([`Threads`]), the communication on its own thread.

pub use crate::amg_cycle::CycleState;
pub use crate::amg_setup::{DistAmgSettings, DistHierarchy, LevelInfo, LevelMatrix};
pub use crate::amg_solve::{AmgReport, amg_pcg, solve_amg_cg, solve_amg_cg_on};
