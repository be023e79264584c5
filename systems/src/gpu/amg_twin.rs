//! The CPU twin of the device AMG setup (`gpu::amg_setup`,
//! `kernels/amg_setup.cu`): the same equilibration (no renumbering), the
//! same strength, the same distance-2 independent set and attachment, the
//! same tentative and smoothed prolongators and Galerkin products, in the
//! same order of operations, written plainly in Rust. It is what the
//! device's combinatorics and arithmetic are tested against: on the CPU
//! by the unit tests below (properties of the aggregation, the products
//! against dense algebra), and on a GPU by [`check_device_setup`], which
//! builds the hierarchy both ways from the same device-assembled matrix
//! and compares them level by level.

use super::amg_setup::{self, DevCsr};
use super::device::{Device, GResult};
use super::pattern::DeviceSystem;
use super::report::GpuReport;
use crate::amg::{AmgSettings, Csr, strength};
use crate::solver::Exec;

/// No aggregate.
pub const NONE: u32 = u32::MAX;

/// The equilibrated, decoupled system in the original order (the device's
/// `DevAmgSystem`).
#[derive(Debug, Clone)]
pub struct TwinSystem {
    /// `D K D` on the coupled rows.
    pub a: Csr,
    /// `D f` on the coupled rows.
    pub b: Vec<f64>,
    /// Near-null-space vector `1 / d`.
    pub bnull: Vec<f64>,
    /// Original index of each coupled row.
    pub rows: Vec<u32>,
    /// Decoupled rows' solution.
    pub direct: Vec<f64>,
}

