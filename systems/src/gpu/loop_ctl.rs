//! Host control of the Jacobi-CG loop, shared by the strategies: the
//! loop's inputs and end ([`LoopInput`], [`LoopEnd`]), the exact stopping
//! iteration from a chunk of residual history ([`scan_chunk`]) and the
//! chunked loop itself ([`run_chunked`]), written against [`ChunkDevice`]
//! so that it is tested on the CPU with an emulated device. No device
//! code here.

use super::device::GResult;
use super::kernels::HIST;
use super::launch;

/// The fixed inputs of a CG loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopInput {
    /// Rows (all of them, decoupled ones included).
    pub n: usize,
    /// Stored entries of the full matrix.
    pub nnz: usize,
    /// Absolute stopping threshold `rtol ||b||`.
    pub atol: f64,
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
    /// Whether the stopping rule held.
    pub converged: bool,
    /// `r.r` at the end.
    pub rr: f64,
    /// `(iteration, p.Ap)` where `p.Ap <= 0` stopped the loop.
    pub breakdown: Option<(usize, f64)>,
}

impl LoopEnd {
    /// Stopped by the rule at the top of iteration `it`.
    pub fn converged(it: usize, rr: f64) -> Self {
        Self {
            iterations: it,
            converged: true,
            rr,
            breakdown: None,
        }
    }

    /// Hit the cap.
    pub fn capped(it: usize, rr: f64) -> Self {
        Self {
            iterations: it,
            converged: false,
            rr,
            breakdown: None,
        }
    }

