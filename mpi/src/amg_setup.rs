//! The distributed AMG hierarchy's setup (see [`crate::amg`]): a rank's
//! rows of each level, the engine's setup steps on them, the Galerkin
//! shares, the hand-overs to fewer ranks, the engine's hierarchy on the
//! last rank.

use crate::comm::{self, Comm};
use crate::dist::{IdMap, offsets, owner_in, range_halo};
use crate::part::Halo;
use crate::threads::Threads;
use crate::wire::{Reader, Writer};
use quadflow_systems::amg::{self as host, AmgSettings, Csr, Hierarchy, SmootherLevel};
use quadflow_systems::exec::to_f32;
use quadflow_systems::solver::SolveError;

/// No aggregate.
const NONE: u32 = u32::MAX;

/// Parameters of the distributed part of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistAmgSettings {
    /// While a level has fewer rows than this per active rank, half the
    /// active ranks hand their rows to the other half (5,000). Lower keeps
    /// more ranks busy on the coarse levels, higher saves their latency:
    /// with 20,000 the 1.3M venturi's second level (~130k rows) on 16
    /// ranks would go to 4 of them and its third (~20k) to one, the other
    /// ranks waiting for about half a fine level's work every V-cycle;
    /// with 5,000 the second stays on all 16 and the third on 4 (a V-cycle
    /// within ~10% of the evenly spread work). PETSc's GAMG reduces ranks
    /// far later (`-pc_gamg_process_eq_limit`, 50 rows a rank).
    pub agglomerate_below: usize,
}

impl Default for DistAmgSettings {
    fn default() -> Self {
        Self {
            agglomerate_below: 5_000,
        }
    }
}

/// A rank's rows of one level during the setup.
#[derive(Debug, Clone, Default)]
pub struct LevelMatrix {
    /// `n x (n + g)`: own columns, then ghost columns.
    pub a: Csr,
    /// Rank `q` owns the global ids `offsets[q]..offsets[q + 1]`.
    pub offsets: Vec<u64>,
    /// Global id of every ghost column.
    pub ghost_gid: Vec<u64>,
    /// Fills the ghost entries of a column-space vector.
    pub halo: Halo,
    /// The near-null-space vector on the rows.
    pub b: Vec<f64>,
}

impl LevelMatrix {
    fn n(&self) -> usize {
        self.a.nrows()
    }

    fn global_rows(&self) -> usize {
        *self.offsets.last().unwrap_or(&0) as usize
    }
}

/// Rows given by global column ids, as one rank's rows of a level: own
/// ids `lo..lo + rows.len()`, the others ghosts (ordered by owner under
/// `offsets`, then id), with the halo built (collective).
fn from_global_rows(
    comm: &dyn Comm,
    rows: &[(Vec<u64>, Vec<f64>)],
    offsets: Vec<u64>,
    b: Vec<f64>,
) -> LevelMatrix {
    let lo = offsets[comm.rank()];
    let n = rows.len();
    let hi = lo + n as u64;
    let mut ghosts: Vec<(u32, u64)> = rows
        .iter()
        .flat_map(|r| r.0.iter().copied())
        .filter(|&g| g < lo || g >= hi)
        .map(|g| (owner_in(&offsets, g) as u32, g))
        .collect();
    ghosts.sort_unstable();
    ghosts.dedup();
    let index: IdMap<u64, u32> = ghosts
        .iter()
        .enumerate()
        .map(|(k, &(_, g))| (g, (n + k) as u32))
        .collect();
    let mut rowptr = Vec::with_capacity(n + 1);
    rowptr.push(0usize);
    let (mut col, mut val) = (Vec::new(), Vec::new());
    for (c, v) in rows {
        for (&g, &x) in c.iter().zip(v) {
            col.push(if g >= lo && g < hi {
                (g - lo) as u32
            } else {
                index[&g]
            });
            val.push(x);
        }
        rowptr.push(col.len());
    }
    let ghost_gid: Vec<u64> = ghosts.iter().map(|g| g.1).collect();
    let ghost_owner: Vec<u32> = ghosts.iter().map(|g| g.0).collect();
    let halo = range_halo(comm, lo, n, &ghost_gid, &ghost_owner);
    LevelMatrix {
        a: Csr::new(n, n + ghosts.len(), rowptr, col, val),
        offsets,
        ghost_gid,
        halo,
        b,
    }
}