/// [`crate::amg::AmgSystem::from_full`] without the renumbering, as
/// `qf_as_diag`, `qf_as_compact` and `qf_as_fill` compute it.
pub fn equilibrate(n: usize, fp: &[u32], fc: &[u32], fv: &[f64], f: &[f64]) -> TwinSystem {
    let diag = |i: usize| {
        let r = fp[i] as usize..fp[i + 1] as usize;
        fc[r.clone()]
            .binary_search(&(i as u32))
            .map_or(0.0, |k| fv[r.start + k])
    };
    let kd: Vec<f64> = (0..n).map(diag).collect();
    let d: Vec<f64> = kd.iter().map(|k| 1.0 / k.abs().sqrt()).collect();
    let coupled: Vec<bool> = (0..n).map(|i| fp[i + 1] - fp[i] > 1).collect();
    let mut cidx = vec![0u32; n + 1];
    for i in 0..n {
        cidx[i + 1] = cidx[i] + coupled[i] as u32;
    }
    let m = cidx[n] as usize;
    let mut rowptr = vec![0usize];
    let (mut col, mut val) = (Vec::new(), Vec::new());
    let (mut b, mut bnull, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    let mut direct = vec![0.0; n];
    for i in 0..n {
        if !coupled[i] {
            direct[i] = f[i] / kd[i];
            continue;
        }
        rows.push(i as u32);
        b.push(d[i] * f[i]);
        bnull.push(1.0 / d[i]);
        for k in fp[i] as usize..fp[i + 1] as usize {
            let j = fc[k] as usize;
            col.push(cidx[j]);
            val.push(d[i] * fv[k] * d[j]);
        }
        rowptr.push(col.len());
    }
    TwinSystem {
        a: Csr::new(m, m, rowptr, col, val),
        b,
        bnull,
        rows,
        direct,
    }
}

/// The priority tuple of `qf_mis_tuple`.
pub fn mis_tuple(state: u64, i: u32) -> u64 {
    let mut h = i.wrapping_mul(0x9E37_79B1);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    (state << 62) | (((h & 0x3fff_ffff) as u64) << 32) | i as u64
}

/// The maximal distance-2 independent set of the strength graph
/// `(sp, sj)` (`qf_as_mis_*`): rounds of two max-propagation sweeps of the
/// priority tuples; returns the final tuples (state 2: in the set) and the
/// rounds taken.
pub fn mis2(sp: &[usize], sj: &[u32]) -> (Vec<u64>, usize) {
    let m = sp.len() - 1;
    let nb = |i: usize| &sj[sp[i]..sp[i + 1]];
    let mut t: Vec<u64> = (0..m)
        .map(|i| mis_tuple(u64::from(sp[i + 1] > sp[i]), i as u32))
        .collect();
    let sweep = |t: &[u64]| -> Vec<u64> {
        (0..m)
            .map(|i| nb(i).iter().fold(t[i], |v, &j| v.max(t[j as usize])))
            .collect()
    };
    let mut rounds = 0;
    loop {
        rounds += 1;
        let t2 = sweep(&sweep(&t));
        let mut left = 0;
        for i in 0..m {
            let v = t[i];
            if v >> 62 == 1 {
                let low = v & ((1u64 << 62) - 1);
                if t2[i] == v {
                    t[i] = (2u64 << 62) | low;
                } else if t2[i] >> 62 == 2 {
                    t[i] = low;
                } else {
                    left += 1;
                }
            }
        }
        if left == 0 {
            return (t, rounds);
        }
    }
}

/// The device aggregation: the roots of [`mis2`], then every node joins
/// the root of highest priority among its strong neighbours, else the
/// aggregate of its highest-priority strong neighbour so assigned. Nodes
/// without strong neighbours get [`NONE`]. Returns the aggregates, their
/// count and the rounds of the set.
pub fn aggregate(sp: &[usize], sj: &[u32]) -> (Vec<u32>, usize, usize) {
    let m = sp.len() - 1;
    let nb = |i: usize| &sj[sp[i]..sp[i + 1]];
    let (t, rounds) = mis2(sp, sj);
    let root = |i: usize| t[i] >> 62 == 2;
    let mut rootid = vec![0u32; m];
    let mut nagg = 0u32;
    for (i, r) in rootid.iter_mut().enumerate() {
        *r = nagg;
        nagg += root(i) as u32;
    }
    const PENDING: u32 = NONE - 1;
    let pass0: Vec<u32> = (0..m)
        .map(|i| {
            if root(i) {
                rootid[i]
            } else if nb(i).is_empty() {
                NONE
            } else {
                let mut best = (0u64, NONE);
                for &j in nb(i) {
                    let j = j as usize;
                    if root(j) && t[j] > best.0 {
                        best = (t[j], j as u32);
                    }
                }
                if best.1 == NONE {
                    PENDING
                } else {
                    rootid[best.1 as usize]
                }
            }
        })
        .collect();
    let agg: Vec<u32> = (0..m)
        .map(|i| {
            if pass0[i] != PENDING {
                return pass0[i];
            }
            let mut best = (0u64, NONE);
            for &j in nb(i) {
                let j = j as usize;
                if pass0[j] < PENDING && t[j] >= best.0 {
                    best = (t[j], j as u32);
                }
            }
            assert_ne!(best.1, NONE, "node {i} left without an aggregate");
            pass0[best.1 as usize]
        })
        .collect();
    (agg, nagg as usize, rounds)
}

/// `t_i = B_i / ||B restricted to agg_i||` with the norms summed over
/// each aggregate's members in increasing index (`qf_as_agg_norms`,
/// `qf_as_tentative`); returns `(t, norms)`.
pub fn tentative(agg: &[u32], nagg: usize, bnull: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut s = vec![0.0; nagg];
    for (i, &g) in agg.iter().enumerate() {
        if g != NONE {
            s[g as usize] += bnull[i] * bnull[i];
        }
    }
    let norms: Vec<f64> = s.iter().map(|v| v.sqrt()).collect();
    let t = agg
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            if g == NONE || norms[g as usize] == 0.0 {
                0.0
            } else {
                bnull[i] / norms[g as usize]
            }
        })
        .collect();
    (t, norms)
}