    /// Broke down in iteration `it`.
    pub fn breakdown(it: usize, pq: f64) -> Self {
        Self {
            iterations: it,
            converged: false,
            rr: f64::NAN,
            breakdown: Some((it, pq)),
        }
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
    /// The stopping rule holds at the top of this iteration.
    Converged(usize),
    /// CG broke down in this iteration.
    Breakdown(usize),
    /// Neither: launch the next chunk.
    Continue,
}

/// Scans iterations `from..=to` for the first whose residual meets the
/// stopping rule (`sqrt(rr(it)) < atol`, SciPy's and the serial test).
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

/// The device side of the chunked loop.
pub trait ChunkDevice {
    /// Enqueues iteration `it` (no waiting).
    fn iterate(&mut self, it: usize) -> GResult<()>;
    /// Enqueues iterations `it0..it0 + n` (no waiting): one
    /// [`ChunkDevice::iterate`] each, unless the device runs a chunk in
    /// one go (the persistent kernel).
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
}

/// Host loop of the custom strategy: chunks of `check_every` iterations,
/// one read-back per chunk, exact iteration count. `progress` is called at
/// every multiple of 50 iterations, as the serial solver does. Returns the
/// end and the number of read-backs.
pub fn run_chunked(
    dev: &mut dyn ChunkDevice,
    ring: usize,
    check_every: usize,
    input: &LoopInput,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<(LoopEnd, usize)> {
    let check_every = check_every.max(1);
    assert!(ring >= launch::history_ring(check_every));
    let mut it0 = 0usize;
    let mut reads = 0usize;
    loop {
        let n = check_every.min(input.max_iter.saturating_sub(it0));
        dev.chunk(it0, n)?;
        let (hist, breakdown) = dev.read()?;
        reads += 1;
        let rr = |it: usize| hist[(it % ring) * HIST];
        let outcome = scan_chunk(rr, it0, it0 + n, input.atol, breakdown);
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
            ChunkOutcome::Converged(c) => return Ok((LoopEnd::converged(c, rr(c)), reads)),
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

    /// A CPU emulation of the three CG kernels with the device's stop-flag
    /// semantics, on a dense SPD matrix.
    struct Emulated {
        a: Vec<Vec<f64>>,
        inv_diag: Vec<f64>,
        x: Vec<f64>,
        r: Vec<f64>,
        p: Vec<f64>,
        q: Vec<f64>,
        hist: Vec<f64>,
        ring: usize,
        atol: f64,
        stop: bool,
        breakdown: Option<usize>,
        launched: usize,
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
                inv_diag,
                x: vec![0.0; n],
                r: b.to_vec(),
                p: vec![0.0; n],
                q: vec![0.0; n],
                hist,
                ring,
                atol,
                stop: false,
                breakdown: None,
                launched: 0,
            }
        }
        fn h(&self, it: usize, k: usize) -> f64 {
            self.hist[(it % self.ring) * HIST + k]
        }
    }

    impl ChunkDevice for Emulated {
        fn iterate(&mut self, it: usize) -> GResult<()> {
            self.launched += 1;
            let n = self.r.len();
            // qf_cg_direction
            if self.stop {
                return Ok(());
            }
            if self.h(it, 0).sqrt() < self.atol {
                self.stop = true;
                return Ok(());
            }
            let beta = if it == 0 {
                0.0
            } else {
                self.h(it, 1) / self.h(it - 1, 1)
            };
            for i in 0..n {
                self.p[i] = self.r[i] * self.inv_diag[i] + beta * self.p[i];
            }
            // qf_cg_spmv
            let mut pq = 0.0;
            for i in 0..n {
                self.q[i] = (0..n).map(|j| self.a[i][j] * self.p[j]).sum();
                pq += self.p[i] * self.q[i];
            }
            self.hist[(it % self.ring) * HIST + 2] = pq;
            // qf_cg_update
            if !positive(pq) {
                self.stop = true;
                self.breakdown = Some(it);
                return Ok(());
            }
            let alpha = self.h(it, 1) / pq;
            let (mut rr, mut rz) = (0.0, 0.0);
            for i in 0..n {
                self.x[i] += alpha * self.p[i];
                self.r[i] -= alpha * self.q[i];
                rr += self.r[i] * self.r[i];
                rz += self.r[i] * self.r[i] * self.inv_diag[i];
            }
            let s = ((it + 1) % self.ring) * HIST;
            self.hist[s] = rr;
            self.hist[s + 1] = rz;
            Ok(())
        }
        fn read(&mut self) -> GResult<(Vec<f64>, Option<usize>)> {
            Ok((self.hist.clone(), self.breakdown))
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

    /// The reference: one iteration at a time, checking after each.
    fn reference(a: Vec<Vec<f64>>, b: &[f64], atol: f64, max_iter: usize) -> (usize, bool) {
        let mut dev = Emulated::new(a, b, 3, atol);
        let mut it = 0;
        loop {
            if dev.h(it, 0).sqrt() < atol {
                return (it, true);
            }
            if it >= max_iter {
                return (it, false);
            }
            dev.iterate(it).unwrap();
            it += 1;
        }
    }

    #[test]
    fn chunked_loop_gives_the_exact_iteration_count() {
        let n = 60;
        let b: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let bn = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        for rtol in [1e-2, 1e-6, 1e-10] {
            let atol = rtol * bn;
            let (expect, conv) = reference(spd(n, 0.0), &b, atol, 10_000);
            assert!(conv);
            for k in [1, 2, 3, 7, 32, 1000] {
                let ring = launch::history_ring(k);
                let mut dev = Emulated::new(spd(n, 0.0), &b, ring, atol);
                let input = LoopInput {
                    n,
                    nnz: n * n,
                    atol,
                    b_norm: bn,
                    max_iter: 10_000,
                };
                let mut calls = vec![];
                let (end, reads) = run_chunked(&mut dev, ring, k, &input, &mut |i, r| {
                    calls.push((i, r));
                    true
                })
                .unwrap();
                assert!(end.converged);
                assert_eq!(end.iterations, expect, "rtol {rtol} check every {k}");
                assert!(end.rr.sqrt() < atol);
                assert_eq!(reads, expect.div_ceil(k).max(1));
                // iterations past convergence were launched but did nothing
                assert!(dev.launched >= expect);
                assert_eq!(calls.len(), expect / 50);
            }
        }
    }

    #[test]
    fn cap_and_zero_cap() {
        let n = 200;
        let b = vec![1.0; n];
        let bn = (n as f64).sqrt();
        // atol 0: the rule can never hold, only the cap stops the loop
        for (cap, k) in [(5, 32), (5, 2), (64, 32), (0, 32)] {
            let ring = launch::history_ring(k);
            let mut dev = Emulated::new(spd(n, 0.0), &b, ring, 0.0);
            let input = LoopInput {
                n,
                nnz: n * n,
                atol: 0.0,
                b_norm: bn,
                max_iter: cap,
            };
            let (end, _) = run_chunked(&mut dev, ring, k, &input, &mut |_, _| true).unwrap();
            assert!(!end.converged);
            assert_eq!(end.iterations, cap);
            assert_eq!(dev.launched, cap);
            let (_, conv) = reference(spd(n, 0.0), &b, 0.0, cap);
            assert!(!conv);
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
            let input = LoopInput {
                n,
                nnz: n * n,
                atol: 1e-12,
                b_norm: 1.0,
                max_iter: 100,
            };
            let (end, _) = run_chunked(&mut dev, ring, k, &input, &mut |_, _| true).unwrap();
            let (it, pq) = end.breakdown.expect("breaks down");
            assert_eq!(Some(it), dev.breakdown);
            assert!(!positive(pq));
            assert!(!end.converged);
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