/// A rank's rows with global column ids.
fn global_rows(m: &LevelMatrix, me: usize) -> Vec<(Vec<u64>, Vec<f64>)> {
    let n = m.n();
    let lo = m.offsets[me];
    (0..n)
        .map(|i| {
            let (c, v) = m.a.row(i);
            let g = c
                .iter()
                .map(|&j| {
                    let j = j as usize;
                    if j < n {
                        lo + j as u64
                    } else {
                        m.ghost_gid[j - n]
                    }
                })
                .collect();
            (g, v.to_vec())
        })
        .collect()
}

/// `A_oo`: the columns of `a` below its row count.
fn own_block(a: &Csr) -> Csr {
    let n = a.nrows();
    let mut rp = Vec::with_capacity(n + 1);
    rp.push(0usize);
    let (mut col, mut val) = (Vec::with_capacity(a.nnz()), Vec::with_capacity(a.nnz()));
    for i in 0..n {
        let (c, v) = a.row(i);
        for (&j, &x) in c.iter().zip(v) {
            if (j as usize) < n {
                col.push(j);
                val.push(x);
            }
        }
        rp.push(col.len());
    }
    Csr::new(n, n, rp, col, val)
}

/// `a` (square) and `b` renumbered by reverse Cuthill-McKee over `a`'s
/// couplings (the engine's ordering), each row's columns ascending; with
/// the permutation (`perm[new] = old`).
fn rcm_renumbered(a: Csr, b: Vec<f64>) -> (Csr, Vec<f64>, Vec<u32>) {
    let n = a.nrows();
    let mut ptr = vec![0u32];
    let mut adj = Vec::with_capacity(a.nnz());
    for i in 0..n {
        adj.extend(a.row(i).0.iter().filter(|&&j| j as usize != i));
        ptr.push(adj.len() as u32);
    }
    let perm = quadflow_systems::ordering::rcm(n, &ptr, &adj);
    let mut inv = vec![0u32; n];
    for (new, &old) in perm.iter().enumerate() {
        inv[old as usize] = new as u32;
    }
    let mut rp = Vec::with_capacity(n + 1);
    rp.push(0usize);
    let (mut col, mut val) = (Vec::with_capacity(a.nnz()), Vec::with_capacity(a.nnz()));
    let mut row: Vec<(u32, f64)> = Vec::new();
    for &old in &perm {
        let (c, v) = a.row(old as usize);
        row.clear();
        row.extend(c.iter().map(|&j| inv[j as usize]).zip(v.iter().copied()));
        row.sort_unstable_by_key(|e| e.0);
        for &(j, x) in &row {
            col.push(j);
            val.push(x);
        }
        rp.push(col.len());
    }
    let b = perm.iter().map(|&o| b[o as usize]).collect();
    (Csr::new(n, n, rp, col, val), b, perm)
}

/// A distributed level on a rank that holds rows of it.
#[derive(Debug, Clone)]
pub(crate) struct DistLevel {
    /// `[A_oo | A_og]`.
    pub(crate) a: Csr,
    pub(crate) a32: Vec<f32>,
    pub(crate) inv_diag: Vec<f64>,
    pub(crate) halo: Halo,
    /// `P`'s rows of this rank: columns its coarse rows (`0..nc`), then
    /// the coarse rows of other ranks its rows reach (`p_halo`).
    pub(crate) p: Csr,
    pub(crate) p32: Vec<f32>,
    /// `P^T` of those rows.
    pub(crate) r: Csr,
    pub(crate) r32: Vec<f32>,
    /// Fills the ghost columns of `p` (prolongation) and returns their
    /// shares (restriction).
    pub(crate) p_halo: Halo,
    /// Coarse rows of this rank.
    pub(crate) nc: usize,
    pub(crate) s0: f64,
    pub(crate) steps: Vec<(f64, f64)>,
    /// Index of the level in the hierarchy (finest 0).
    pub(crate) index: usize,
}

