//! Host control of the Jacobi-CG loop, shared by the strategies: the
//! loop's inputs and end ([`LoopInput`], [`LoopEnd`]), the exact stopping
//! iteration from a chunk of residual history ([`scan_chunk`]) and the
//! chunked loop itself ([`run_chunked`]) with the convergence rule every
//! solver shares ([`Convergence`], as `solver::pcg` applies it: where the
//! recurrence meets the target, the device folds the CG correction into
//! the iterate, replaces the residual by `b - A x` and computes the
//! residual of the `u` the iterate gives, which the rule judges; above
//! `rtol` the loop goes on from the same iteration, restarted, to a lowered
//! target), written against [`ChunkDevice`] so that it is tested on the CPU
//! with an emulated device. No device code here.
//!
//! Where a distributed run would hook in (one rank's share of the rows
//! per device): the halo exchange of the direction `p` goes between the
//! direction and the product of each iteration (inside
//! [`ChunkDevice::iterate`], before the SpMV launch: with the direction
//! formed inside the SpMV, the exchange would need the separate direction
//! kernel, or `r` and `p_old` exchanged instead), and the all-reduce of
//! the three sums (`p.q` after the SpMV, `r.r` and `r.z` after the update)
//! replaces the grid reductions' last step; a graph captures neither, so a
//! distributed loop launches its iterations one by one
//! (`CgLoop::Launches`). The true residual's sums
//! ([`ChunkDevice::true_residual`]) need the same all-reduce.

use super::device::GResult;
use super::kernels::HIST;
use super::launch;
use crate::solver::{Convergence, Verdict};

/// The fixed inputs of a CG loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopInput {
    /// Rows (all of them, decoupled ones included).
    pub n: usize,
    /// Stored entries of the full matrix.
    pub nnz: usize,
    /// Relative tolerance of the convergence rule.
    pub rtol: f64,
    /// `||b||`.
    pub b_norm: f64,
    /// Iteration cap.
    pub max_iter: usize,
}

/// How a CG loop ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopEnd {
    /// Iterations done (matrix-vector products).
    pub iterations: usize,
    /// The convergence rule's last verdict (`None`: the cap stopped the
    /// loop, or it broke down).
    pub verdict: Option<Verdict>,
    /// `r.r` at the end (the recomputed one after a check).
    pub rr: f64,
    /// `(iteration, p.Ap)` where `p.Ap <= 0` stopped the loop.
    pub breakdown: Option<(usize, f64)>,
}

impl LoopEnd {
    /// Stopped by the rule's verdict `v` at the top of iteration `it`.
    pub fn judged(it: usize, v: Verdict, rr: f64) -> Self {
        Self {
            iterations: it,
            verdict: Some(v),
            rr,
            breakdown: None,
        }
    }

    /// Converged at the top of iteration `it`.
    pub fn converged(it: usize, rr: f64) -> Self {
        Self::judged(it, Verdict::Converged, rr)
    }

    /// Hit the cap.
    pub fn capped(it: usize, rr: f64) -> Self {
        Self {
            iterations: it,
            verdict: None,
            rr,
            breakdown: None,
        }
    }

    /// Broke down in iteration `it`.
    pub fn breakdown(it: usize, pq: f64) -> Self {
        Self {
            iterations: it,
            verdict: None,
            rr: f64::NAN,
            breakdown: Some((it, pq)),
        }
    }

    /// Whether the rule said converged.
    pub fn is_converged(&self) -> bool {
        self.verdict == Some(Verdict::Converged)
    }
}

/// `x > 0`, false for NaN: the curvature test of CG (a NaN `p.Ap` is a
/// breakdown too, as in the serial solver).
pub fn positive(x: f64) -> bool {
    x > 0.0
}

/// What one chunk of the residual history says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The recurrence meets the target at the top of this iteration.
    Converged(usize),
    /// CG broke down in this iteration.
    Breakdown(usize),
    /// Neither: launch the next chunk.
    Continue,
}

/// Scans iterations `from..=to` for the first whose residual meets the
/// stopping test (`sqrt(rr(it)) < atol`, SciPy's and the serial test).
/// Entries after a breakdown at iteration `b` are never written, so the
/// scan stops at `b`.
pub fn scan_chunk(
    rr: impl Fn(usize) -> f64,
    from: usize,
    to: usize,
    atol: f64,
    breakdown: Option<usize>,
) -> ChunkOutcome {
    let last = breakdown.map_or(to, |b| b.min(to));
    if let Some(it) = (from..=last).find(|&it| rr(it).sqrt() < atol) {
        return ChunkOutcome::Converged(it);
    }
    match breakdown {
        Some(b) => ChunkOutcome::Breakdown(b),
        None => ChunkOutcome::Continue,
    }
}

