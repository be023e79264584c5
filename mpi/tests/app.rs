//! The whole application path of the `mpi` backend (`quadflow run`'s
//! [`run::run_group`]: the lead loads, the group splits, every rank runs
//! the pipeline on its part, the join) on in-process ranks
//! ([`ThreadComm`]), against the serial backend: what `mpi/run-tests.sh`
//! checks under `mpirun`, without MPI.

use quadflow::run::{self, RunResult};
use quadflow::scene::Scene;
use quadflow_mpi::backend::{MpiKind, MpiRun, Starter};
use quadflow_mpi::comm::ThreadComm;
use quadflow_mpi::group::Started;
use quadflow_systems::components::{Failure, PipelineError, fail};
use quadflow_systems::config::{BackendKind, Catalog, SettingError, Table};
use quadflow_systems::pipeline::{Backend, Phase, PhaseSystems, ProcessGroup, Registry};
use quadflow_systems::serial::Serial;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/")).join(rel)
}

/// A test backend named `parallel` (so that `[mpi] local = "parallel"`
/// picks it): serial, except that `phase` fails on rank `rank`.
#[derive(Clone, Copy)]
struct FailOn {
    rank: usize,
    phase: Phase,
}

impl Backend for FailOn {
    fn name(&self) -> &'static str {
        "parallel"
    }
    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        let s = Serial.systems(phase)?;
        if phase != self.phase {
            return Some(s);
        }
        let (rank, name) = (self.rank, phase.name());
        let boom = move |run: bevy_ecs::prelude::Res<MpiRun>,
                         mut failure: bevy_ecs::prelude::ResMut<Failure>| {
            if run.group.rank() == rank {
                fail(
                    &mut failure,
                    PipelineError::Backend {
                        backend: "test".into(),
                        message: format!("injected failure in {name}"),
                    },
                );
            }
        };
        use bevy_ecs::prelude::IntoScheduleConfigs;
        Some((s, boom.into_configs()).chain().into_configs())
    }
}

impl BackendKind for FailOn {
    fn name(&self) -> &'static str {
        "parallel"
    }
    fn about(&self) -> &'static str {
        "serial, failing one phase on one rank (tests)"
    }
    fn configure(&self, _: &Table, _: &Registry) -> Result<Arc<dyn Backend>, SettingError> {
        Ok(Arc::new(*self))
    }
}

/// The catalog of one rank: the built-in kinds and the mpi kind over
/// `comm`.
fn catalog(comm: ThreadComm, fail_on: Option<FailOn>) -> Catalog {
    let slot = Mutex::new(Some(comm));
    let starter: Starter = Arc::new(move || {
        let c = slot.lock().unwrap().take().ok_or("started twice")?;
        Ok(Started {
            comm: Box::new(c),
            keep: None,
        })
    });
    let mut c = quadflow_systems::backends::builtin();
    if let Some(f) = fail_on {
        c.register(f);
    }
    c.register(MpiKind::with_starter(starter));
    c
}