impl DistLevel {
    pub(crate) fn smoother(&self) -> SmootherLevel<'_> {
        SmootherLevel {
            a: &self.a,
            a32: &self.a32,
            narrow: None,
            inv_diag: &self.inv_diag,
            s0: self.s0,
            steps: &self.steps,
        }
    }
}

/// One step of a rank's V-cycle descent.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A distributed level: smooth, restrict, (below), prolong, smooth.
    Level(Box<DistLevel>),
    /// Hand this rank's vector (`len` rows) to rank `to` and take the
    /// correction back: the rank holds no rows below.
    Send { to: usize, len: usize },
    /// Rank `from`'s `len` rows follow this rank's rows below.
    Recv { from: usize, len: usize },
    /// The engine's hierarchy for the rest (one rank), on its rows
    /// renumbered by reverse Cuthill-McKee (`perm[new] = old`; empty: as
    /// they are, one rank's own rows in the engine's order), as the
    /// engine numbers a system: the rows of the ranks that handed them
    /// over come in blocks, and the engine's greedy aggregation does worse
    /// on blocks (a 20k venturi gathered from 4 ranks: 50 iterations
    /// instead of the engine's 42, 43 renumbered).
    Tail(Box<Hierarchy>, Vec<u32>),
}

/// What a level of the hierarchy looks like across the ranks (the same on
/// every rank).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelInfo {
    /// Rows of the level.
    pub rows: usize,
    /// Stored entries of the level operator.
    pub nnz: usize,
    /// Ranks holding rows of it (1: the engine's single-process levels).
    pub ranks: usize,
    /// The most rows a rank holds.
    pub max_rows: usize,
    /// Values all ranks send in one halo exchange of the level.
    pub halo_values: usize,
    /// Rows handed to another rank above this level (agglomeration).
    pub handed_rows: usize,
}

/// A distributed AMG hierarchy (see the module documentation).
#[derive(Debug, Clone)]
pub struct DistHierarchy {
    pub(crate) steps: Vec<Step>,
    pub(crate) settings: AmgSettings,
    /// Every level, finest first (distributed and the tail's).
    pub levels: Vec<LevelInfo>,
    /// Levels distributed over several ranks.
    pub distributed: usize,
}

/// Agrees on a local error (collective): every rank fails with the first
/// rank's message.
fn agree_err(
    comm: &dyn Comm,
    err: Option<SolveError>,
    what: &'static str,
) -> Result<(), SolveError> {
    match comm::agree(comm, err.as_ref().map(|e| e.to_string())) {
        Ok(()) => Ok(()),
        Err(message) => Err(err.unwrap_or(SolveError::Factorization {
            method: what,
            message,
        })),
    }
}

/// Shares of coarse rows for one rank: row ids, row lengths, column ids,
/// values.
type Shares = (Vec<u64>, Vec<u32>, Vec<u64>, Vec<f64>);

/// The result of coarsening one distributed level.
enum Coarsened {
    Level(Box<DistLevel>, LevelMatrix),
    /// Coarsening stalled (no aggregate, or as many as rows, over all
    /// ranks): the level is returned.
    Stalled(LevelMatrix),
}