/// The device side of the chunked loop. The device keeps the loop's
/// state: the iteration, the iteration of the last (re)start and the
/// stopping threshold `atol`; once the stopping test holds at the top of
/// an iteration (or CG breaks down) it does nothing until
/// [`ChunkDevice::restart`].
pub trait ChunkDevice {
    /// Enqueues iteration `it` (no waiting).
    fn iterate(&mut self, it: usize) -> GResult<()>;
    /// Enqueues iterations `it0..it0 + n` (no waiting): one
    /// [`ChunkDevice::iterate`] each, unless the device runs a chunk in
    /// one go (a graph, the persistent kernel).
    fn chunk(&mut self, it0: usize, n: usize) -> GResult<()> {
        for it in it0..it0 + n {
            self.iterate(it)?;
        }
        Ok(())
    }
    /// Waits for the queued iterations; returns the history ring
    /// ([`HIST`] doubles per slot: `r.r`, `r.z`, `p.q`) and the iteration
    /// of a breakdown, if any.
    fn read(&mut self) -> GResult<(Vec<f64>, Option<usize>)>;
    /// At the top of iteration `it`: folds the correction into the
    /// iterate, replaces the residual by `b - A x`, stores its `r.r` and
    /// `r.z` in slot `it` of the history, and returns `r.r` and the
    /// relative residual the rule judges (that of the solution `u` the
    /// iterate gives; waits).
    fn true_residual(&mut self, it: usize) -> GResult<(f64, f64)>;
    /// Sets the loop's state for a (re)start at iteration `it` (the
    /// direction starts from `z` alone there) with threshold `atol`; the
    /// loop runs again.
    fn restart(&mut self, it: usize, atol: f64) -> GResult<()>;
}

