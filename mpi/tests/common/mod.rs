//! What the tests of the application path share: in-process ranks
//! ([`ThreadComm`]) running `quadflow run`'s [`run::run_group`], the
//! serial reference, comparisons.
#![allow(dead_code)]

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

pub fn data(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/")).join(rel)
}

/// A test backend named `parallel` (so that `[mpi] local = "parallel"`
/// picks it): serial, except that `phase` fails on rank `rank`.
#[derive(Clone, Copy)]
pub struct FailOn {
    pub rank: usize,
    pub phase: Phase,
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
pub fn catalog(comm: ThreadComm, fail_on: Option<FailOn>) -> Catalog {
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
pub fn ranks(
    p: usize,
    scene: &str,
    fail_on: Option<FailOn>,
) -> Vec<Result<Option<RunResult>, String>> {
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
pub fn lead(out: Vec<Result<Option<RunResult>, String>>) -> RunResult {
    let mut it = out.into_iter();
    let first = it.next().unwrap().unwrap().expect("rank 0 has the result");
    for r in it {
        assert!(r.unwrap().is_none(), "only the lead has results");
    }
    first
}

pub fn serial(scene: &str) -> RunResult {
    let plan = Scene::parse(scene, "<test>").unwrap().plan().unwrap();
    run::run(&plan, None).unwrap()
}

pub fn rel_max(a: &[f64], b: &[f64]) -> f64 {
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
pub fn u_error(r: &RunResult, s: &RunResult, mesh: &std::path::Path) -> f64 {
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

/// The scene of an `mpi` run on `mesh` reading it as `read` (`"blocks"`,
/// `"lead"`), with `extra` (whose `[mpi]` keys join `read`).
pub fn scene_read(mesh: &std::path::Path, extra: &str, read: &str) -> String {
    let key = format!("[mpi]\nread = \"{read}\"\n");
    let extra = if extra.contains("[mpi]\n") {
        extra.replacen("[mpi]\n", &key, 1)
    } else {
        format!("{extra}{key}")
    };
    format!(
        "[mesh]\nfile = {:?}\n[backend]\ndefault = \"mpi\"\n{extra}",
        mesh.display().to_string()
    )
}

pub fn serial_scene(mesh: &std::path::Path, extra: &str) -> String {
    format!(
        "[mesh]\nfile = {:?}\n[backend]\ndefault = \"serial\"\n{extra}",
        mesh.display().to_string()
    )
}

/// Every rank fails with the same message (the lowest failing rank's),
/// none waits for another, nothing is returned.
pub fn all_fail_with(out: Vec<Result<Option<RunResult>, String>>, want: &str) -> String {
    let msgs: Vec<String> = out
        .into_iter()
        .map(|r| r.expect_err("every rank fails"))
        .collect();
    assert!(msgs.iter().all(|m| *m == msgs[0]), "{msgs:?}");
    assert!(msgs[0].contains(want), "{}", msgs[0]);
    msgs[0].clone()
}
