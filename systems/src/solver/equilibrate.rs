//! Diagonal equilibration, the split into coupled rows (solved
//! iteratively) and decoupled ones (solved directly), and the reverse
//! Cuthill-McKee renumbering of the coupled rows. Every iterative method
//! (Jacobi-CG here, AMG-CG in [`crate::amg`], on the host and the device)
//! runs on this one system.

use super::SolveError;
use crate::exec::{BLOCK, Disjoint, Exec, blocks1, for_each_index, map_blocks, map_blocks_mut};
use crate::ordering;
use crate::sparse::{Csr, SymCsr};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

/// The scaling of `K u = f` and its split into rows: `d = 1 /
/// sqrt(|diag K|)`, the coupled rows (those with an off-diagonal entry in
/// their row or column) in solver order, the decoupled rows' direct
/// solution, and the scaled right-hand side.
#[derive(Debug, Clone, Default)]
pub struct Scaling {
    /// `d` for every row of the original system.
    pub d: Vec<f64>,
    /// Original index of each coupled row, in solver order.
    pub rows: Vec<u32>,
    /// The solution of the decoupled rows, in original numbering (zero on
    /// coupled rows).
    pub direct: Vec<f64>,
    /// `D f` on the coupled rows, in solver order.
    pub b: Vec<f64>,
    /// `||D f||` over all rows (the stopping rule's reference norm).
    pub b_norm: f64,
    /// `||f||`.
    pub f_norm: f64,
}

impl Scaling {
    /// Rows solved directly.
    pub fn decoupled(&self) -> usize {
        self.d.len() - self.rows.len()
    }

    /// Maps a solution `u~` of the coupled rows back to `u = D u~` in the
    /// original numbering, with the decoupled rows' direct solution.
    pub fn unscale(&self, xt: &[f64]) -> Vec<f64> {
        let mut u = self.direct.clone();
        for (k, &i) in self.rows.iter().enumerate() {
            u[i as usize] = self.d[i as usize] * xt[k];
        }
        u
    }

    /// The near-null-space vector of the coupled rows: `1 / d_i`
    /// (`= sqrt(|K_ii|)`): `K 1 = 0` away from the boundary, so `(D K
    /// D)(D^-1 1) = 0`.
    pub fn near_null_space(&self) -> Vec<f64> {
        self.rows
            .iter()
            .map(|&i| 1.0 / self.d[i as usize])
            .collect()
    }

    /// `1 / d_i^2` of the coupled rows: the weights that turn the
    /// equilibrated residual's squares into the unscaled residual's.
    pub fn weights(&self) -> Vec<f64> {
        self.rows
            .iter()
            .map(|&i| {
                let d = self.d[i as usize];
                1.0 / (d * d)
            })
            .collect()
    }
}

/// The equilibrated, decoupled, renumbered system: `D K D` on the
/// coupled rows as an upper triangle (what the CG kernels read), its
/// Jacobi preconditioner, and the [`Scaling`] (reached through `Deref`).
#[derive(Debug, Clone)]
pub struct EquilibratedSystem {
    /// `D K D` restricted to the coupled rows, renumbered by reverse
    /// Cuthill-McKee.
    pub a: CgMatrix,
    /// `1 / diag(D K D)` on the coupled rows (the Jacobi preconditioner).
    pub inv_diag: Vec<f64>,
    /// The scaling and the rows.
    pub scaling: Scaling,
}

impl Deref for EquilibratedSystem {
    type Target = Scaling;
    fn deref(&self) -> &Scaling {
        &self.scaling
    }
}

impl EquilibratedSystem {
    /// Equilibrates `K u = f` and splits off decoupled rows, on the
    /// calling thread's executor ([`Exec::current`]: in parallel inside
    /// the parallel backend's solve); see [`EquilibratedSystem::new_with`].
    pub fn new(k: &SymCsr, f: &[f64]) -> Result<Self, SolveError> {
        Self::new_with(Exec::current(), k, f)
    }

    /// Equilibrates `K u = f`, splits off decoupled rows and renumbers the
    /// coupled ones by reverse Cuthill-McKee. The row loops (scaling, the
    /// coupled rows' entries, the renumbered rows) run under `exec`; the
    /// scans that number rows, `||D f||` (summed in row order) and the RCM
    /// search are sequential. Every executor gives the same bits.
    pub fn new_with(exec: Exec, k: &SymCsr, f: &[f64]) -> Result<Self, SolveError> {
        let (scaling, upper, _) = Self::build(exec, k, f, Want::Upper)?;
        let (a, inv_diag) = upper.expect("asked for");
        Ok(Self {
            a,
            inv_diag,
            scaling,
        })
    }