/// Coarsens the distributed level `m` (collective; a rank without rows
/// takes part with nothing).
fn coarsen(
    comm: &dyn Comm,
    threads: &Threads,
    m: LevelMatrix,
    s: &AmgSettings,
    index: usize,
) -> Result<Coarsened, SolveError> {
    let (me, p) = (comm.rank(), comm.size());
    let n = m.n();
    let g = m.a.ncols() - n;
    let a_oo = own_block(&m.a);
    let local = threads.run(|e| {
        let diag = a_oo.diagonal_with(e);
        if let Some(i) = diag.iter().position(|d| d.is_nan() || *d <= 0.0) {
            return Err(SolveError::NotPositiveDefinite {
                method: "distributed AMG setup",
                step: i,
                n,
            });
        }
        let (sp, sj) = host::strength(e, &a_oo, &diag, s.theta, s.strength);
        let (agg, nagg) = host::aggregate(&sp, &sj);
        let inv_diag: Vec<f64> = diag.iter().map(|d| 1.0 / d).collect();
        let rho = if n == 0 {
            0.0
        } else {
            let v32 = to_f32(e, a_oo.vals());
            host::spectral_radius_with(e, &a_oo, &v32, &inv_diag, s.lanczos_steps)
        };
        Ok((agg, nagg, inv_diag, rho))
    });
    drop(a_oo);
    let (agg, nagg, inv_diag, rho) = match local {
        Ok(v) => {
            agree_err(comm, None, "distributed AMG setup")?;
            v
        }
        Err(e) => return Err(agree_err(comm, Some(e), "distributed AMG setup").unwrap_err()),
    };
    let rho = comm::max_f64(comm, rho);
    let mut counts = [n as f64, nagg as f64];
    comm.allreduce_sum(&mut counts);
    if counts[1] == 0.0 || counts[1] >= counts[0] {
        return Ok(Coarsened::Stalled(m));
    }
    let off_c = offsets(comm, nagg);
    let base_c = off_c[me];
    let (t, norms) = host::tentative(&agg, nagg, &m.b);
    // the aggregate (global id) and T of the ghost columns, from their
    // owners: P is smoothed with the whole operator
    let mut gagg = vec![-1.0; n + g];
    let mut gt = vec![0.0; n + g];
    for i in 0..n {
        if agg[i] != NONE {
            gagg[i] = (base_c + agg[i] as u64) as f64;
        }
        gt[i] = t[i];
    }
    m.halo.exchange(comm, &mut gagg, &mut |_| {});
    m.halo.exchange(comm, &mut gt, &mut |_| {});
    // P's columns: this rank's aggregates, then the ghosts' (by owner, id)
    let mut pcols: Vec<(u32, u64)> = gagg[n..]
        .iter()
        .filter(|&&x| x >= 0.0)
        .map(|&x| (owner_in(&off_c, x as u64) as u32, x as u64))
        .collect();
    pcols.sort_unstable();
    pcols.dedup();
    let mut cidx: IdMap<u64, u32> = pcols
        .iter()
        .enumerate()
        .map(|(k, &(_, c))| (c, (nagg + k) as u32))
        .collect();
    let ncp = nagg + pcols.len();
    let mut agg_ext = agg;
    agg_ext.extend(
        gagg[n..]
            .iter()
            .map(|&x| if x >= 0.0 { cidx[&(x as u64)] } else { NONE }),
    );
    let omega = s.omega_scale / rho;
    let p_o =
        threads.run(|e| host::smoothed_prolongator(e, &m.a, &inv_diag, &agg_ext, &gt, ncp, omega));
    drop((agg_ext, gt, gagg));
    let gid_of = |c: u32| -> u64 {
        let c = c as usize;
        if c < nagg {
            base_c + c as u64
        } else {
            pcols[c - nagg].1
        }
    };
    // P rows of the ghosts, from their owners (in the order of the halo)
    let mut send = vec![Vec::new(); p];
    for nb in &m.halo.neighbours {
        let mut w = Writer::new();
        let mut lens = Vec::with_capacity(nb.send.len());
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        for &i in &nb.send {
            let (c, v) = p_o.row(i as usize);
            lens.push(c.len() as u32);
            cols.extend(c.iter().map(|&j| gid_of(j)));
            vals.extend_from_slice(v);
        }
        w.u32s(&lens).u64s(&cols).f64s(&vals);
        send[nb.rank] = w.finish();
    }
    let got = comm.alltoallv(send);
    let mut pg: Vec<(Vec<u64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); g];
    for nb in &m.halo.neighbours {
        if nb.recv.is_empty() {
            continue;
        }
        let mut r = Reader::new(&got[nb.rank]);
        let (lens, cols, vals) = (r.u32s(), r.u64s(), r.f64s());
        assert_eq!(lens.len(), nb.recv.len(), "P rows from rank {}", nb.rank);
        let mut at = 0;
        for (&l, &i) in lens.iter().zip(&nb.recv) {
            let l = l as usize;
            pg[i as usize - n] = (cols[at..at + l].to_vec(), vals[at..at + l].to_vec());
            at += l;
        }
    }
    drop(got);
    // coarse ids the ghost rows of P reach beyond P's own columns
    let lo_c = base_c;
    let hi_c = base_c + nagg as u64;
    let mut more: Vec<(u32, u64)> = pg
        .iter()
        .flat_map(|r| r.0.iter().copied())
        .filter(|&c| (c < lo_c || c >= hi_c) && !cidx.contains_key(&c))
        .map(|c| (owner_in(&off_c, c) as u32, c))
        .collect();
    more.sort_unstable();
    more.dedup();
    for (k, &(_, c)) in more.iter().enumerate() {
        cidx.insert(c, (ncp + k) as u32);
    }
    let nce = ncp + more.len();
    let local_c = |c: u64| -> u32 {
        if c >= lo_c && c < hi_c {
            (c - lo_c) as u32
        } else {
            cidx[&c]
        }
    };
    // [P_o ; P_g], then P_o^T A [P_o ; P_g]: this rank's coarse rows and
    // its share of the rows of P's ghost columns
    let mut rp = p_o.rowptr().to_vec();
    let mut col = p_o.cols().to_vec();
    let mut val = p_o.vals().to_vec();
    for (c, v) in &pg {
        col.extend(c.iter().map(|&x| local_c(x)));
        val.extend_from_slice(v);
        rp.push(col.len());
    }
    drop(pg);
    let p_ext = Csr::new(n + g, nce, rp, col, val);
    let (c_mat, r) = threads.run(|e| {
        let r = p_o.transpose();
        let ap = m.a.matmul(e, &p_ext);
        (r.matmul(e, &ap), r)
    });
    drop(p_ext);
    let gid_ext = |c: u32| -> u64 {
        let c = c as usize;
        if c < nagg {
            base_c + c as u64
        } else if c < ncp {
            pcols[c - nagg].1
        } else {
            more[c - ncp].1
        }
    };
    // the shares of other ranks' coarse rows, to their owners
    let mut out: Vec<Writer> = (0..p).map(|_| Writer::new()).collect();
    let mut outs: Vec<Shares> = (0..p).map(|_| Default::default()).collect();
    for k in nagg..ncp {
        let (c, v) = c_mat.row(k);
        let o = &mut outs[pcols[k - nagg].0 as usize];
        o.0.push(pcols[k - nagg].1);
        o.1.push(c.len() as u32);
        o.2.extend(c.iter().map(|&j| gid_ext(j)));
        o.3.extend_from_slice(v);
    }
    for (w, o) in out.iter_mut().zip(&outs) {
        if !o.0.is_empty() {
            w.u64s(&o.0).u32s(&o.1).u64s(&o.2).f64s(&o.3);
        }
    }
    drop(outs);
    let got = comm.alltoallv(out.into_iter().map(|w| w.finish()).collect());
    // this rank's coarse rows: its own share, then the others' in rank
    // order, summed in that order
    let mut rows: Vec<Vec<(u64, f64)>> = (0..nagg)
        .map(|k| {
            let (c, v) = c_mat.row(k);
            c.iter()
                .map(|&j| gid_ext(j))
                .zip(v.iter().copied())
                .collect()
        })
        .collect();
    drop(c_mat);
    for buf in got.iter().filter(|b| !b.is_empty()) {
        let mut rd = Reader::new(buf);
        let (ids, lens, cols, vals) = (rd.u64s(), rd.u32s(), rd.u64s(), rd.f64s());
        let mut at = 0;
        for (&id, &l) in ids.iter().zip(&lens) {
            let l = l as usize;
            let row = &mut rows[(id - lo_c) as usize];
            row.extend(
                cols[at..at + l]
                    .iter()
                    .copied()
                    .zip(vals[at..at + l].iter().copied()),
            );
            at += l;
        }
    }
    let rows: Vec<(Vec<u64>, Vec<f64>)> = rows
        .into_iter()
        .map(|mut r| {
            r.sort_by_key(|e| e.0);
            let mut c: Vec<u64> = Vec::with_capacity(r.len());
            let mut v: Vec<f64> = Vec::with_capacity(r.len());
            for (j, x) in r {
                if c.last() == Some(&j) {
                    *v.last_mut().expect("a value") += x;
                } else {
                    c.push(j);
                    v.push(x);
                }
            }
            (c, v)
        })
        .collect();
    let coarse = from_global_rows(comm, &rows, off_c, norms);
    // P's own halo: the coarse values of its ghost columns come from their
    // owners (prolongation); their restricted shares go back (restriction)
    let p_gid: Vec<u64> = pcols.iter().map(|c| c.1).collect();
    let p_owner: Vec<u32> = pcols.iter().map(|c| c.0).collect();
    let p_halo = range_halo(comm, base_c, nagg, &p_gid, &p_owner);
    let (s0, steps) = host::smoother_coefficients(s, rho);
    let (a32, p32, r32) = threads.run(|e| {
        (
            to_f32(e, m.a.vals()),
            to_f32(e, p_o.vals()),
            to_f32(e, r.vals()),
        )
    });
    let level = DistLevel {
        a: m.a,
        a32,
        inv_diag,
        halo: m.halo,
        p: p_o,
        p32,
        r,
        r32,
        p_halo,
        nc: nagg,
        s0,
        steps,
        index,
    };
    Ok(Coarsened::Level(Box::new(level), coarse))
}

