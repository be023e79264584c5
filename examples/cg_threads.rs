//! The Jacobi-CG kernels alone, timed in one process on one system: what
//! the threaded executor does against what two processes do.
//!
//! ```text
//! cg_threads [MESH] [ITERATIONS] [REPEATS] [serial,team,rayon,halves]
//! ```
//!
//! MESH (default `../shared/meshes/y_tube_195k.h5`; `venturi:NODES` for a
//! generated venturi). Each variant runs ITERATIONS fused iterations (pass
//! A + pass B with fixed scalars) REPEATS times, interleaved; prints the
//! median and every time per iteration:
//! - `serial`: `SerialKernels`;
//! - `team`: `ParallelKernels` on a team of 2 (the parallel backend's);
//! - `rayon`: the previous parallel kernels, kept here for comparison: one
//!   block per thread, but each pass a rayon fork-join (`par_iter` in
//!   `pool.install`) with its halo vector, terms and partial sums
//!   allocated per pass, blocks free to run on either worker;
//! - `halves`: two independent halves of the matrix (couplings between
//!   them dropped), each a serial CG on its own thread with its own data,
//!   allocated and first touched by that thread: what two MPI ranks do,
//!   without their communication.
use quadflow::run::load_mesh;
use quadflow::scene::Scene;
use quadflow::systems::components::LinearSystem;
use quadflow::systems::exec::Team;
use quadflow::systems::parallel::ParallelKernels;
use quadflow::systems::pipeline::Pipeline;
use quadflow::systems::solver::{CHUNK, CgKernels, CgMatrix, EquilibratedSystem, SerialKernels};
use quadflow::systems::sparse::SymCsr;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

fn system(mesh: &str) -> (SymCsr, Vec<f64>) {
    let src = if let Some(n) = mesh.strip_prefix("venturi:") {
        format!("[mesh]\ngenerate = 'venturi'\nnodes = {n}\n")
    } else {
        format!("[mesh]\nfile = '{mesh}'\n")
    };
    let sc = Scene::parse(
        &format!("{src}[solver]\nmax_iterations = 1\nallow_unconverged = true\n"),
        "<lab>",
    )
    .unwrap();
    let plan = sc.plan().unwrap();
    let m = load_mesh(&plan).unwrap();
    let mut p = Pipeline::new(m.mesh.clone(), plan.config, &plan.registry, &plan.phases).unwrap();
    p.run().unwrap();
    let sys = p.world.resource::<LinearSystem>();
    (sys.k.clone(), sys.f.clone())
}

/// The previous parallel kernels (a rayon fork-join per pass, per-pass
/// allocations), on `pass_a_rows` as it is now (p in place).
struct RayonKernels {
    pool: Arc<rayon::ThreadPool>,
    blocks: Vec<(usize, usize)>,
    halo: Vec<usize>,
}
impl RayonKernels {
    fn new(pool: Arc<rayon::ThreadPool>, a: &CgMatrix) -> Self {
        let m = a.get();
        let blocks =
            quadflow::systems::parallel::split_by_bytes(m.n, &m.rowptr, pool.current_num_threads());
        let halo = blocks
            .iter()
            .map(|&(s, e)| {
                (s..e)
                    .map(|i| {
                        let last = m.col[m.rowptr[i + 1] as usize - 1] as usize;
                        (last + 1).saturating_sub(e)
                    })
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        Self { pool, blocks, halo }
    }
}
fn split<'a>(mut v: &'a mut [f64], blocks: &[(usize, usize)]) -> Vec<&'a mut [f64]> {
    let mut out = Vec::new();
    for &(s, e) in blocks {
        let (h, t) = v.split_at_mut(e - s);
        out.push(h);
        v = t;
    }
    out
}
impl CgKernels for RayonKernels {
    fn pass_a(
        &mut self,
        a: &CgMatrix,
        inv_diag: &[f64],
        r: &[f64],
        beta: f64,
        alpha_prev: f64,
        x: &mut [f64],
        p: &mut Vec<f64>,
        q: &mut [f64],
    ) -> f64 {
        let blocks = &self.blocks;
        let halo = &self.halo;
        let hps: Vec<Vec<f64>> = blocks
            .iter()
            .zip(halo)
            .map(|(&(_, e), &h)| {
                (e..e + h)
                    .map(|j| r[j] * inv_diag[j] + beta * p[j])
                    .collect()
            })
            .collect();
        let work: Vec<_> = split(x, blocks)
            .into_iter()
            .zip(split(p, blocks))
            .zip(split(q, blocks))
            .enumerate()
            .collect();
        type Part = (Vec<f64>, Vec<(u32, f64)>);
        let parts: Vec<Part> = self.pool.install(|| {
            work.into_par_iter()
                .map(|(b, ((xb, pb), qb))| {
                    let (mut terms, mut partials) = (Vec::new(), Vec::new());
                    quadflow::systems::solver::pass_a_rows(
                        a,
                        inv_diag,
                        r,
                        beta,
                        alpha_prev,
                        blocks[b],
                        xb,
                        pb,
                        qb,
                        &hps[b],
                        &mut terms,
                        &mut partials,
                    );
                    (partials, terms)
                })
                .collect()
        });
        let mut pap = 0.0;
        for (partials, terms) in parts.iter().rev() {
            for &v in partials {
                pap += v;
            }
            for &(j, t) in terms {
                q[j as usize] += t;
            }
        }
        pap
    }
    fn pass_b(&mut self, inv_diag: &[f64], alpha: f64, q: &[f64], r: &mut [f64]) -> (f64, f64) {
        let blocks = &self.blocks;
        let work: Vec<_> = split(r, blocks).into_iter().enumerate().collect();
        let parts: Vec<Vec<(f64, f64)>> = self.pool.install(|| {
            work.into_par_iter()
                .map(|(b, rb)| {
                    let mut p = Vec::new();
                    quadflow::systems::solver::pass_b_rows(
                        inv_diag, alpha, q, blocks[b], rb, &mut p,
                    );
                    p
                })
                .collect()
        });
        parts
            .iter()
            .flatten()
            .fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1))
    }
}