/// `P = (I - omega D^-1 A) T` with sorted rows (`qf_as_prolong_*`).
pub fn prolongator(a: &Csr, inv: &[f64], agg: &[u32], t: &[f64], nagg: usize, omega: f64) -> Csr {
    let mut rowptr = vec![0usize];
    let (mut col, mut val) = (Vec::new(), Vec::new());
    for i in 0..a.nrows() {
        let (c, v) = a.row(i);
        let mut gs: Vec<u32> = c.iter().map(|&j| agg[j as usize]).collect();
        gs.push(agg[i]);
        gs.retain(|&g| g != NONE);
        gs.sort_unstable();
        gs.dedup();
        let mw = -(omega * inv[i]);
        for g in gs {
            let mut s = if agg[i] == g { t[i] } else { 0.0 };
            for (&j, &x) in c.iter().zip(v) {
                if agg[j as usize] == g {
                    s += mw * x * t[j as usize];
                }
            }
            col.push(g);
            val.push(s);
        }
        rowptr.push(col.len());
    }
    Csr::new(a.nrows(), nagg, rowptr, col, val)
}

/// `X Y` with each row's columns sorted (the device's product; the
/// values are summed in the order of [`Csr::matmul`]).
pub fn product(x: &Csr, y: &Csr) -> Csr {
    sorted(&x.matmul(Exec::Serial, y))
}

/// `a` with each row's entries sorted by column.
pub fn sorted(a: &Csr) -> Csr {
    let mut col = Vec::with_capacity(a.nnz());
    let mut val = Vec::with_capacity(a.nnz());
    for i in 0..a.nrows() {
        let (c, v) = a.row(i);
        let mut e: Vec<(u32, f64)> = c.iter().copied().zip(v.iter().copied()).collect();
        e.sort_by_key(|p| p.0);
        col.extend(e.iter().map(|p| p.0));
        val.extend(e.iter().map(|p| p.1));
    }
    Csr::new(a.nrows(), a.ncols(), a.rowptr().to_vec(), col, val)
}

/// One level of the twin hierarchy.
#[derive(Debug, Clone)]
pub struct TwinLevel {
    /// The operator.
    pub a: Csr,
    /// Aggregates.
    pub agg: Vec<u32>,
    /// Their count.
    pub nagg: usize,
    /// Prolongator.
    pub p: Csr,
    /// Restriction.
    pub r: Csr,
}

/// The twin hierarchy of `a` with near-null-space `bnull`, taking the
/// spectral radius of level `l` from `rho(l, a, inv_diag)`.
pub fn build(
    a: Csr,
    bnull: Vec<f64>,
    settings: &AmgSettings,
    rho: &mut dyn FnMut(usize, &Csr, &[f64]) -> f64,
) -> (Vec<TwinLevel>, Csr) {
    let mut levels = Vec::new();
    let (mut a, mut bvec) = (a, bnull);
    loop {
        let m = a.nrows();
        if m <= settings.max_coarse || levels.len() + 1 >= settings.max_levels {
            break;
        }
        let diag = a.diagonal();
        let (sp, sj) = strength(Exec::Serial, &a, &diag, settings.theta, settings.strength);
        let (agg, nagg, _) = aggregate(&sp, &sj);
        if nagg == 0 || nagg >= m {
            break;
        }
        let inv: Vec<f64> = diag.iter().map(|d| 1.0 / d).collect();
        let r0 = rho(levels.len(), &a, &inv);
        let (t, norms) = tentative(&agg, nagg, &bvec);
        let p = prolongator(&a, &inv, &agg, &t, nagg, settings.omega_scale / r0);
        let r = p.transpose();
        let ac = product(&r, &product(&a, &p));
        levels.push(TwinLevel { a, agg, nagg, p, r });
        a = ac;
        bvec = norms;
    }
    (levels, a)
}

/// Largest relative difference of two matrices of the same pattern
/// (`None` if the patterns differ).
pub fn matrix_diff(x: &Csr, y: (&[u32], &[u32], &[f64])) -> Option<f64> {
    let (yp, yc, yv) = y;
    if x.rowptr().len() != yp.len()
        || x.rowptr().iter().zip(yp).any(|(a, &b)| *a != b as usize)
        || x.cols() != yc
    {
        return None;
    }
    let scale = x
        .vals()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-300);
    Some(
        x.vals()
            .iter()
            .zip(yv)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
            / scale,
    )
}