/// Host loop of the custom strategy: chunks of `check_every` iterations,
/// one read-back per chunk, exact iteration count; where the recurrence
/// meets `rule`'s target, the true residual is recomputed and judged
/// ([`Convergence::judge`]; a replacement restarts the loop at that
/// iteration with the lowered target). `progress` is called at every
/// multiple of 50 iterations, as the serial solver does. Returns the end
/// and the number of read-backs.
pub fn run_chunked(
    dev: &mut dyn ChunkDevice,
    ring: usize,
    check_every: usize,
    input: &LoopInput,
    rule: &mut Convergence,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<(LoopEnd, usize)> {
    let check_every = check_every.max(1);
    assert!(ring >= launch::history_ring(check_every));
    let mut it0 = 0usize;
    let mut reads = 0usize;
    loop {
        let atol = rule.target() * input.b_norm;
        let n = check_every.min(input.max_iter.saturating_sub(it0));
        dev.chunk(it0, n)?;
        let (hist, breakdown) = dev.read()?;
        reads += 1;
        let rr = |it: usize| hist[(it % ring) * HIST];
        let outcome = scan_chunk(rr, it0, it0 + n, atol, breakdown);
        let upto = match outcome {
            ChunkOutcome::Converged(c) => c,
            ChunkOutcome::Breakdown(b) => b,
            ChunkOutcome::Continue => it0 + n,
        };
        for k in (it0 + 1..=upto).filter(|k| k % 50 == 0) {
            if !progress(k, rr(k).sqrt() / input.b_norm) {
                return Err(crate::solver::SolveError::Interrupted { iteration: k }.into());
            }
        }
        match outcome {
            ChunkOutcome::Converged(c) => {
                let (true_rr, judged) = dev.true_residual(c)?;
                reads += 1;
                match rule.judge(c, judged) {
                    Verdict::Replace => {
                        dev.restart(c, rule.target() * input.b_norm)?;
                        it0 = c;
                        continue;
                    }
                    v => return Ok((LoopEnd::judged(c, v, true_rr), reads)),
                }
            }
            ChunkOutcome::Breakdown(b) => {
                let pq = hist[(b % ring) * HIST + 2];
                return Ok((LoopEnd::breakdown(b, pq), reads));
            }
            ChunkOutcome::Continue => {}
        }
        it0 += n;
        if it0 >= input.max_iter {
            return Ok((LoopEnd::capped(it0, rr(it0)), reads));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU emulation of the CG kernels with the device's loop state
    /// (iteration, restart, threshold, stop flag), on a dense SPD matrix.
    /// `drift` perturbs the updated residual in each of the first 20
    /// iterations (the recurrence then drifts from the true residual, as
    /// rounding makes it at scale); `floor` adds a rounding-floor-like error of alternating
    /// sign to every recomputed residual (the true residual then cannot go
    /// below it).
    struct Emulated {
        a: Vec<Vec<f64>>,
        b: Vec<f64>,
        inv_diag: Vec<f64>,
        /// The correction (the iterate is `base + x`).
        x: Vec<f64>,
        base: Vec<f64>,
        r: Vec<f64>,
        p: Vec<f64>,
        /// The second direction buffer of the two-kernel iteration
        /// (`qf_cg_spmvd`: the old direction in `p` at even iterations, in
        /// `p2` at odd ones; `None`: the three-kernel iteration, `p` in
        /// place).
        p2: Option<Vec<f64>>,
        q: Vec<f64>,
        hist: Vec<f64>,
        ring: usize,
        atol: f64,
        iter: usize,
        restart_at: usize,
        stop: bool,
        breakdown: Option<usize>,
        launched: usize,
        drift: f64,
        floor: f64,
        checks: usize,
    }

    impl Emulated {
        fn new(a: Vec<Vec<f64>>, b: &[f64], ring: usize, atol: f64) -> Self {
            let n = b.len();
            let inv_diag: Vec<f64> = (0..n).map(|i| 1.0 / a[i][i]).collect();
            let mut hist = vec![f64::NAN; ring * HIST];
            hist[0] = b.iter().map(|v| v * v).sum();
            hist[1] = b.iter().zip(&inv_diag).map(|(v, d)| v * v * d).sum();
            Self {
                a,
                b: b.to_vec(),
                inv_diag,
                x: vec![0.0; n],
                base: vec![0.0; n],
                r: b.to_vec(),
                p: vec![0.0; n],
                p2: None,
                q: vec![0.0; n],
                hist,
                ring,
                atol,
                iter: 0,
                restart_at: 0,
                stop: false,
                breakdown: None,
                launched: 0,
                drift: 0.0,
                floor: 0.0,
                checks: 0,
            }
        }
        fn h(&self, it: usize, k: usize) -> f64 {
            self.hist[(it % self.ring) * HIST + k]
        }
        fn true_rel(&self) -> f64 {
            let n = self.b.len();
            let rr: f64 = (0..n)
                .map(|i| {
                    let ax: f64 = (0..n)
                        .map(|j| self.a[i][j] * (self.base[j] + self.x[j]))
                        .sum();
                    (self.b[i] - ax).powi(2)
                })
                .sum();
            (rr / self.b.iter().map(|v| v * v).sum::<f64>()).sqrt()
        }
    }

    impl ChunkDevice for Emulated {
        fn iterate(&mut self, it: usize) -> GResult<()> {
            self.launched += 1;
            let n = self.r.len();
            if self.stop {
                return Ok(());
            }
            // the host's bookkeeping follows the device's iteration
            assert_eq!(it, self.iter);
            let it = self.iter;
            // the top: stop test, direction
            if self.h(it, 0).sqrt() < self.atol {
                self.stop = true;
                return Ok(());
            }
            let beta = if it == self.restart_at {
                0.0
            } else {
                self.h(it, 1) / self.h(it - 1, 1)
            };
            let dir = |r: f64, d: f64, p: f64| beta.mul_add(p, r * d);
            let mut pq = 0.0;
            match self.p2.as_mut() {
                None => {
                    // qf_cg_direction, then qf_cg_spmv
                    for i in 0..n {
                        self.p[i] = dir(self.r[i], self.inv_diag[i], self.p[i]);
                    }
                    for i in 0..n {
                        self.q[i] = (0..n).map(|j| self.a[i][j] * self.p[j]).sum();
                        pq += self.p[i] * self.q[i];
                    }
                }
                Some(p2) => {
                    // qf_cg_spmvd: the direction formed per column from
                    // the old one, written to the other buffer
                    let (pin, pout) = if it & 1 == 1 {
                        (&*p2, &mut self.p)
                    } else {
                        (&self.p, &mut *p2)
                    };
                    let mut fresh = vec![0.0; n];
                    for i in 0..n {
                        self.q[i] = (0..n)
                            .map(|j| self.a[i][j] * dir(self.r[j], self.inv_diag[j], pin[j]))
                            .sum();
                        fresh[i] = dir(self.r[i], self.inv_diag[i], pin[i]);
                        pq += fresh[i] * self.q[i];
                    }
                    pout.copy_from_slice(&fresh);
                }
            }
            self.hist[(it % self.ring) * HIST + 2] = pq;
            // the update
            if !positive(pq) {
                self.stop = true;
                self.breakdown = Some(it);
                return Ok(());
            }
            let alpha = self.h(it, 1) / pq;
            let (mut rr, mut rz) = (0.0, 0.0);
            // qf_cg_update: the direction of iteration it is in p at odd
            // iterations and in p2 at even ones (the three-kernel
            // iteration: p)
            let p = match &self.p2 {
                Some(p2) if it & 1 == 0 => p2.clone(),
                _ => self.p.clone(),
            };
            for i in 0..n {
                self.x[i] += alpha * p[i];
                self.r[i] -= alpha * self.q[i];
                if it < 20 {
                    self.r[i] += self.drift * ((i % 3) as f64 + 1.0);
                }
                rr += self.r[i] * self.r[i];
                rz += self.r[i] * self.r[i] * self.inv_diag[i];
            }
            let s = ((it + 1) % self.ring) * HIST;
            self.hist[s] = rr;
            self.hist[s + 1] = rz;
            self.iter += 1;
            Ok(())
        }
        fn read(&mut self) -> GResult<(Vec<f64>, Option<usize>)> {
            Ok((self.hist.clone(), self.breakdown))
        }
        fn true_residual(&mut self, it: usize) -> GResult<(f64, f64)> {
            assert_eq!(it, self.iter);
            let n = self.b.len();
            for i in 0..n {
                self.base[i] += self.x[i];
                self.x[i] = 0.0;
            }
            self.checks += 1;
            let sign = if self.checks.is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            let (mut rr, mut rz) = (0.0, 0.0);
            for i in 0..n {
                let ax: f64 = (0..n).map(|j| self.a[i][j] * self.base[j]).sum();
                let v = self.b[i] - ax + sign * self.floor;
                self.r[i] = v;
                rr += v * v;
                rz += v * v * self.inv_diag[i];
            }
            let s = (it % self.ring) * HIST;
            self.hist[s] = rr;
            self.hist[s + 1] = rz;
            let bn = self.b.iter().map(|v| v * v).sum::<f64>().sqrt();
            Ok((rr, rr.sqrt() / bn))
        }
        fn restart(&mut self, it: usize, atol: f64) -> GResult<()> {
            assert_eq!(it, self.iter);
            self.stop = false;
            self.breakdown = None;
            self.restart_at = it;
            self.atol = atol;
            Ok(())
        }
    }

    fn spd(n: usize, shift: f64) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            2.0 + shift + 0.1 * (i % 7) as f64
                        } else if i.abs_diff(j) == 1 {
                            -1.0
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The reference: `solver::pcg`'s loop over the emulated kernels, one
    /// iteration at a time, checking after each. Returns the iterations,
    /// the verdict and the replacements.
    fn reference(dev: &mut Emulated, rtol: f64, bn: f64, cap: usize) -> LoopEnd {
        let mut rule = Convergence::new(rtol);
        let mut it = 0;
        loop {
            if dev.h(it, 0).sqrt() < rule.target() * bn {
                let (rr, judged) = dev.true_residual(it).unwrap();
                match rule.judge(it, judged) {
                    Verdict::Replace => {
                        dev.restart(it, rule.target() * bn).unwrap();
                        continue;
                    }
                    v => return LoopEnd::judged(it, v, rr),
                }
            }
            if it >= cap {
                return LoopEnd::capped(it, dev.h(it, 0));
            }
            dev.iterate(it).unwrap();
            if let Some(b) = dev.breakdown {
                return LoopEnd::breakdown(b, dev.h(b, 2));
            }
            it += 1;
        }
    }

    fn input(n: usize, rtol: f64, bn: f64, max_iter: usize) -> LoopInput {
        LoopInput {
            n,
            nnz: n * n,
            rtol,
            b_norm: bn,
            max_iter,
        }
    }

    fn rhs(n: usize) -> (Vec<f64>, f64) {
        let b: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let bn = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        (b, bn)
    }

    #[test]
    fn chunked_loop_gives_the_exact_iteration_count() {
        let n = 60;
        let (b, bn) = rhs(n);
        for rtol in [1e-2, 1e-6, 1e-10] {
            let mut r = Emulated::new(spd(n, 0.0), &b, 3, rtol * bn);
            let expect = reference(&mut r, rtol, bn, 10_000);
            assert!(expect.is_converged());
            for k in [1, 2, 3, 7, 32, 1000] {
                let ring = launch::history_ring(k);
                let mut dev = Emulated::new(spd(n, 0.0), &b, ring, rtol * bn);
                let mut calls = vec![];
                let mut rule = Convergence::new(rtol);
                let (end, reads) = run_chunked(
                    &mut dev,
                    ring,
                    k,
                    &input(n, rtol, bn, 10_000),
                    &mut rule,
                    &mut |i, r| {
                        calls.push((i, r));
                        true
                    },
                )
                .unwrap();
                assert!(end.is_converged());
                assert_eq!(
                    end.iterations, expect.iterations,
                    "rtol {rtol} check every {k}"
                );
                assert!(end.rr.sqrt() <= rtol * bn);
                assert!(dev.true_rel() <= rtol);
                assert_eq!(rule.replacements(), 0);
                // one read per chunk, one for the check
                assert_eq!(reads, expect.iterations.div_ceil(k).max(1) + 1);
                // iterations past convergence were launched but did nothing
                assert!(dev.launched >= expect.iterations);
                assert_eq!(calls.len(), expect.iterations / 50);
            }
        }
    }

    #[test]
    fn a_drifted_recurrence_is_replaced_and_the_loop_goes_on_to_rtol() {
        let n = 60;
        let (b, bn) = rhs(n);
        let rtol = 1e-10;
        let mut r = Emulated::new(spd(n, 0.0), &b, 3, rtol * bn);
        r.drift = 1e-10;
        let expect = reference(&mut r, rtol, bn, 10_000);
        assert!(expect.is_converged(), "{expect:?}");
        for k in [1, 5, 32] {
            let ring = launch::history_ring(k);
            let mut dev = Emulated::new(spd(n, 0.0), &b, ring, rtol * bn);
            dev.drift = 1e-10;
            let mut rule = Convergence::new(rtol);
            let (end, _) = run_chunked(
                &mut dev,
                ring,
                k,
                &input(n, rtol, bn, 10_000),
                &mut rule,
                &mut |_, _| true,
            )
            .unwrap();
            assert_eq!(end, expect, "check every {k}");
            // the drift made the first check miss: replaced, then below
            assert!(rule.replacements() >= 1, "{rule:?}");
            assert!(dev.true_rel() <= rtol, "{}", dev.true_rel());
            assert!(rule.last().unwrap() <= rtol);
        }
    }

    #[test]
    fn two_kernels_and_three_give_the_same_iterates_bit_for_bit() {
        // the pair of direction buffers alternates with the iteration's
        // parity, also across the restarts of residual replacements (at
        // odd and even iterations)
        let n = 60;
        let (b, bn) = rhs(n);
        let rtol = 1e-10;
        let mut seen_odd_restart = false;
        for drift in [0.0, 1e-10, 3e-10] {
            let mut ends = vec![];
            for fused in [false, true] {
                let ring = launch::history_ring(7);
                let mut dev = Emulated::new(spd(n, 0.0), &b, ring, rtol * bn);
                dev.drift = drift;
                if fused {
                    dev.p2 = Some(vec![0.0; n]);
                }
                let mut rule = Convergence::new(rtol);
                let (end, _) = run_chunked(
                    &mut dev,
                    ring,
                    7,
                    &input(n, rtol, bn, 10_000),
                    &mut rule,
                    &mut |_, _| true,
                )
                .unwrap();
                assert!(end.is_converged());
                seen_odd_restart |= dev.restart_at % 2 == 1;
                ends.push((end, dev.base.clone(), rule.replacements()));
            }
            assert_eq!(ends[0].0, ends[1].0, "drift {drift}");
            assert_eq!(ends[0].2, ends[1].2);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ends[0].1), bits(&ends[1].1), "drift {drift}");
        }
        assert!(
            seen_odd_restart,
            "no restart at an odd iteration was exercised"
        );
    }

    #[test]
    fn a_residual_floor_above_rtol_stops_as_stalled() {
        let n = 40;
        let (b, bn) = rhs(n);
        let rtol = 1e-12;
        let floor = 1e-9;
        let mut r = Emulated::new(spd(n, 0.0), &b, 3, rtol * bn);
        r.floor = floor;
        let expect = reference(&mut r, rtol, bn, 100_000);
        assert_eq!(expect.verdict, Some(Verdict::Stalled), "{expect:?}");
        for k in [1, 32] {
            let ring = launch::history_ring(k);
            let mut dev = Emulated::new(spd(n, 0.0), &b, ring, rtol * bn);
            dev.floor = floor;
            let mut rule = Convergence::new(rtol);
            let (end, _) = run_chunked(
                &mut dev,
                ring,
                k,
                &input(n, rtol, bn, 100_000),
                &mut rule,
                &mut |_, _| true,
            )
            .unwrap();
            assert_eq!(end, expect, "check every {k}");
            assert!(!end.is_converged());
            let mut stats = crate::solver::SolveStats::default();
            rule.finish(&mut stats, end.verdict, end.rr.sqrt() / bn);
            assert!(matches!(
                stats.not_converged,
                Some(crate::solver::NotConverged::Stalled(t)) if t > rtol
            ));
        }
    }

    #[test]
    fn cap_and_zero_cap() {
        let n = 200;
        let b = vec![1.0; n];
        let bn = (n as f64).sqrt();
        // rtol 0: the test can never hold, only the cap stops the loop
        for (cap, k) in [(5, 32), (5, 2), (64, 32), (0, 32)] {
            let ring = launch::history_ring(k);
            let mut dev = Emulated::new(spd(n, 0.0), &b, ring, 0.0);
            let mut rule = Convergence::new(0.0);
            let (end, _) = run_chunked(
                &mut dev,
                ring,
                k,
                &input(n, 0.0, bn, cap),
                &mut rule,
                &mut |_, _| true,
            )
            .unwrap();
            assert!(!end.is_converged());
            assert_eq!(end.verdict, None);
            assert_eq!(end.iterations, cap);
            assert_eq!(dev.launched, cap);
            let mut r = Emulated::new(spd(n, 0.0), &b, 3, 0.0);
            assert_eq!(reference(&mut r, 0.0, bn, cap).verdict, None);
        }
    }

    #[test]
    fn breakdown_is_found_at_its_iteration() {
        // an indefinite matrix: CG breaks down
        let n = 12;
        let mut a = spd(n, 0.0);
        for (i, row) in a.iter_mut().enumerate() {
            row[i] = if i % 2 == 0 { 0.5 } else { -3.0 };
        }
        let b = vec![1.0; n];
        for k in [1, 4, 32] {
            let ring = launch::history_ring(k);
            let mut dev = Emulated::new(a.clone(), &b, ring, 1e-12);
            let mut rule = Convergence::new(1e-12);
            let (end, _) = run_chunked(
                &mut dev,
                ring,
                k,
                &input(n, 1e-12, 1.0, 100),
                &mut rule,
                &mut |_, _| true,
            )
            .unwrap();
            let (it, pq) = end.breakdown.expect("breaks down");
            assert_eq!(Some(it), dev.breakdown);
            assert!(!positive(pq));
            assert!(!end.is_converged());
        }
    }

    #[test]
    fn scan_stops_at_first_hit_and_at_breakdown() {
        let rr = |it: usize| [9.0, 4.0, 1.0, 0.25, 0.0][it];
        assert_eq!(scan_chunk(rr, 0, 4, 1.0, None), ChunkOutcome::Converged(3));
        assert_eq!(scan_chunk(rr, 0, 2, 1.0, None), ChunkOutcome::Continue);
        assert_eq!(
            scan_chunk(rr, 0, 4, 1.0, Some(2)),
            ChunkOutcome::Breakdown(2)
        );
        assert_eq!(scan_chunk(rr, 4, 4, 1.0, None), ChunkOutcome::Converged(4));
        // sqrt(rr) < atol, strictly
        assert_eq!(scan_chunk(rr, 0, 4, 0.5, None), ChunkOutcome::Converged(4));
        // NaN never converges
        assert_eq!(
            scan_chunk(|_| f64::NAN, 0, 3, 1.0, None),
            ChunkOutcome::Continue
        );
    }
}