/// Runs `scene` (TOML) as `p` in-process ranks; every rank's outcome.
fn ranks(p: usize, scene: &str, fail_on: Option<FailOn>) -> Vec<Result<Option<RunResult>, String>> {
    let handles: Vec<_> = ThreadComm::ranks(p)
        .into_iter()
        .map(|comm| {
            let text = scene.to_string();
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(move || {
                    let cat = catalog(comm, fail_on);
                    let scene =
                        Scene::parse_with(&text, "<test>", &cat).map_err(|e| e.to_string())?;
                    let plan = scene.plan_with(&cat).map_err(|e| e.to_string())?;
                    let g = run::process_group(&plan)
                        .map_err(|e| e.to_string())?
                        .expect("the mpi backend has a group");
                    run::run_group(&plan, g.as_ref(), None).map_err(|e| e.to_string())
                })
                .unwrap()
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The lead's result; every other rank returned none.
fn lead(out: Vec<Result<Option<RunResult>, String>>) -> RunResult {
    let mut it = out.into_iter();
    let first = it.next().unwrap().unwrap().expect("rank 0 has the result");
    for r in it {
        assert!(r.unwrap().is_none(), "only the lead has results");
    }
    first
}

fn serial(scene: &str) -> RunResult {
    let plan = Scene::parse(scene, "<test>").unwrap().plan().unwrap();
    run::run(&plan, None).unwrap()
}

fn rel_max(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let s = b.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / s
}

/// `u` of a distributed run against serial's (`s`, Jacobi-CG on `mesh`):
/// against its converged `u` when the iteration counts agree, else
/// against its iterate after as many iterations (the sums run in another
/// order, so the count may differ by one).
fn u_error(r: &RunResult, s: &RunResult, mesh: &std::path::Path) -> f64 {
    let it = r.solution.stats.iterations;
    if it == s.solution.stats.iterations {
        return rel_max(&r.solution.u, &s.solution.u);
    }
    // a tolerance serial cannot meet, the cap at `it`
    let extra =
        format!("[solver]\nrtol = 1e-300\nmax_iterations = {it}\nallow_unconverged = true\n");
    rel_max(
        &r.solution.u,
        &serial(&serial_scene(mesh, &extra)).solution.u,
    )
}

fn scene(mesh: &std::path::Path, extra: &str) -> String {
    format!(
        "[mesh]\nfile = {:?}\n[backend]\ndefault = \"mpi\"\n{extra}",
        mesh.display().to_string()
    )
}

fn serial_scene(mesh: &std::path::Path, extra: &str) -> String {
    format!(
        "[mesh]\nfile = {:?}\n[backend]\ndefault = \"serial\"\n{extra}",
        mesh.display().to_string()
    )
}

/// Jacobi-CG through the whole path on every small reference mesh, 1-3
/// ranks, both partitioners: iterations within 1% (or one) of serial's,
/// `u` within 1e-10 of serial's (of its iterate after as many iterations
/// where the counts differ), element fields, matrix size and boundary
/// figures of the whole mesh, the mpi attributes.
#[test]
fn reference_meshes_agree_with_serial() {
    let meshes = [
        "backward_step_287",
        "elbow_90_411",
        "s_bend_387",
        "t_junction_393",
        "venturi_341",
        "y_tube_201",
        "s_duct_16k",
    ];
    let mut worst = 0.0f64;
    for name in meshes {
        let mesh = data(&format!("data/meshes/{name}.h5"));
        let s = serial(&serial_scene(&mesh, ""));
        for p in 1..=3 {
            for part in ["metis", "rcb"] {
                let r = lead(ranks(
                    p,
                    &scene(&mesh, &format!("[mpi]\npartitioner = \"{part}\"\n")),
                    None,
                ));
                let (it, its) = (r.solution.stats.iterations, s.solution.stats.iterations);
                assert!(
                    (it as f64 - its as f64).abs() <= (0.01 * its as f64).max(1.0),
                    "{name} P={p} {part}: {it} iterations, serial {its}"
                );
                let e = u_error(&r, &s, &mesh);
                eprintln!(
                    "{name} P={p} {part}: {it} iterations (serial {its}), u differs by {e:.2e} (from converged serial {:.2e})",
                    rel_max(&r.solution.u, &s.solution.u)
                );
                worst = worst.max(e);
                assert!(r.solution.stats.converged);
                assert!(r.solution.true_residual < 2e-8, "{name}");
                let e = rel_max(&r.abs_vel, &s.abs_vel);
                assert!(e <= 1e-7, "{name} P={p} {part}: speed differs by {e:e}");
                let e = rel_max(&r.pressure, &s.pressure);
                assert!(e <= 1e-9, "{name} P={p} {part}: pressure differs by {e:e}");
                assert_eq!(r.nnz, s.nnz, "{name}");
                assert_eq!(r.boundary, s.boundary, "{name}");
                assert_eq!(
                    r.solution.stats.decoupled_rows,
                    s.solution.stats.decoupled_rows
                );
                assert_eq!(r.mesh.nodes(), s.mesh.nodes());
                assert_eq!(r.int_attribute("mpi_ranks"), Some(p as i64));
                assert_eq!(r.backend_label(), "mpi");
                let attrs = r.attributes();
                for key in [
                    "mpi_time_solve_max",
                    "mpi_time_solve_min",
                    "mpi_comm_seconds_max",
                    "mpi_halo_seconds_max",
                    "mpi_allreduce_seconds_max",
                    "mpi_edge_cut",
                    "mpi_imbalance_nodes",
                ] {
                    assert!(attrs.iter().any(|(k, _)| k == key), "{key}");
                }
                if p == 1 {
                    assert_eq!(r.int_attribute("mpi_edge_cut"), Some(0));
                } else {
                    assert!(r.int_attribute("mpi_edge_cut").unwrap() > 0);
                }
            }
        }
    }
    assert!(worst <= 1e-10, "u differs by up to {worst:e}");
}

/// AMG-CG to 1e-10 through the whole path, and `local = "parallel"`.
#[test]
fn amg_cg_and_the_parallel_local_executor() {
    let mesh = data("data/meshes/s_duct_16k.h5");
    let amg = "[solver]\nmethod = \"amg-cg\"\nrtol = 1e-10\n";
    let s = serial(&serial_scene(&mesh, amg));
    for p in [1, 3] {
        let r = lead(ranks(p, &scene(&mesh, amg), None));
        assert!(r.solution.stats.converged);
        assert!(
            r.solution.true_residual <= 1.5e-10,
            "{}",
            r.solution.true_residual
        );
        let e = rel_max(&r.solution.u, &s.solution.u);
        assert!(e <= 1e-7, "P={p}: u differs from serial AMG-CG's by {e:e}");
    }
    let s = serial(&serial_scene(&mesh, ""));
    let r = lead(ranks(
        2,
        &scene(
            &mesh,
            "[mpi]\nlocal = \"parallel\"\n[parallel]\nthreads = 2\n",
        ),
        None,
    ));
    let local = r.attributes().into_iter().find(|(k, _)| k == "mpi_local");
    assert_eq!(
        local.map(|a| a.1),
        Some(quadflow_systems::components::Attr::Str("parallel".into()))
    );
    let its = s.solution.stats.iterations as f64;
    assert!((r.solution.stats.iterations as f64 - its).abs() <= (0.01 * its).max(1.0));
    let e = u_error(&r, &s, &mesh);
    assert!(e <= 1e-10, "local parallel: u differs by {e:e}");
}

/// AMG-CG on 2 to 8 ranks with levels distributed down to a few hundred
/// rows a rank (and handed over to fewer ranks), on the rank's threads
/// too: iterations within +20% of the engine's, `u` as serial's; one rank
/// runs the local backend's own solve (its iterations, to the bit).
#[test]
fn distributed_amg_levels_stay_within_the_iteration_bound() {
    let mesh = data("data/meshes/s_duct_16k.h5");
    let amg = "[solver]\nmethod = \"amg-cg\"\nrtol = 1e-10\n";
    let s = serial(&serial_scene(&mesh, amg));
    let its = s.solution.stats.iterations as f64;
    for (p, extra) in [
        (1, ""),
        (2, "[mpi]\nagglomerate_below = 300\n"),
        (
            3,
            "[mpi]\nagglomerate_below = 500\nlocal = \"parallel\"\n[parallel]\nthreads = 2\n",
        ),
        (5, "[mpi]\nagglomerate_below = 300\npartitioner = \"rcb\"\n"),
        (8, "[mpi]\nagglomerate_below = 200\n"),
    ] {
        let r = lead(ranks(p, &scene(&mesh, &format!("{amg}{extra}")), None));
        let st = &r.solution.stats;
        assert!(st.converged, "P={p}");
        assert!(
            st.iterations as f64 <= (1.2 * its).ceil(),
            "P={p}: {} iterations against serial's {its}",
            st.iterations
        );
        let e = rel_max(&r.solution.u, &s.solution.u);
        assert!(e <= 1e-7, "P={p}: u differs from serial AMG-CG's by {e:e}");
        let attrs = r.attributes();
        let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|a| a.1.clone());
        let path = match get("mpi_solve_path") {
            Some(quadflow_systems::components::Attr::Str(s)) => s,
            other => panic!("P={p}: mpi_solve_path {other:?}"),
        };
        if p == 1 {
            assert!(path.starts_with("one rank"), "{path}");
            assert_eq!(st.iterations, s.solution.stats.iterations);
        } else {
            assert!(path.starts_with("AMG-CG"), "{path}");
            match get("mpi_amg_distributed_levels") {
                Some(quadflow_systems::components::Attr::Int(d)) => {
                    assert!(d >= 1, "P={p}: {d} distributed levels")
                }
                other => panic!("P={p}: {other:?}"),
            }
            assert!(get("mpi_amg_level_halo_bytes_per_cycle").is_some());
        }
    }
}

/// Every rank fails with the same message (the lowest failing rank's),
/// none waits for another, nothing is returned.
fn all_fail_with(out: Vec<Result<Option<RunResult>, String>>, want: &str) -> String {
    let msgs: Vec<String> = out
        .into_iter()
        .map(|r| r.expect_err("every rank fails"))
        .collect();
    assert!(msgs.iter().all(|m| *m == msgs[0]), "{msgs:?}");
    assert!(msgs[0].contains(want), "{}", msgs[0]);
    msgs[0].clone()
}

#[test]
fn bad_input_fails_on_every_rank_with_one_message() {
    let fx = |n: &str| data(&format!("fixtures/mpi/{n}.msh"));
    all_fail_with(
        ranks(3, &scene(&fx("strip2"), ""), None),
        "cannot split a mesh of 2 elements into 3 parts",
    );
    all_fail_with(
        ranks(
            9,
            &scene(&fx("grid3x3_centre_last"), "[mpi]\npartitioner = \"rcb\"\n"),
            None,
        ),
        "of 9 is empty",
    );
    all_fail_with(
        ranks(2, &scene(&fx("inside_out"), ""), None),
        "lists node 3 twice",
    );
    let missing = scene(&data("data/meshes/no_such_mesh.h5"), "");
    all_fail_with(ranks(2, &missing, None), "no_such_mesh.h5");
    // a failure on one rank only, before the solve (the others meet it
    // in the solve's agreement) and after it (in the run's)
    let mesh = data("data/meshes/venturi_341.h5");
    let local = "[mpi]\nlocal = \"parallel\"\n";
    for (rank, phase) in [(1, Phase::Assembly), (2, Phase::Post), (0, Phase::Boundary)] {
        let m = all_fail_with(
            ranks(3, &scene(&mesh, local), Some(FailOn { rank, phase })),
            &format!("injected failure in {}", phase.name()),
        );
        if rank > 0 {
            assert!(m.starts_with(&format!("rank {rank} of 3: ")), "{m}");
        }
    }
    // the solver's own failures (every rank alike)
    all_fail_with(
        ranks(2, &scene(&mesh, "[solver]\nmax_iterations = 5\n"), None),
        "did not converge",
    );
    all_fail_with(
        ranks(2, &scene(&mesh, "[solver]\nmethod = \"cholesky\"\n"), None),
        "cg-jacobi or amg-cg",
    );
}

#[test]
fn the_mpi_section_is_checked() {
    let cat = catalog(ThreadComm::ranks(1).pop().unwrap(), None);
    let mesh = data("data/meshes/venturi_341.h5");
    for (extra, want) in [
        ("[mpi]\nlocal = \"cuda\"\n", "mpi.local"),
        ("[mpi]\npartitioner = \"scotch\"\n", "mpi.partitioner"),
        ("[mpi]\nranks = 4\n", "ranks"),
        ("[mpi]\nagglomerate_below = 0\n", "agglomerate_below"),
    ] {
        let e = Scene::parse_with(&scene(&mesh, extra), "<test>", &cat)
            .and_then(|s| s.plan_with(&cat))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    let defaults = cat.get("mpi").unwrap().defaults();
    assert_eq!(defaults["local"].as_str(), Some("serial"));
    assert_eq!(defaults["partitioner"].as_str(), Some("metis"));
}