/// How one level of the device hierarchy compares with the twin's.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelCheck {
    /// Rows.
    pub rows: usize,
    /// Aggregates on the device and in the twin.
    pub nagg: (usize, usize),
    /// Whether every row is in the same aggregate.
    pub same_aggregates: bool,
    /// Largest relative difference of `A`, `P`, `R` (`None`: the patterns
    /// differ).
    pub diffs: [Option<f64>; 3],
    /// The device's spectral radius estimate.
    pub rho: f64,
}

/// Builds the hierarchy of the device system `sys` on the device and in
/// the twin (from the same downloaded matrix; the twin takes the device's
/// spectral radius estimates) and compares them level by level; the last
/// entry compares the coarsest operators.
pub fn check_device_setup(
    dev: &Device,
    report: &mut GpuReport,
    sys: &DeviceSystem,
    settings: &AmgSettings,
) -> GResult<Vec<LevelCheck>> {
    let n = sys.pattern.n;
    let nnz = sys.pattern.nnz();
    let fp = dev.download(report, "check", &sys.rowptr, n + 1)?;
    let fc = dev.download(report, "check", &sys.col, nnz)?;
    let fv = dev.download(report, "check", &sys.val, nnz)?;
    let f = dev.download(report, "check", &sys.f, n)?;
    let dsys = amg_setup::equilibrate(dev, report, sys)?;
    let twin = equilibrate(n, &fp, &fc, &fv, &f);
    let down = |m: &DevCsr, report: &mut GpuReport| m.download(dev, report);
    let a0 = down(&dsys.a, report)?;
    let h = amg_setup::build(dev, report, dsys.a, dsys.bnull, settings)?;
    let rhos: Vec<f64> = h.levels.iter().map(|l| l.rho).collect();
    let (tl, tc) = build(
        twin.a.clone(),
        twin.bnull.clone(),
        settings,
        &mut |l, _, _| rhos.get(l).copied().unwrap_or(1.0),
    );
    let mut out = Vec::new();
    let a0diff = matrix_diff(&twin.a, (&a0.0, &a0.1, &a0.2));
    for (k, dl) in h.levels.iter().enumerate() {
        let Some(t) = tl.get(k) else {
            out.push(LevelCheck {
                rows: dl.a.rows,
                nagg: (dl.nagg, 0),
                same_aggregates: false,
                diffs: [None; 3],
                rho: dl.rho,
            });
            continue;
        };
        let agg = dev.download(report, "check", &dl.agg, dl.a.rows)?;
        let a = down(&dl.a, report)?;
        let p = down(&dl.p, report)?;
        let r = down(&dl.r, report)?;
        out.push(LevelCheck {
            rows: dl.a.rows,
            nagg: (dl.nagg, t.nagg),
            same_aggregates: agg == t.agg,
            diffs: [
                if k == 0 {
                    a0diff
                } else {
                    matrix_diff(&t.a, (&a.0, &a.1, &a.2))
                },
                matrix_diff(&t.p, (&p.0, &p.1, &p.2)),
                matrix_diff(&t.r, (&r.0, &r.1, &r.2)),
            ],
            rho: dl.rho,
        });
    }
    let c = down(&h.coarse, report)?;
    out.push(LevelCheck {
        rows: h.coarse.rows,
        nagg: (0, 0),
        same_aggregates: tl.len() == h.levels.len(),
        diffs: [matrix_diff(&tc, (&c.0, &c.1, &c.2)), Some(0.0), Some(0.0)],
        rho: 0.0,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amg::tests::lap2d;

    fn graph(a: &Csr) -> (Vec<usize>, Vec<u32>) {
        let d = a.diagonal();
        strength(Exec::Serial, a, &d, 0.08, crate::amg::Strength::Negative)
    }

    fn dist_le2(sp: &[usize], sj: &[u32], i: usize, j: usize) -> bool {
        let nb = |k: usize| &sj[sp[k]..sp[k + 1]];
        i == j
            || nb(i).contains(&(j as u32))
            || nb(i).iter().any(|&k| nb(k as usize).contains(&(j as u32)))
    }

    #[test]
    fn the_set_is_independent_maximal_and_every_node_aggregated() {
        for m in [3, 8, 17, 30] {
            let k = lap2d(m);
            let a = Csr::from_sym(&k);
            let (sp, sj) = graph(&a);
            let n = a.nrows();
            let isolated = |i: usize| sp[i + 1] == sp[i];
            let (t, _) = mis2(&sp, &sj);
            let roots: Vec<usize> = (0..n).filter(|&i| t[i] >> 62 == 2).collect();
            for (x, &i) in roots.iter().enumerate() {
                for &j in &roots[x + 1..] {
                    assert!(!dist_le2(&sp, &sj, i, j), "m {m}: roots {i} {j} too close");
                }
            }
            for i in (0..n).filter(|&i| !isolated(i)) {
                assert!(
                    roots.iter().any(|&r| dist_le2(&sp, &sj, i, r)),
                    "m {m}: node {i} far from every root"
                );
            }
            let (agg, nagg, rounds) = aggregate(&sp, &sj);
            assert!(rounds >= 1);
            assert_eq!(nagg, roots.len());
            let mut size = vec![0usize; nagg];
            for i in 0..n {
                assert_eq!(agg[i] == NONE, isolated(i), "m {m} node {i}");
                if agg[i] != NONE {
                    size[agg[i] as usize] += 1;
                }
            }
            assert!(size.iter().all(|&s| s > 0), "m {m}: empty aggregate");
            // each root is in its own aggregate, numbered in index order
            for (g, &r) in roots.iter().enumerate() {
                assert_eq!(agg[r], g as u32);
            }
        }
    }

    #[test]
    fn roots_are_two_apart_and_cover_the_graph() {
        // a path: roots at distance 3 or more, every node within 2 of one
        let n = 20usize;
        let mut sp = vec![0usize];
        let mut sj = Vec::new();
        for i in 0..n {
            if i > 0 {
                sj.push(i as u32 - 1);
            }
            if i + 1 < n {
                sj.push(i as u32 + 1);
            }
            sp.push(sj.len());
        }
        let (agg, nagg, _) = aggregate(&sp, &sj);
        // aggregates of a path are runs of consecutive nodes of 3 to 5
        assert!((4..=7).contains(&nagg), "{nagg}: {agg:?}");
        let mut size = vec![0; nagg];
        for &g in &agg {
            size[g as usize] += 1;
        }
        assert!(size.iter().all(|&s| (1..=5).contains(&s)), "{size:?}");
        for g in 0..nagg as u32 {
            let members: Vec<usize> = (0..n).filter(|&i| agg[i] == g).collect();
            // contiguous on a path
            assert_eq!(members.last().unwrap() - members[0] + 1, members.len());
        }
    }

    #[test]
    fn prolongator_and_galerkin_match_dense_algebra() {
        let k = lap2d(9);
        let a = Csr::from_sym(&k);
        let n = a.nrows();
        let (sp, sj) = graph(&a);
        let (agg, nagg, _) = aggregate(&sp, &sj);
        let bnull: Vec<f64> = (0..n).map(|i| 1.0 + 0.01 * i as f64).collect();
        let (t, norms) = tentative(&agg, nagg, &bnull);
        // T has orthonormal columns
        let mut tt = vec![0.0; nagg];
        for i in 0..n {
            if agg[i] != NONE {
                tt[agg[i] as usize] += t[i] * t[i];
            }
        }
        assert!(tt.iter().all(|v| (v - 1.0).abs() < 1e-12));
        assert!(norms.iter().all(|&v| v > 0.0));
        let diag = a.diagonal();
        let inv: Vec<f64> = diag.iter().map(|d| 1.0 / d).collect();
        let omega = 0.7;
        let p = prolongator(&a, &inv, &agg, &t, nagg, omega);
        // dense (I - omega D^-1 A) T
        let dense = |m: &Csr| {
            let mut d = vec![vec![0.0; m.ncols()]; m.nrows()];
            for (i, row) in d.iter_mut().enumerate() {
                let (c, v) = m.row(i);
                for (&j, &x) in c.iter().zip(v) {
                    row[j as usize] += x;
                }
            }
            d
        };
        let ad = dense(&a);
        for i in 0..n {
            for g in 0..nagg {
                let mut want = if agg[i] == g as u32 { t[i] } else { 0.0 };
                for j in 0..n {
                    if agg[j] == g as u32 {
                        want -= omega * inv[i] * ad[i][j] * t[j];
                    }
                }
                let (c, v) = p.row(i);
                let got = c.iter().position(|&x| x == g as u32).map_or(0.0, |k| v[k]);
                assert!((got - want).abs() < 1e-12, "P[{i}][{g}] {got} vs {want}");
            }
            let (c, _) = p.row(i);
            assert!(c.windows(2).all(|w| w[0] < w[1]), "row {i} not sorted");
        }
        // R A P against dense
        let r = p.transpose();
        let ac = product(&r, &product(&a, &p));
        let pd = dense(&p);
        let acd = dense(&ac);
        for g in 0..nagg {
            for h in 0..nagg {
                let mut want = 0.0;
                for i in 0..n {
                    for j in 0..n {
                        want += pd[i][g] * ad[i][j] * pd[j][h];
                    }
                }
                assert!((acd[g][h] - want).abs() < 1e-10, "Ac[{g}][{h}]");
            }
        }
    }

    #[test]
    fn equilibration_matches_the_host_system_up_to_the_numbering() {
        let k = lap2d(7);
        let f: Vec<f64> = (0..k.n).map(|i| (i % 5) as f64 - 2.0).collect();
        let (fp, fc, fv) = k.to_full();
        let t = equilibrate(k.n, &fp, &fc, &fv, &f);
        let h = crate::amg::AmgSystem::from_full(k.n, &fp, &fc, &fv, &f).unwrap();
        assert_eq!(t.a.nrows(), h.a.nrows());
        assert_eq!(t.a.nnz(), h.a.nnz());
        assert_eq!(t.direct, h.direct);
        // the same rows, in original order here and in RCM order there
        let mut hr = h.rows.clone();
        hr.sort_unstable();
        assert_eq!(t.rows, hr);
        for (k2, &i) in h.rows.iter().enumerate() {
            let mine = t.rows.iter().position(|&r| r == i).unwrap();
            assert_eq!(t.b[mine], h.b[k2]);
            assert_eq!(t.a.diagonal()[mine], h.a.diagonal()[k2]);
        }
    }

    #[test]
    fn twin_hierarchy_coarsens_and_stays_symmetric() {
        let k = lap2d(40);
        let a = Csr::from_sym(&k);
        let n = a.nrows();
        let bnull = vec![1.0; n];
        let settings = AmgSettings {
            max_coarse: 50,
            ..AmgSettings::default()
        };
        let (levels, coarse) = build(a, bnull, &settings, &mut |_, a, inv| {
            crate::amg::spectral_radius(Exec::Serial, a, inv, 10)
        });
        assert!(levels.len() >= 2, "{}", levels.len());
        for w in levels.windows(2) {
            assert!(w[1].a.nrows() * 3 < w[0].a.nrows(), "coarsening too slow");
        }
        assert!(coarse.nrows() <= 50);
        let d = |m: &Csr, i: usize, j: usize| {
            let (c, v) = m.row(i);
            c.iter()
                .position(|&x| x as usize == j)
                .map_or(0.0, |k| v[k])
        };
        for i in 0..coarse.nrows() {
            for j in 0..coarse.nrows() {
                assert!((d(&coarse, i, j) - d(&coarse, j, i)).abs() < 1e-12);
            }
        }
    }
}
