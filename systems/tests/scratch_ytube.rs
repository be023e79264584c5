use quadflow_systems::components::*;
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use quadflow_systems::pipeline::PhaseTimes;
use quadflow_systems::{PhasePlan, Pipeline, Registry, RunConfig};
use std::sync::Arc;
fn rd(p: &str) -> Vec<f64> { std::fs::read(p).unwrap().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect() }
#[test]
fn scratch() {
    for name in ["y_tube_201", "elbow_90_411", "s_duct_16k", "y_tube_195k"] {
        let x = rd(&format!("/tmp/raw/{name}.x"));
        let y = rd(&format!("/tmp/raw/{name}.y"));
        let q: Vec<i64> = std::fs::read(format!("/tmp/raw/{name}.q")).unwrap().chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        let els: Vec<[i64; 8]> = q.chunks(8).map(|c| c.try_into().unwrap()).collect();
        let t = std::time::Instant::now();
        let m = Mesh::new(x, y, &els, OrientationPolicy::Fix).unwrap();
        let tl = t.elapsed().as_secs_f64();
        let mut p = Pipeline::new(Arc::new(m), RunConfig::default(), &Registry::with_serial(), &PhasePlan::uniform("serial")).unwrap();
        p.run().unwrap();
        let s = p.world.resource::<Solution>();
        let umax = s.u.iter().cloned().fold(f64::MIN, f64::max);
        let umin = s.u.iter().cloned().fold(f64::MAX, f64::min);
        let mut err = 0.0f64;
        if let Ok(ur) = std::fs::read(format!("/tmp/raw/{name}.u")) {
            let ur: Vec<f64> = ur.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
            let m = ur.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for i in 0..ur.len() { err = err.max((ur[i] - s.u[i]).abs() / m); }
        }
        println!("{name}: it {} conv {} tr {:.3e} umin {umin} umax {umax} err {err:.2e} nnz {} load {tl:.3} times {:?}", s.stats.iterations, s.stats.converged, s.true_residual, p.world.resource::<LinearSystem>().nnz, p.world.resource::<PhaseTimes>().seconds);
    }
}