/// `iters` fused iterations with fixed scalars; ms per iteration.
fn time(k: &mut dyn CgKernels, sys: &EquilibratedSystem, iters: usize) -> f64 {
    let n = sys.a.n();
    let (mut x, mut p, mut q, mut r) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], sys.b.clone());
    let mut alpha = 0.0;
    // warm
    for _ in 0..5 {
        let pap = k.pass_a(
            &sys.a,
            &sys.inv_diag,
            &r,
            0.5,
            alpha,
            &mut x,
            &mut p,
            &mut q,
        );
        alpha = 1e-9 / pap.abs().max(1.0);
        k.pass_b(&sys.inv_diag, alpha, &q, &mut r);
    }
    let t0 = Instant::now();
    for _ in 0..iters {
        let pap = k.pass_a(
            &sys.a,
            &sys.inv_diag,
            &r,
            0.5,
            alpha,
            &mut x,
            &mut p,
            &mut q,
        );
        alpha = 1e-9 / pap.abs().max(1.0);
        k.pass_b(&sys.inv_diag, alpha, &q, &mut r);
    }
    t0.elapsed().as_secs_f64() * 1e3 / iters as f64
}

/// Two independent halves (couplings across dropped), each a serial CG on
/// its own thread with its own (thread-allocated) data: "ranks as threads".
fn halves(k: &SymCsr, f: &[f64], iters: usize) -> f64 {
    let sys = EquilibratedSystem::new(k, f).unwrap();
    let a = sys.a.get();
    let n = a.n;
    let mid = (n / 2).div_ceil(CHUNK) * CHUNK;
    let sub = |lo: usize, hi: usize| {
        let mut rowptr = vec![0u32];
        let (mut col, mut val) = (vec![], vec![]);
        for i in lo..hi {
            for kk in a.rowptr[i] as usize..a.rowptr[i + 1] as usize {
                let j = a.col[kk] as usize;
                if j < hi {
                    col.push((j - lo) as u32);
                    val.push(a.val[kk]);
                }
            }
            rowptr.push(col.len() as u32);
        }
        (
            SymCsr {
                n: hi - lo,
                rowptr,
                col,
                val,
            },
            sys.b[lo..hi].to_vec(),
            sys.inv_diag[lo..hi].to_vec(),
        )
    };
    let barrier = std::sync::Barrier::new(2);
    let times: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = [(0, mid), (mid, n)]
            .into_iter()
            .map(|(lo, hi)| {
                let sub = &sub;
                let barrier = &barrier;
                s.spawn(move || {
                    let (m, b, d) = sub(lo, hi);
                    let m = CgMatrix::new(m);
                    let nn = m.n();
                    let (mut x, mut p, mut q, mut r) =
                        (vec![0.0; nn], vec![0.0; nn], vec![0.0; nn], b);
                    let mut k = SerialKernels::default();
                    let mut alpha = 0.0;
                    barrier.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        let pap = k.pass_a(&m, &d, &r, 0.5, alpha, &mut x, &mut p, &mut q);
                        alpha = 1e-9 / pap.abs().max(1.0);
                        k.pass_b(&d, alpha, &q, &mut r);
                    }
                    t0.elapsed().as_secs_f64() * 1e3 / iters as f64
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    times.iter().cloned().fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mesh = args
        .get(1)
        .cloned()
        .unwrap_or("../shared/meshes/y_tube_195k.h5".into());
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let which: Vec<String> = args
        .get(4)
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or(vec![
            "serial".into(),
            "team".into(),
            "rayon".into(),
            "halves".into(),
        ]);
    let (k, f) = system(&mesh);
    let sys = EquilibratedSystem::new(&k, &f).unwrap();
    println!(
        "rows {} stored {} bytes/it {}",
        sys.a.n(),
        sys.a.get().stored(),
        quadflow::systems::solver::fused_bytes_per_iteration(sys.a.n(), sys.a.get().stored())
    );
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    let team = Arc::new(Team::new(2, "lab").unwrap());
    let mut res: Vec<(String, Vec<f64>)> = which.iter().map(|w| (w.clone(), vec![])).collect();
    for _ in 0..reps {
        for (w, v) in res.iter_mut() {
            let t = match w.as_str() {
                "serial" => time(&mut SerialKernels::default(), &sys, iters),
                "team" => time(&mut ParallelKernels::new(team.clone()), &sys, iters),
                "rayon" => {
                    let mut kk = RayonKernels::new(pool.clone(), &sys.a);
                    pool.install(|| time(&mut kk, &sys, iters))
                }
                "halves" => halves(&k, &f, iters),
                _ => panic!("{w}"),
            };
            v.push(t);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap();
    for (w, v) in &res {
        let mut s = v.clone();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{w:8} median {:.3} ms/it  all {:?}",
            s[s.len() / 2],
            v.iter()
                .map(|x| (x * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        );
    }
    println!("load {}", load.trim());
}
