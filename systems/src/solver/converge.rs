//! What "converged" means, for every iterative solver on every backend
//! (host, device, distributed): the **true** residual of the equilibrated
//! system, recomputed from the solution, is at most `rtol`:
//!
//! `||D (f - K u)|| / ||D f|| = ||b - A x|| / ||b|| <= rtol`
//!
//! The recurrence residual a CG loop updates in place drifts away from the
//! true one by rounding (far below `rtol` on small meshes, by up to 35 times
//! `rtol = 1e-10` at 100M nodes), so it only says *when to look*. Each loop
//! runs until its recurrence residual is below [`Convergence::target`]
//! (`rtol` at first), then computes the true residual and asks
//! [`Convergence::judge`]:
//! - at most `rtol`: [`Verdict::Converged`];
//! - above: [`Verdict::Replace`]: the loop replaces its residual by the
//!   recomputed one (`r = b - A x`), restarts the search direction from it,
//!   and goes on to a lowered target (the current one times half the ratio
//!   by which the check missed `rtol`), so that the next check lands below;
//! - above, and two checks in a row that did not halve the residual: the
//!   rounding floor of this system in double precision is above `rtol`:
//!   [`Verdict::Stalled`], the run stops as not converged, saying so.
//!
//! Reaching `max_iterations` first stops as not converged too. The first
//! check costs one product with the matrix; a run that converges at its
//! first check (every run of the reference configuration on the reference
//! meshes) does exactly the iterations SciPy's rule does.

/// Why a solve stopped without converging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NotConverged {
    /// The iteration cap was reached.
    IterationCap,
    /// The true residual stopped decreasing above `rtol` (the rounding
    /// floor of the system in double precision), at this value.
    Stalled(f64),
}

/// What [`Convergence::judge`] decides about a recomputed residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The true residual is at most `rtol`: stop, converged.
    Converged,
    /// Above `rtol`: replace the residual by the recomputed one, restart
    /// the direction, and iterate to the lowered [`Convergence::target`].
    Replace,
    /// Above `rtol` and no longer decreasing: stop, not converged.
    Stalled,
}

/// The convergence rule's state in one solve (see the module
/// documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Convergence {
    rtol: f64,
    target: f64,
    last: Option<f64>,
    slow_checks: usize,
    replacements: usize,
    first_met: Option<usize>,
}

/// Consecutive checks that do not halve the true residual before the
/// rule calls it stalled.
pub const STALLED_AFTER: usize = 2;

impl Convergence {
    /// The rule for relative tolerance `rtol`; the first target is `rtol`.
    pub fn new(rtol: f64) -> Self {
        Self {
            rtol,
            target: rtol,
            last: None,
            slow_checks: 0,
            replacements: 0,
            first_met: None,
        }
    }

    /// The relative recurrence residual to reach before the next check.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// The last checked (true) residual, if any.
    pub fn last(&self) -> Option<f64> {
        self.last
    }

    /// Residual replacements done so far.
    pub fn replacements(&self) -> usize {
        self.replacements
    }

    /// Judges the true relative residual `t` recomputed at `iteration`.
    pub fn judge(&mut self, iteration: usize, t: f64) -> Verdict {
        self.first_met.get_or_insert(iteration);
        let prev = self.last.replace(t);
        if t <= self.rtol {
            return Verdict::Converged;
        }
        if !t.is_finite() {
            return Verdict::Stalled;
        }
        if prev.is_some_and(|p| t > 0.5 * p) {
            self.slow_checks += 1;
            if self.slow_checks >= STALLED_AFTER {
                return Verdict::Stalled;
            }
        } else {
            self.slow_checks = 0;
        }
        self.replacements += 1;
        self.target *= 0.5 * self.rtol / t;
        Verdict::Replace
    }

    /// Fills the rule's part of `stats`: `converged`, the residual (the
    /// last true one, else the recurrence's `recurrence`), replacements,
    /// the iteration where the recurrence first met `rtol`, and why it did
    /// not converge.
    pub fn finish(&self, stats: &mut super::SolveStats, verdict: Option<Verdict>, recurrence: f64) {
        stats.converged = verdict == Some(Verdict::Converged);
        stats.recurrence_residual = self.last.unwrap_or(recurrence);
        stats.replacements = self.replacements;
        stats.first_check_iteration = self.first_met;
        stats.not_converged = match verdict {
            Some(Verdict::Converged) => None,
            Some(Verdict::Stalled) => Some(NotConverged::Stalled(self.last.unwrap_or(recurrence))),
            _ => Some(NotConverged::IterationCap),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_rtol_converges_at_once() {
        let mut c = Convergence::new(1e-8);
        assert_eq!(c.judge(10, 9.9e-9), Verdict::Converged);
        assert_eq!(c.judge(10, 1e-8), Verdict::Converged);
        assert_eq!(c.replacements(), 0);
    }

    #[test]
    fn above_rtol_replaces_and_lowers_the_target() {
        let mut c = Convergence::new(1e-10);
        assert_eq!(c.judge(70, 2.2e-9), Verdict::Replace);
        // 22 times too high: the target drops by 44
        assert!((c.target() - 1e-10 * 0.5 / 22.0).abs() < 1e-16);
        // the next check halved it and more: still above, replace again
        assert_eq!(c.judge(80, 4e-10), Verdict::Replace);
        assert_eq!(c.judge(85, 9e-11), Verdict::Converged);
        assert_eq!(c.replacements(), 2);
        let mut s = crate::solver::SolveStats::default();
        c.finish(&mut s, Some(Verdict::Converged), 1e-12);
        assert!(s.converged && s.replacements == 2 && s.first_check_iteration == Some(70));
        assert_eq!(s.recurrence_residual, 9e-11);
        assert_eq!(s.not_converged, None);
    }

    #[test]
    fn a_residual_that_stops_decreasing_is_stalled() {
        let mut c = Convergence::new(1e-12);
        assert_eq!(c.judge(1, 3e-11), Verdict::Replace);
        // one slow check is forgiven (the restart costs a few iterations)
        assert_eq!(c.judge(2, 2e-11), Verdict::Replace);
        assert_eq!(c.judge(3, 1.9e-11), Verdict::Stalled);
        let mut s = crate::solver::SolveStats::default();
        c.finish(&mut s, Some(Verdict::Stalled), 0.0);
        assert!(!s.converged);
        assert_eq!(s.not_converged, Some(NotConverged::Stalled(1.9e-11)));
        // a fast check in between resets the count
        let mut c = Convergence::new(1e-12);
        c.judge(1, 3e-11);
        c.judge(2, 2e-11);
        assert_eq!(c.judge(3, 5e-12), Verdict::Replace);
        assert_eq!(c.judge(4, 4e-12), Verdict::Replace);
        assert!(c.judge(5, f64::NAN) == Verdict::Stalled);
    }

    #[test]
    fn the_cap_is_the_reason_without_a_verdict() {
        let c = Convergence::new(1e-8);
        let mut s = crate::solver::SolveStats::default();
        c.finish(&mut s, None, 3e-5);
        assert!(!s.converged);
        assert_eq!(s.recurrence_residual, 3e-5);
        assert_eq!(s.not_converged, Some(NotConverged::IterationCap));
    }
}