/// One hand-over at stride `s` (collective): rank `r + s` (`r` a multiple
/// of `2 s`) sends its rows to `r`, which appends them after its own.
/// Returns the merged level (empty on the senders and the idle ranks) and
/// this rank's step, if any.
fn hand_over(comm: &dyn Comm, m: LevelMatrix, s: usize) -> (LevelMatrix, Option<Step>, usize) {
    let (me, p) = (comm.rank(), comm.size());
    let sender = me % (2 * s) == s;
    let receiver = me % (2 * s) == 0 && me + s < p;
    let mut send = vec![Vec::new(); p];
    let mut mine = global_rows(&m, me);
    let mut b = m.b;
    if sender {
        let mut w = Writer::new();
        let lens: Vec<u32> = mine.iter().map(|r| r.0.len() as u32).collect();
        w.u32s(&lens)
            .u64s(
                &mine
                    .iter()
                    .flat_map(|r| r.0.iter().copied())
                    .collect::<Vec<_>>(),
            )
            .f64s(
                &mine
                    .iter()
                    .flat_map(|r| r.1.iter().copied())
                    .collect::<Vec<_>>(),
            )
            .f64s(&b);
        send[me - s] = w.finish();
    }
    let got = comm.alltoallv(send);
    let mut step = None;
    let mut handed = 0;
    if sender {
        step = Some(Step::Send {
            to: me - s,
            len: mine.len(),
        });
        handed = mine.len();
        mine.clear();
        b.clear();
    } else if receiver {
        let mut r = Reader::new(&got[me + s]);
        let (lens, cols, vals, bb) = (r.u32s(), r.u64s(), r.f64s(), r.f64s());
        let mut at = 0;
        for &l in &lens {
            let l = l as usize;
            mine.push((cols[at..at + l].to_vec(), vals[at..at + l].to_vec()));
            at += l;
        }
        b.extend_from_slice(&bb);
        step = Some(Step::Recv {
            from: me + s,
            len: lens.len(),
        });
    }
    let off = offsets(comm, mine.len());
    (from_global_rows(comm, &mine, off, b), step, handed)
}

