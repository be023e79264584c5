//! Smoothed-aggregation algebraic multigrid (SA-AMG) as a preconditioner
//! of CG ("AMG-CG").
//!
//! The hierarchy is built on the equilibrated system ([`AmgSystem`]: `D K
//! D`, `d = 1 / sqrt(|diag K|)`, unit diagonal, rows without couplings
//! solved directly, rows renumbered by reverse Cuthill-McKee) as a full
//! CSR ([`Csr`]):
//!
//! 1. Strength of connection: `j` is a strong neighbour of `i` when
//!    `-a_ij >= theta sqrt(a_ii a_jj)` ([`Strength::Negative`], the
//!    default) or `|a_ij| >= theta sqrt(|a_ii a_jj|)`
//!    ([`Strength::Magnitude`], PyAMG's "symmetric").
//! 2. Standard aggregation (PyAMG's three passes): pass 1 makes an
//!    aggregate of every node whose strong neighbours are all free, with
//!    its whole strong neighbourhood; pass 2 attaches each leftover node to
//!    a pass-1 aggregate of a strong neighbour; pass 3 makes new aggregates
//!    of what is left. A node with no strong neighbour at all is left out
//!    (a zero row of the prolongator).
//! 3. Tentative prolongator `T` from the near-null-space vector `B`,
//!    normalised per aggregate; the coarse `B` is the per-aggregate norm.
//!    On the finest level `B = D^-1 1 = sqrt(diag K)`: `K 1 = 0` away from
//!    the boundary, so `(D K D)(D^-1 1) = 0` is the equilibrated matrix's
//!    near-null-space. The constant vector is not (the diagonal of `K`
//!    differs between corner and mid-side nodes and with element shape):
//!    with `B = 1`, `y_tube_195k` takes 84 iterations instead of 38, a
//!    100k-node venturi 134 instead of 55.
//! 4. Smoothed prolongator `P = (I - omega D^-1 A) T`,
//!    `omega = 4/3 / rho(D^-1 A)`, `rho` estimated by 10 Lanczos steps
//!    (within 3% of the converged value on the Quad-8 matrices; the
//!    Chebyshev bound adds 10%).
//! 5. Galerkin coarse operator `A_c = P^T (A P)`: two row-by-row sparse
//!    products (Gustavson, a marker array per block of rows, parallel).
//! 6. Until at most `max_coarse` rows or `max_levels` levels; the coarsest
//!    level is solved by a dense Cholesky factorisation (nalgebra).
//!
//! **Penalised Dirichlet rows.** After equilibration a penalised row
//! (`K_ii ~ 1e12`) has a unit diagonal and couplings of about `1e-6`, far
//! below any useful `theta`: the row has no strong neighbour, is in no
//! aggregate (its row of `T` is zero) and is left to the smoother, for
//! which it is an (almost exactly) decoupled unit row: Jacobi-type
//! smoothing solves it to `1e-6` relative per sweep. Its huge `B` entry
//! never enters an aggregate's normalisation. (`theta` must be positive
//! for this; the scene check enforces it.)
//!
//! **V-cycle.** Pre-smoothing from a zero guess, restriction of the
//! residual, the coarse correction, post-smoothing. The smoother is a
//! polynomial in `D^-1 A` (Chebyshev of a given degree on
//! `[rho_hat / cheb_ratio, rho_hat]`, `rho_hat = 1.1 rho`, or damped
//! Jacobi with weight `4/3 / rho`): the error propagator is self-adjoint in
//! the `A` inner product, so with as many pre- as post-sweeps the V-cycle
//! is a symmetric positive definite preconditioner, as CG needs. Every
//! smoothing step is one fused pass over the rows (`q = A d`, `r -= q`,
//! `x += d`, next `d`). The cycle reads the level matrices and transfers
//! in single precision (vectors and sums in double): a third less memory
//! traffic for the same iteration counts; CG's own product is in double.
//!
//! **Parallelism.** Every row loop (SpMV, smoothing step, restriction,
//! prolongation, strength, the sparse products, the reductions) goes over
//! blocks of [`BLOCK`] rows; [`Exec::Parallel`] runs the blocks on the
//! current rayon pool, [`Exec::Serial`] one after another. Reductions add
//! per-block partial sums in block order, so both give the same bits.
//! Aggregation, transposes and the renumbering are sequential.
//!
//! **Defaults** ([`AmgSettings::default`]) were chosen with the
//! `amg_sweep` test of `tests/solvers.rs` (application crate) on
//! `y_tube_195k` (147,246 CG rows) and generated venturi meshes of 10k,
//! 100k and 1.3M nodes, rtol `1e-10`, release build, the 2-core
//! development machine (shared with other builds, so times are noisy;
//! iteration counts are exact). Quad-8 matrices are harder for SA than
//! bilinear ones (a 5-point Laplacian takes 15 iterations): a third of
//! the couplings are positive, and Jacobi-type smoothing is weaker.
//!
//! | variant (one change from the default) | y_tube_195k | venturi 100k |
//! | --- | ---: | ---: |
//! | default: negative strength, theta 0.08, Chebyshev 2, 1+1 sweeps | 34 | 46 |
//! | magnitude strength (theta 0.08) | 38 | 55 |
//! | negative, theta 0.02 / 0.05 / 0.12 | | 58 / 50 / 53 (complexity 1.70) |
//! | magnitude, theta 0.2 / 0.3 | 104 / 372 | |
//! | Chebyshev degree 1 / 3 | 61 / 32 (magnitude) | 71 / 41 |
//! | damped Jacobi, 1 / 2 steps | 70 / 51 (magnitude) | 95 / 69 (magnitude) |
//! | 2+2 sweeps | 30 (magnitude) | 38 |
//! | Chebyshev ratio 10 / 60 | 39 / 39 (magnitude) | 54 / 58 (magnitude) |
//! | prolongator weight 1.0 / 1.6 (x 1/rho) | 43 / 37 (magnitude) | 60 / 52 |
//! | max_coarse 100 / 2000 | 38 / 37 (magnitude) | 55 / 54 (magnitude) |
//! | prolongator entries below 5% / 10% of the row's largest dropped | 41 / 57 | 52 / 65 |
//!
//! Time per iteration grows with the smoothing work (Chebyshev degree `k`
//! costs `2k` products on each level, plus CG's one), so degree 2 with
//! one sweep each way gave the shortest solves; 2+2 sweeps or degree 3
//! save iterations but not time. Smaller aggregates (theta 0.12, or a
//! twice-smoothed prolongator: 29 iterations on `y_tube_195k`) raise the
//! operator complexity and the setup time (x3) more than they save.
//! Iterations stay flat under refinement: 41, 46 and 55 on venturi meshes
//! of 10k, 100k and 1.3M nodes.

mod cycle;
mod pcg;
mod settings;
mod setup;
mod system;
#[cfg(test)]
pub(crate) mod tests;

pub use crate::exec::BLOCK;
pub use crate::sparse::Csr;
pub use cycle::{
    CycleWork, SmootherLevel, SweepStart, SweepWork, sweep, sweep_finish, sweep_start, sweep_step,
};
pub use pcg::{AmgCgOutcome, amg_pcg};
pub use settings::{AmgSettings, Smoother, Strength};
pub use setup::{
    Hierarchy, LevelData, aggregate, smoothed_prolongator, smoother_coefficients, spectral_radius,
    spectral_radius_with, strength, tentative, tridiagonal_max,
};
pub use system::{AmgSystem, solve_amg_cg};

/// No aggregate / no mark.
const NONE: u32 = u32::MAX;