    /// [`EquilibratedSystem::new_with`], with the matrix also as a full
    /// CSR (both triangles, columns sorted: [`Csr::from_sym`] of `a`),
    /// gathered in the same pass as `a`.
    pub fn new_with_full(exec: Exec, k: &SymCsr, f: &[f64]) -> Result<(Self, Csr), SolveError> {
        let (scaling, upper, full) = Self::build(exec, k, f, Want::Both)?;
        let (a, inv_diag) = upper.expect("asked for");
        let sys = Self {
            a,
            inv_diag,
            scaling,
        };
        Ok((sys, full.expect("asked for")))
    }

    /// The [`Scaling`] of [`EquilibratedSystem::new_with`] and the matrix
    /// as a full CSR only (what AMG-CG runs on): the same bits as
    /// [`EquilibratedSystem::new_with_full`], without building the upper
    /// triangle the CG kernels would read.
    pub fn scaling_with_full(
        exec: Exec,
        k: &SymCsr,
        f: &[f64],
    ) -> Result<(Scaling, Csr), SolveError> {
        let (scaling, _, full) = Self::build(exec, k, f, Want::Full)?;
        Ok((scaling, full.expect("asked for")))
    }

    /// The scaling, the upper triangle with `1 / a_ii` (unless
    /// `want` is [`Want::Full`]) and the full CSR (unless [`Want::Upper`]).
    #[allow(clippy::type_complexity)]
    fn build(
        exec: Exec,
        k: &SymCsr,
        f: &[f64],
        want: Want,
    ) -> Result<(Scaling, Option<(CgMatrix, Vec<f64>)>, Option<Csr>), SolveError> {
        let n = k.n;
        assert_eq!(f.len(), n);
        let mut d = vec![0.0; n];
        let bad = map_blocks_mut(exec, &mut d, |s, db| {
            for (l, di) in db.iter_mut().enumerate() {
                let a = k.val[k.diag_slot(s + l)].abs();
                if a == 0.0 {
                    return Some(SolveError::ZeroDiagonal(s + l));
                }
                if !a.is_finite() {
                    return Some(SolveError::NonFinite);
                }
                *di = 1.0 / a.sqrt();
            }
            None
        });
        // the first bad row, as a loop over the rows would find it
        if let Some(e) = bad.into_iter().flatten().next() {
            return Err(e);
        }
        // coupled = has an off-diagonal entry in its row or column
        let coupled: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
        map_blocks(exec, n, BLOCK, |rows| {
            for i in rows {
                let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
                if e > s + 1 {
                    coupled[i].store(true, Ordering::Relaxed);
                    for &j in &k.col[s + 1..e] {
                        coupled[j as usize].store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        let coupled: Vec<bool> = coupled.into_iter().map(AtomicBool::into_inner).collect();
        let mut new_of = vec![u32::MAX; n];
        let mut rows = Vec::new();
        for i in 0..n {
            if coupled[i] {
                new_of[i] = rows.len() as u32;
                rows.push(i as u32);
            }
        }
        let m = rows.len();
        let mut b_norm2 = 0.0;
        for i in 0..n {
            let fi = d[i] * f[i];
            b_norm2 += fi * fi;
        }
        // the coupled rows of D K D, by blocks of rows of K; the decoupled
        // rows' direct solution
        let mut direct = vec![0.0; n];
        let parts = {
            let dir = Disjoint::slice(&mut direct);
            map_blocks(exec, n, BLOCK, |range| {
                let mut p = RowsPart::default();
                for i in range {
                    let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
                    if !coupled[i] {
                        // SAFETY: row i belongs to this block alone.
                        unsafe { *dir.get_mut(i) = f[i] / k.val[s] };
                        continue;
                    }
                    for kk in s..e {
                        let j = k.col[kk] as usize;
                        let v = d[i] * k.val[kk] * d[j];
                        p.finite &= v.is_finite();
                        p.col.push(new_of[j]);
                        p.val.push(v);
                    }
                    p.len.push((e - s) as u32);
                    p.inv_diag.push(1.0 / (d[i] * k.val[s] * d[i]));
                    p.b.push(d[i] * f[i]);
                }
                p
            })
        };
        if !b_norm2.is_finite() || parts.iter().any(|p| !p.finite) {
            return Err(SolveError::NonFinite);
        }
        let (a, inv_diag, b) = {
            let _s = tracing::info_span!("eq_concat").entered();
            concat(exec, m, parts)
        };
        // Renumber the coupled rows by reverse Cuthill-McKee for locality:
        // the full pattern (with each entry's place), the search, then
        // each renumbered row gathered.
        let (ptr, adj, slot) = {
            let _s = tracing::info_span!("eq_full_pattern").entered();
            full_pattern(&a)
        };
        let perm = {
            let _s = tracing::info_span!("eq_rcm").entered();
            ordering::rcm(m, &ptr, &adj)
        };
        let mut inv = vec![0u32; m];
        for (new, &old) in perm.iter().enumerate() {
            inv[old as usize] = new as u32;
        }
        let (a, full) = {
            let _s = tracing::info_span!("eq_permute").entered();
            permute(exec, &a, (&ptr, &adj, &slot), &perm, &inv, want)
        };
        let take = |v: &[f64]| {
            let mut out = vec![0.0; m];
            blocks1(exec, &mut out, |s, ob| {
                for (l, o) in ob.iter_mut().enumerate() {
                    *o = v[perm[s + l] as usize];
                }
                0.0
            });
            out
        };
        let f_norm = f.iter().map(|v| v * v).sum::<f64>().sqrt();
        let upper = a.map(|a| (CgMatrix::new(a), take(&inv_diag)));
        let scaling = Scaling {
            d,
            rows: perm.iter().map(|&o| rows[o as usize]).collect(),
            direct,
            b: take(&b),
            b_norm: b_norm2.sqrt(),
            f_norm,
        };
        Ok((scaling, upper, full))
    }
}

/// What [`EquilibratedSystem::build`] gathers of the renumbered matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The upper triangle (the CG kernels').
    Upper,
    /// The full CSR (AMG's).
    Full,
    /// Both.
    Both,
}

/// The coupled rows of one block of rows of `K` (or of the renumbered
/// matrix; `full_*`: its rows with both triangles).
#[derive(Debug)]
struct RowsPart {
    len: Vec<u32>,
    col: Vec<u32>,
    val: Vec<f64>,
    inv_diag: Vec<f64>,
    b: Vec<f64>,
    finite: bool,
    full_len: Vec<usize>,
    full_col: Vec<u32>,
    full_val: Vec<f64>,
}

impl Default for RowsPart {
    fn default() -> Self {
        Self {
            len: Vec::new(),
            col: Vec::new(),
            val: Vec::new(),
            inv_diag: Vec::new(),
            b: Vec::new(),
            finite: true,
            full_len: Vec::new(),
            full_col: Vec::new(),
            full_val: Vec::new(),
        }
    }
}

/// The blocks' rows, in order: the matrix, `1 / diag` and `b`.
fn concat(exec: Exec, m: usize, parts: Vec<RowsPart>) -> (SymCsr, Vec<f64>, Vec<f64>) {
    let mut rowptr = Vec::with_capacity(m + 1);
    rowptr.push(0u32);
    let mut starts = Vec::with_capacity(parts.len() + 1);
    starts.push(0usize);
    let (mut inv_diag, mut b) = (Vec::with_capacity(m), Vec::with_capacity(m));
    for p in &parts {
        for &l in &p.len {
            rowptr.push(rowptr.last().expect("non-empty") + l);
        }
        starts.push(starts.last().expect("non-empty") + p.col.len());
        inv_diag.extend_from_slice(&p.inv_diag);
        b.extend_from_slice(&p.b);
    }
    let nnz = *starts.last().expect("non-empty");
    let (mut col, mut val) = (vec![0u32; nnz], vec![0.0; nnz]);
    {
        let (cs, vs) = (Disjoint::slice(&mut col), Disjoint::slice(&mut val));
        for_each_index(exec, parts.len(), |p| {
            let r = starts[p]..starts[p + 1];
            // SAFETY: the parts' ranges are disjoint, each copied once.
            unsafe {
                cs.range_mut(r.clone()).copy_from_slice(&parts[p].col);
                vs.range_mut(r).copy_from_slice(&parts[p].val);
            }
        });
    }
    let a = SymCsr {
        n: m,
        rowptr,
        col,
        val,
    };
    (a, inv_diag, b)
}

/// The full pattern of the symmetric `a` without its diagonal, as
/// [`ordering::adjacency`] builds it (the same lists in the same order),
/// with the place in `a.val` of each entry.
fn full_pattern(a: &SymCsr) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let n = a.n;
    let mut ptr = vec![0u32; n + 1];
    for i in 0..n {
        for k in a.rowptr[i] as usize + 1..a.rowptr[i + 1] as usize {
            ptr[i + 1] += 1;
            ptr[a.col[k] as usize + 1] += 1;
        }
    }
    for i in 0..n {
        ptr[i + 1] += ptr[i];
    }
    let mut fill = ptr.clone();
    let mut adj = vec![0u32; ptr[n] as usize];
    let mut slot = vec![0u32; ptr[n] as usize];
    for i in 0..n {
        for k in a.rowptr[i] as usize + 1..a.rowptr[i + 1] as usize {
            let j = a.col[k] as usize;
            let (fi, fj) = (fill[i] as usize, fill[j] as usize);
            adj[fi] = j as u32;
            slot[fi] = k as u32;
            adj[fj] = i as u32;
            slot[fj] = k as u32;
            fill[i] += 1;
            fill[j] += 1;
        }
    }
    (ptr, adj, slot)
}

/// The symmetric `a` renumbered (row `r` of the result is row `perm[r]`
/// of `a`, `inv[old] = new`): each new row gathered from the full pattern
/// `(ptr, adj, slot)` of [`full_pattern`] (the neighbours numbered at or
/// after it), columns sorted, diagonal first: the matrix
/// [`ordering::permute`] builds (unless `want` is [`Want::Full`]); and
/// unless [`Want::Upper`], its full CSR (every neighbour), as
/// [`Csr::from_sym`] gives it.
fn permute(
    exec: Exec,
    a: &SymCsr,
    (ptr, adj, slot): (&[u32], &[u32], &[u32]),
    perm: &[u32],
    inv: &[u32],
    want: Want,
) -> (Option<SymCsr>, Option<Csr>) {
    let want_full = want != Want::Upper;
    let want_upper = want != Want::Full;
    let n = a.n;
    let parts = map_blocks(exec, n, BLOCK, |rows| {
        let mut p = RowsPart::default();
        // the block's entries, counted first: its arrays grow once
        let full: usize = rows
            .clone()
            .map(|r| {
                let i = perm[r] as usize;
                1 + (ptr[i + 1] - ptr[i]) as usize
            })
            .sum();
        if want_upper {
            p.len.reserve(rows.len());
            p.col.reserve(full / 2 + rows.len());
            p.val.reserve(full / 2 + rows.len());
        }
        if want_full {
            p.full_len.reserve(rows.len());
            p.full_col.reserve(full);
            p.full_val.reserve(full);
        }
        let mut row: Vec<(u32, f64)> = Vec::new();
        for r in rows {
            let i = perm[r] as usize;
            row.clear();
            row.push((r as u32, a.val[a.rowptr[i] as usize]));
            for e in ptr[i] as usize..ptr[i + 1] as usize {
                let c = inv[adj[e] as usize];
                if want_full || c as usize > r {
                    row.push((c, a.val[slot[e] as usize]));
                }
            }
            row.sort_unstable_by_key(|e| e.0);
            if want_upper {
                let upper = row.partition_point(|e| (e.0 as usize) < r);
                p.len.push((row.len() - upper) as u32);
                for &(c, v) in &row[upper..] {
                    p.col.push(c);
                    p.val.push(v);
                }
            }
            if want_full {
                p.full_len.push(row.len());
                for &(c, v) in &row {
                    p.full_col.push(c);
                    p.full_val.push(v);
                }
            }
        }
        p
    });
    let (parts, fulls): (Vec<RowsPart>, Vec<_>) = parts
        .into_iter()
        .map(|mut p| {
            let full = (
                std::mem::take(&mut p.full_len),
                std::mem::take(&mut p.full_col),
                std::mem::take(&mut p.full_val),
            );
            (p, full)
        })
        .unzip();
    let full = want_full.then(|| Csr::from_blocks(exec, n, n, fulls));
    (want_upper.then(|| concat(exec, n, parts).0), full)
}

/// A symmetric matrix checked for use by the CG kernels: row pointers
/// non-decreasing and within the arrays, every row starting with its
/// diagonal, every column below `n`. The kernels index without bounds
/// checks on the strength of this.
#[derive(Debug, Clone)]
pub struct CgMatrix(SymCsr);

impl CgMatrix {
    /// Checks `a` (panics on a malformed matrix: that is a bug in the
    /// caller, never user input).
    pub fn new(a: SymCsr) -> Self {
        let n = a.n;
        assert_eq!(a.rowptr.len(), n + 1);
        assert_eq!(a.rowptr[n] as usize, a.col.len());
        assert_eq!(a.col.len(), a.val.len());
        for i in 0..n {
            let (s, e) = (a.rowptr[i] as usize, a.rowptr[i + 1] as usize);
            assert!(
                s < e && a.col[s] as usize == i,
                "row {i} must start with its diagonal"
            );
            assert!(a.col[s..e].iter().all(|&j| (j as usize) < n));
        }
        Self(a)
    }

    /// The matrix.
    pub fn get(&self) -> &SymCsr {
        &self.0
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.0.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric matrix on a grid graph with scrambled numbering (as
    /// mesh files number nodes), a penalty row and isolated rows.
    fn scrambled(m: usize) -> (SymCsr, Vec<f64>) {
        let n = m * m + 3;
        let num = |i: usize| ((i * 7919) % n) as u32; // a permutation (7919 prime, n not a multiple)
        let mut rows: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
        for i in 0..n {
            let a = num(i);
            rows[a as usize].push((a, 4.0 + (i % 5) as f64 + if i == 3 { 1e12 } else { 0.0 }));
        }
        for i in 0..m * m {
            let (x, y) = (i % m, i / m);
            let mut link = |j: usize, v: f64| {
                let (a, b) = (num(i).min(num(j)), num(i).max(num(j)));
                rows[a as usize].push((b, v));
            };
            if x + 1 < m {
                link(i + 1, -1.0 - (i % 3) as f64 * 0.1);
            }
            if y + 1 < m {
                link(i + m, -0.5);
            }
        }
        let mut rowptr = vec![0u32];
        let (mut col, mut val) = (vec![], vec![]);
        for r in &mut rows {
            r.sort_by_key(|e| e.0);
            for &(c, v) in r.iter() {
                col.push(c);
                val.push(v);
            }
            rowptr.push(col.len() as u32);
        }
        let f = (0..n).map(|i| ((i * 13) % 7) as f64 - 3.0).collect();
        (
            SymCsr {
                n,
                rowptr,
                col,
                val,
            },
            f,
        )
    }

    /// The equilibration as a plain loop with `ordering`'s adjacency and
    /// permutation: what `new_with` must reproduce.
    fn reference(k: &SymCsr, f: &[f64]) -> EquilibratedSystem {
        let n = k.n;
        let d: Vec<f64> = (0..n)
            .map(|i| 1.0 / k.val[k.diag_slot(i)].abs().sqrt())
            .collect();
        let mut coupled = vec![false; n];
        for i in 0..n {
            let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
            if e > s + 1 {
                coupled[i] = true;
                for &j in &k.col[s + 1..e] {
                    coupled[j as usize] = true;
                }
            }
        }
        let mut new_of = vec![u32::MAX; n];
        let mut rows = Vec::new();
        for i in 0..n {
            if coupled[i] {
                new_of[i] = rows.len() as u32;
                rows.push(i as u32);
            }
        }
        let (mut rowptr, mut col, mut val) = (vec![0u32], vec![], vec![]);
        let (mut b, mut inv_diag, mut direct, mut b2) = (vec![], vec![], vec![0.0; n], 0.0);
        for i in 0..n {
            let fi = d[i] * f[i];
            b2 += fi * fi;
            let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
            if !coupled[i] {
                direct[i] = f[i] / k.val[s];
                continue;
            }
            for kk in s..e {
                let j = k.col[kk] as usize;
                col.push(new_of[j]);
                val.push(d[i] * k.val[kk] * d[j]);
            }
            inv_diag.push(1.0 / (d[i] * k.val[s] * d[i]));
            b.push(fi);
            rowptr.push(col.len() as u32);
        }
        let m = rows.len();
        let a = SymCsr {
            n: m,
            rowptr,
            col,
            val,
        };
        let (ptr, adj) = ordering::adjacency(&a);
        let perm = ordering::rcm(m, &ptr, &adj);
        let mut inv = vec![0u32; m];
        for (new, &old) in perm.iter().enumerate() {
            inv[old as usize] = new as u32;
        }
        let take = |v: &[f64]| perm.iter().map(|&o| v[o as usize]).collect::<Vec<f64>>();
        EquilibratedSystem {
            a: CgMatrix::new(ordering::permute(&a, &perm, &inv)),
            inv_diag: take(&inv_diag),
            scaling: Scaling {
                d,
                rows: perm.iter().map(|&o| rows[o as usize]).collect(),
                direct,
                b: take(&b),
                b_norm: b2.sqrt(),
                f_norm: f.iter().map(|v| v * v).sum::<f64>().sqrt(),
            },
        }
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn every_executor_builds_the_reference_system_bit_for_bit() {
        let (k, f) = scrambled(70); // 4903 rows: three blocks
        let want = reference(&k, &f);
        assert!(want.decoupled() >= 3);
        let team = crate::exec::Team::new(2, "test").unwrap();
        let serial = EquilibratedSystem::new_with(Exec::Serial, &k, &f).unwrap();
        let par = team.install(|| EquilibratedSystem::new(&k, &f)).unwrap();
        let want_full = Csr::from_sym(want.a.get());
        for exec in [Exec::Serial, Exec::Parallel] {
            let (sys, full) =
                team.install(|| EquilibratedSystem::new_with_full(exec, &k, &f).unwrap());
            assert_eq!(sys.a.get(), want.a.get());
            assert_eq!(full.rowptr(), want_full.rowptr());
            assert_eq!(full.cols(), want_full.cols());
            assert_eq!(bits(full.vals()), bits(want_full.vals()));
            let (scaling, only) =
                team.install(|| EquilibratedSystem::scaling_with_full(exec, &k, &f).unwrap());
            assert_eq!(only.rowptr(), want_full.rowptr());
            assert_eq!(only.cols(), want_full.cols());
            assert_eq!(bits(only.vals()), bits(want_full.vals()));
            assert_eq!(scaling.rows, want.rows);
            assert_eq!(bits(&scaling.b), bits(&want.b));
            assert_eq!(bits(&scaling.d), bits(&want.d));
        }
        for got in [&serial, &par] {
            assert_eq!(got.a.get().rowptr, want.a.get().rowptr);
            assert_eq!(got.a.get().col, want.a.get().col);
            assert_eq!(bits(&got.a.get().val), bits(&want.a.get().val));
            assert_eq!(bits(&got.inv_diag), bits(&want.inv_diag));
            assert_eq!(got.rows, want.rows);
            assert_eq!(bits(&got.d), bits(&want.d));
            assert_eq!(bits(&got.direct), bits(&want.direct));
            assert_eq!(bits(&got.b), bits(&want.b));
            assert_eq!(got.b_norm.to_bits(), want.b_norm.to_bits());
            assert_eq!(got.f_norm.to_bits(), want.f_norm.to_bits());
        }
    }

    #[test]
    fn bad_diagonals_are_found_first_row_first() {
        let (mut k, f) = scrambled(70);
        let (i, j) = (4000, 2500);
        let (si, sj) = (k.diag_slot(i), k.diag_slot(j));
        k.val[si] = 0.0;
        k.val[sj] = f64::NAN;
        let team = crate::exec::Team::new(2, "test").unwrap();
        for exec in [Exec::Serial, Exec::Parallel] {
            let e = team.install(|| EquilibratedSystem::new_with(exec, &k, &f).unwrap_err());
            assert_eq!(e, SolveError::NonFinite);
        }
        k.val[sj] = 1.0;
        let e = team.install(|| EquilibratedSystem::new(&k, &f).unwrap_err());
        assert_eq!(e, SolveError::ZeroDiagonal(i));
        let mut f2 = f.clone();
        k.val[si] = 1.0;
        f2[10] = f64::INFINITY;
        let e = team.install(|| EquilibratedSystem::new(&k, &f2).unwrap_err());
        assert_eq!(e, SolveError::NonFinite);
    }
}
