//! The MPI test driver: run under `mpirun -n P` (see `mpi/run-tests.sh`).
//!
//! ```text
//! mpi_driver meshes DIR [--only NAME]   every mesh of DIR/meshes, both partitioners:
//!                                       distributed Jacobi-CG against serial (iterations
//!                                       within 1%, u within 1e-10 relative) and AMG-CG
//!                                       to 1e-10 (true residual, u against the host
//!                                       AMG-CG, iterations within +20% of it)
//! mpi_driver venturi NODES              a generated venturi, the same checks
//! mpi_driver bad more-ranks|empty-part  bad input: must fail on every rank
//! ```
//! Rank 0 prints one `PASS`/`FAIL` line per check and a closing
//! `N passed, M failed`; the exit status is non-zero on any failure or
//! error, on every rank.

use quadflow::generate::{self, Geometry};
use quadflow::io::h5 as h5io;
use quadflow_mpi::comm::{Comm, SingleRank, mpi::MpiComm};
use quadflow_mpi::driver::{self, DistSettings, Split};
use quadflow_mpi::partition::Method;
use quadflow_systems::amg;
use quadflow_systems::components::{LinearSystem, SolverMethod};
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use quadflow_systems::pipeline::{Phase, PhasePlan, Pipeline, Registry, RunConfig};
use quadflow_systems::solver::{self, Exec, SerialKernels};
use std::path::PathBuf;
use std::sync::Arc;

fn rel_max(a: &[f64], b: &[f64]) -> f64 {
    let s = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / s
}

/// The serial global system through the engine's pipeline.
fn global_system(mesh: &Mesh, cfg: &RunConfig) -> LinearSystem {
    let mut reg = Registry::with_serial();
    reg.register(quadflow_mpi::assemble::Hold);
    let mut plan = PhasePlan::uniform("serial");
    plan.set(Phase::Solve, "mpi-hold");
    plan.set(Phase::Post, "mpi-hold");
    let mut pipe = Pipeline::new(Arc::new(mesh.clone()), cfg.clone(), &reg, &plan).unwrap();
    pipe.run().unwrap();
    std::mem::take(&mut *pipe.world.resource_mut::<LinearSystem>())
}

struct Tally {
    pass: usize,
    fail: usize,
}

impl Tally {
    fn check(&mut self, ok: bool, what: String) {
        if ok {
            self.pass += 1;
            println!("PASS {what}");
        } else {
            self.fail += 1;
            println!("FAIL {what}");
        }
    }
}

fn load(path: &std::path::Path) -> Result<Mesh, String> {
    let raw = h5io::read_mesh(path).map_err(|e| e.to_string())?;
    Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).map_err(|e| e.to_string())
}

