//! Owner-computes on the reference meshes: every owned row of every part,
//! assembled by the engine's serial phases on the part's local mesh,
//! equals the serial global row bit for bit (and so does `f`), for 1 to 8
//! parts with both partitioners. Skips, saying so, without `../shared`.

use quadflow::io::h5;
use quadflow_mpi::assemble::{Hold, LocalSystem};
use quadflow_mpi::part::build_parts;
use quadflow_mpi::partition::{Method, partition, quality};
use quadflow_systems::components::LinearSystem;
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use quadflow_systems::pipeline::{Phase, PhasePlan, Pipeline, Registry, RunConfig};
use std::path::PathBuf;
use std::sync::Arc;

fn meshes() -> Option<Vec<PathBuf>> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/meshes"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "h5"))
        .collect();
    v.sort();
    Some(v)
}

fn global(mesh: &Mesh, cfg: &RunConfig) -> LinearSystem {
    let mut reg = Registry::with_serial();
    reg.register(Hold);
    let mut plan = PhasePlan::uniform("serial");
    plan.set(Phase::Solve, "mpi-hold");
    plan.set(Phase::Post, "mpi-hold");
    let mut pipe = Pipeline::new(Arc::new(mesh.clone()), cfg.clone(), &reg, &plan).unwrap();
    pipe.run().unwrap();
    std::mem::take(&mut *pipe.world.resource_mut::<LinearSystem>())
}

/// Says on stderr that a test skips and why, and appends
/// `quadflow-mpi::test: reason` to `$QUADFLOW_SKIP_LOG` when set (`tests/run`
/// lists them at the end).
fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("QUADFLOW_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
        {
            let _ = writeln!(f, "quadflow-mpi::{test}: {reason}");
        }
    }
}

#[test]
fn owned_rows_equal_serial_rows_on_every_reference_mesh() {
    let Some(paths) = meshes() else {
        skip(
            "owned_rows_equal_serial_rows_on_every_reference_mesh",
            "../shared/meshes is absent",
        );
        return;
    };
    let cfg = RunConfig::default();
    for path in paths {
        let raw = h5::read_mesh(&path).unwrap();
        let mesh = Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).unwrap();
        let sys = global(&mesh, &cfg);
        let (grp, gcol, gval) = sys.k.to_full();
        for method in [Method::Rcb, Method::Metis] {
            for k in 1..=8 {
                let p = partition(&mesh, k, method).unwrap();
                let q = quality(&mesh, &p);
                assert_eq!(
                    q.per_part.iter().map(|s| s.owned_nodes).sum::<usize>(),
                    mesh.nodes()
                );
                for part in build_parts(&mesh, &p) {
                    let ls = LocalSystem::assemble_serial(&part, cfg.clone()).unwrap();
                    for l in 0..part.owned {
                        let g = part.node_gid[l] as usize;
                        let (c, v) = ls.k.row(l);
                        let mut local: Vec<(u32, u64)> = c
                            .iter()
                            .zip(v)
                            .map(|(&j, &x)| (part.node_gid[j as usize], x.to_bits()))
                            .collect();
                        local.sort_unstable();
                        let r = grp[g] as usize..grp[g + 1] as usize;
                        let want: Vec<(u32, u64)> = gcol[r.clone()]
                            .iter()
                            .zip(&gval[r])
                            .map(|(&j, &x)| (j, x.to_bits()))
                            .collect();
                        assert!(
                            local == want,
                            "{} {} k={k} part {}: row {g} differs",
                            path.display(),
                            method.name(),
                            part.rank
                        );
                        assert_eq!(ls.f[l].to_bits(), sys.f[g].to_bits());
                    }
                }
            }
        }
        eprintln!(
            "{}: owned rows equal serial rows, 1..8 parts, rcb and metis",
            path.display()
        );
    }
}