impl DistHierarchy {
    /// Builds the hierarchy of the distributed fine level `fine`
    /// (collective): distributed levels while several ranks hold rows, then
    /// the engine's hierarchy on the one rank left.
    pub fn new(
        comm: &dyn Comm,
        threads: &Threads,
        fine: LevelMatrix,
        settings: &AmgSettings,
        dist: &DistAmgSettings,
    ) -> Result<Self, SolveError> {
        let (me, p) = (comm.rank(), comm.size());
        let mut steps = Vec::new();
        let mut levels: Vec<LevelInfo> = Vec::new();
        let mut m = fine;
        let mut stride = 1usize;
        let active_ranks = |s: usize| p.div_ceil(s);
        let mut stalled = false;
        let mut handed = 0usize;
        loop {
            let rows = m.global_rows();
            let finish =
                stalled || rows <= settings.max_coarse || levels.len() + 1 >= settings.max_levels;
            while active_ranks(stride) > 1
                && (finish || rows < dist.agglomerate_below.max(1) * active_ranks(stride))
            {
                let _s = tracing::info_span!("mpi::amg_hand_over", stride).entered();
                let (merged, step, h) = hand_over(comm, m, stride);
                m = merged;
                handed += h;
                steps.extend(step);
                stride *= 2;
            }
            if active_ranks(stride) == 1 {
                break;
            }
            // the level's figures, then its coarsening
            let mut f = [m.a.nnz() as f64, m.halo.send_volume() as f64, handed as f64];
            comm.allreduce_sum(&mut f);
            let max_rows = comm::max_f64(comm, m.n() as f64) as usize;
            levels.push(LevelInfo {
                rows,
                nnz: f[0] as usize,
                ranks: active_ranks(stride),
                max_rows,
                halo_values: f[1] as usize,
                handed_rows: f[2] as usize,
            });
            handed = 0;
            let index = levels.len() - 1;
            let _s = tracing::info_span!("mpi::amg_level", index, rows).entered();
            match coarsen(comm, threads, m, settings, index)? {
                Coarsened::Level(level, coarse) => {
                    if me % stride == 0 {
                        steps.push(Step::Level(level));
                    }
                    m = coarse;
                }
                Coarsened::Stalled(back) => {
                    levels.pop();
                    stalled = true;
                    m = back;
                }
            }
        }
        let distributed = levels.len();
        let handed = comm::sum_usize(comm, handed);
        // the engine's hierarchy on rank 0 for the rest
        let mut tail_err = None;
        let mut info = Writer::new();
        if me == 0 {
            let mut s = *settings;
            s.max_levels = settings.max_levels.saturating_sub(distributed).max(1);
            let a = std::mem::take(&mut m.a);
            assert_eq!(a.nrows(), a.ncols(), "one rank holds every column");
            let b = std::mem::take(&mut m.b);
            let _s = tracing::info_span!("mpi::amg_tail", rows = a.nrows()).entered();
            // rows from several ranks: renumbered; one rank's own rows are
            // in the engine's order already (one rank: the engine's
            // hierarchy itself)
            let merged = steps.iter().any(|s| matches!(s, Step::Recv { .. }));
            let (a, b, perm) = if merged {
                rcm_renumbered(a, b)
            } else {
                (a, b, Vec::new())
            };
            match threads.run(|e| Hierarchy::new(e, a, b, &s)) {
                Ok(h) => {
                    let sizes = h.sizes();
                    let nnz: Vec<u64> = h.level_nnz().iter().map(|&v| v as u64).collect();
                    info.u64s(&sizes.iter().map(|&v| v as u64).collect::<Vec<_>>())
                        .u64s(&nnz);
                    steps.push(Step::Tail(Box::new(h), perm));
                }
                Err(e) => tail_err = Some(e),
            }
        }
        agree_err(comm, tail_err, "AMG setup of the last rank")?;
        let mut buf = info.finish();
        comm.broadcast(0, &mut buf);
        let mut r = Reader::new(&buf);
        let (sizes, nnz) = (r.u64s(), r.u64s());
        for (k, (&rows, &z)) in sizes.iter().zip(&nnz).enumerate() {
            levels.push(LevelInfo {
                rows: rows as usize,
                nnz: z as usize,
                ranks: 1,
                max_rows: rows as usize,
                halo_values: 0,
                handed_rows: if k == 0 { handed } else { 0 },
            });
        }
        Ok(Self {
            steps,
            settings: *settings,
            levels,
            distributed,
        })
    }

    /// Levels in all (the engine's coarsest included).
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    /// Rows of every level, finest first.
    pub fn sizes(&self) -> Vec<usize> {
        self.levels.iter().map(|l| l.rows).collect()
    }

    /// Stored entries of all levels over those of the finest.
    pub fn operator_complexity(&self) -> f64 {
        let fine = self.levels.first().map_or(0, |l| l.nnz);
        if fine == 0 {
            return 1.0;
        }
        self.levels.iter().map(|l| l.nnz).sum::<usize>() as f64 / fine as f64
    }
}