/// All checks of one mesh (`mesh` on rank 0 only).
fn check_mesh(
    comm: &dyn Comm,
    name: &str,
    mesh: Option<&Mesh>,
    tally: &mut Tally,
) -> Result<(), String> {
    let p = comm.size();
    let reg = Registry::with_serial();
    // serial references on rank 0
    let cfg_cg = RunConfig::default();
    let mut cfg_amg = RunConfig::default();
    cfg_amg.solver.method = SolverMethod::AmgCg;
    cfg_amg.solver.cg.rtol = 1e-10;
    let serial = mesh.map(|m| {
        let sys = global_system(m, &cfg_cg);
        let cg = solver::solve_cg_jacobi(
            &sys.k,
            &sys.f,
            &cfg_cg.solver.cg,
            &mut SerialKernels::default(),
            &mut |_, _| true,
        )
        .unwrap();
        let am = amg::solve_amg_cg(
            &sys.k,
            &sys.f,
            &cfg_amg.solver.cg,
            &cfg_amg.solver.amg,
            Exec::Serial,
            &mut |_, _| true,
        )
        .unwrap();
        (cg, am, sys)
    });
    for method in [Method::Rcb, Method::Metis] {
        // Jacobi-CG, the reference configuration
        let s = DistSettings {
            run: cfg_cg.clone(),
            split: Split::Method(method),
            ..Default::default()
        };
        let r = driver::run(comm, 0, mesh, &s, &reg)?;
        if let (Some((cg, _, sys)), Some(u)) = (&serial, &r.u) {
            let q = r.quality.as_ref().unwrap();
            println!(
                "     {name} {} P={p}: {} | dist {:.3}s assemble {:.3}s solve {:.3}s",
                method.name(),
                q.table(0).lines().next().unwrap_or(""),
                r.seconds[0],
                r.seconds[1],
                r.seconds[2]
            );
            let (it, its) = (r.stats.iterations as f64, cg.1.iterations as f64);
            let e = rel_max(u, &cg.0);
            // The sums run in another order, so the count may differ by one
            // (within 1%); u is then compared with the serial iterate after
            // as many iterations (the same CG step, computed in another
            // order), and the difference to the converged serial u shown.
            let (e_same, same) = if r.stats.iterations == cg.1.iterations {
                (e, String::new())
            } else {
                let fixed = solver::CgSettings {
                    rtol: 0.0,
                    max_iter: r.stats.iterations,
                };
                let (us, _) = solver::solve_cg_jacobi(
                    &sys.k,
                    &sys.f,
                    &fixed,
                    &mut SerialKernels::default(),
                    &mut |_, _| true,
                )
                .unwrap();
                let es = rel_max(u, &us);
                (
                    es,
                    format!(" (to the serial iterate {}: {es:.2e})", r.stats.iterations),
                )
            };
            tally.check(
                (it - its).abs() <= (0.01 * its).max(1.0) && e_same <= 1e-10 && r.stats.converged,
                format!(
                    "{name} cg-jacobi {} P={p}: {} iterations (serial {}), u rel diff {e:.2e}{same}, true residual {:.2e}, CG loop {:.3}s = {:.1} us/it (serial engine {:.3}s = {:.1} us/it)",
                    method.name(),
                    r.stats.iterations,
                    cg.1.iterations,
                    r.true_residual,
                    r.stats.solve_seconds,
                    1e6 * r.stats.solve_seconds / r.stats.iterations.max(1) as f64,
                    cg.1.solve_seconds,
                    1e6 * cg.1.solve_seconds / cg.1.iterations.max(1) as f64
                ),
            );
        }
        // AMG-CG to 1e-10: default (fewer ranks below 5,000 rows a rank)
        // and deep (levels distributed down to 100 rows a rank)
        for (label, below) in [("", 5_000usize), (" deep", 100)] {
            let mut s = DistSettings {
                run: cfg_amg.clone(),
                split: Split::Method(method),
                ..Default::default()
            };
            s.amg.agglomerate_below = below;
            let r = driver::run(comm, 0, mesh, &s, &reg)?;
            if let (Some((_, am, _)), Some(u)) = (&serial, &r.u) {
                // the one-process count: the same distributed solver on
                // one rank (rank 0 alone)
                let one = driver::run(&SingleRank, 0, mesh, &s, &reg)?;
                let e = rel_max(u, &am.0);
                let (it, it1) = (r.stats.iterations as f64, one.stats.iterations as f64);
                tally.check(
                    r.stats.converged
                        && r.true_residual <= 1.5e-10
                        && e <= 1e-7
                        && it <= (1.2 * am.1.iterations as f64).ceil()
                        && (p > 1 || it == it1),
                    format!(
                        "{name} amg-cg{label} {} P={p}: {} iterations (one process {}, host AMG {}), {} levels, true residual {:.2e}, u rel diff to host AMG {e:.2e}, setup {:.3}s solve {:.3}s",
                        method.name(),
                        r.stats.iterations,
                        one.stats.iterations,
                        am.1.iterations,
                        r.stats.levels,
                        r.true_residual,
                        r.stats.setup_seconds,
                        r.stats.solve_seconds
                    ),
                );
            }
        }
    }
    Ok(())
}

/// `nx` unit Quad-8 elements in a row, on the `(2nx+1) x 3` lattice
/// (cell centres unused).
fn strip(nx: usize) -> Mesh {
    let w = 2 * nx + 1;
    let id = |i: usize, j: usize| (j * w + i) as i64;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for j in 0..3 {
        for i in 0..w {
            x.push(i as f64 / 2.0);
            y.push(j as f64 / 2.0);
        }
    }
    let q: Vec<[i64; 8]> = (0..nx)
        .map(|e| {
            let i = 2 * e;
            [
                id(i, 0),
                id(i + 2, 0),
                id(i + 2, 2),
                id(i, 2),
                id(i + 1, 0),
                id(i + 2, 1),
                id(i + 1, 2),
                id(i, 1),
            ]
        })
        .collect();
    Mesh::new(x, y, &q, OrientationPolicy::Fix).expect("a valid strip")
}

fn names(comm: &dyn Comm, dir: &std::path::Path, only: Option<&str>) -> Vec<String> {
    let mut buf = Vec::new();
    if comm.rank() == 0 {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("meshes"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "h5"))
                    .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                    .filter(|n| only.is_none_or(|o| o == n))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        buf = v.join("\n").into_bytes();
    }
    comm.broadcast(0, &mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .map(String::from)
        .collect()
}

