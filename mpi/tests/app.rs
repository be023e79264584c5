//! The whole application path of the `mpi` backend with the lead reading
//! the mesh (`quadflow run`'s [`run::run_group`] with `[mpi] read =
//! "lead"`: the lead loads, the group splits, every rank runs the pipeline
//! on its part, the join gathers) on in-process ranks
//! ([`quadflow_mpi::comm::ThreadComm`]), against the serial backend: what
//! `mpi/run-tests.sh` checks under `mpirun`, without MPI. The block read
//! (every rank its own blocks) is `blocks.rs`'s.

mod common;

use common::*;
use quadflow::scene::Scene;
use quadflow_mpi::comm::ThreadComm;
use quadflow_systems::pipeline::Phase;

/// The scene of an `mpi` run on `mesh`, the lead reading it.
fn scene(mesh: &std::path::Path, extra: &str) -> String {
    scene_read(mesh, extra, "lead")
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
    let e = Scene::parse_with(&scene_read(&mesh, "", "rank0"), "<test>", &cat)
        .and_then(|s| s.plan_with(&cat))
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("mpi.read") && e.contains("blocks, lead"), "{e}");
    let defaults = cat.get("mpi").unwrap().defaults();
    assert_eq!(defaults["local"].as_str(), Some("serial"));
    assert_eq!(defaults["partitioner"].as_str(), Some("auto"));
    assert_eq!(defaults["read"].as_str(), Some("blocks"));
}