fn real_main(comm: &dyn Comm, args: &[String]) -> Result<Tally, String> {
    let mut tally = Tally { pass: 0, fail: 0 };
    let root = comm.rank() == 0;
    match args.first().map(String::as_str) {
        Some("meshes") => {
            let dir = PathBuf::from(args.get(1).ok_or("meshes DIR")?);
            let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1));
            let list = names(comm, &dir, only.map(String::as_str));
            if list.is_empty() {
                if root {
                    println!("SKIPPED: no meshes in {} (../shared is absent)", dir.join("meshes").display());
                }
                return Ok(tally);
            }
            for name in list {
                let mesh = if root {
                    Some(load(&dir.join("meshes").join(format!("{name}.h5")))?)
                } else {
                    None
                };
                check_mesh(comm, &name, mesh.as_ref(), &mut tally)?;
            }
        }
        Some("venturi") => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).ok_or("venturi NODES")?;
            let mesh = if root {
                let raw = generate::generate(Geometry::Venturi, n).map_err(|e| e.to_string())?;
                Some(Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).map_err(|e| e.to_string())?)
            } else {
                None
            };
            if let Some(m) = &mesh {
                println!("     venturi: {} nodes, {} elements", m.nodes(), m.elements.len());
            }
            check_mesh(comm, &format!("venturi_{n}"), mesh.as_ref(), &mut tally)?;
        }
        Some("selftest") => {
            let (r, p) = (comm.rank(), comm.size());
            let mut v = [r as f64, 1.0];
            comm.allreduce_sum(&mut v);
            let want = (p * (p - 1) / 2) as f64;
            tally.check(v == [want, p as f64], format!("allreduce sum P={p}: {v:?}"));
            let mut m = [r as f64];
            comm.allreduce_max(&mut m);
            tally.check(m[0] == (p - 1) as f64, format!("allreduce max P={p}"));
            let sent: Vec<Vec<u8>> = (0..p).map(|q| vec![r as u8; q + r]).collect();
            let got = comm.alltoallv(sent);
            tally.check(
                got.iter().enumerate().all(|(q, b)| *b == vec![q as u8; q + r]),
                format!("alltoallv P={p}"),
            );
            let mut b = if r == 0 { b"hello".to_vec() } else { Vec::new() };
            comm.broadcast(0, &mut b);
            tally.check(b == b"hello", format!("broadcast P={p}"));
            let next = (r + 1) % p;
            let prev = (r + p - 1) % p;
            let mine = vec![r as f64; 3];
            let mut got = vec![0.0; 3];
            if p > 1 {
                comm.exchange(&[(next, &mine)], &mut [(prev, &mut got)], &mut || {});
                tally.check(got == vec![prev as f64; 3], format!("exchange P={p}"));
            }
            let e = quadflow_mpi::comm::agree(comm, (r == p - 1).then(|| format!("last rank {r}")));
            tally.check(e == Err(format!("last rank {}", p - 1)), format!("agree P={p}"));
        }
        Some("bad") => {
            // a row of unit elements: 2 for "more-ranks" (run it on 3 or
            // more ranks), 4 for "empty-part" (every element in part 0)
            let (nx, split) = match args.get(1).map(String::as_str) {
                Some("more-ranks") => (2, Split::Method(Method::Rcb)),
                Some("empty-part") => (4, Split::Explicit(vec![0; 4])),
                _ => return Err("bad more-ranks|empty-part".into()),
            };
            let mesh = root.then(|| strip(nx));
            let s = DistSettings { split, ..Default::default() };
            driver::run(comm, 0, mesh.as_ref(), &s, &Registry::with_serial())?;
            return Err("bad input was accepted".into());
        }
        _ => return Err("usage: mpi_driver meshes DIR [--only NAME] | venturi NODES | bad more-ranks|empty-part".into()),
    }
    Ok(tally)
}

fn main() {
    let universe = mpi::initialize().expect("MPI initialises");
    let comm = MpiComm::new(universe.world());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match real_main(&comm, &args) {
        Ok(t) => {
            if comm.rank() == 0 {
                println!("{} passed, {} failed", t.pass, t.fail);
            }
            i32::from(t.fail > 0)
        }
        Err(e) => {
            // one write, so that the ranks' lines do not interleave
            use std::io::Write as _;
            let line = format!("rank {} of {}: error: {e}\n", comm.rank(), comm.size());
            let _ = std::io::stderr().write_all(line.as_bytes());
            1
        }
    };
    drop(comm);
    drop(universe);
    std::process::exit(code);
}
