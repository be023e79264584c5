//! Writes the equilibrated system of a mesh (the one every quadflow solver
//! iterates on: `D K D` on the coupled rows in reverse Cuthill-McKee order,
//! `b = D f`) in PETSc's binary format, for the PETSc comparison of
//! `profiles/mpi/petsc_compare.py`.
//!
//! ```text
//! petsc_matrix MESH.h5 OUT.petsc
//! ```
//! `OUT.petsc` holds the matrix (`MatLoad`) then the right-hand side
//! (`VecLoad`), big-endian 32-bit indices, as PETSc's `PetscViewerBinary`
//! reads them.

use quadflow::io::h5 as h5io;
use quadflow_systems::components::LinearSystem;
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use quadflow_systems::pipeline::{Phase, PhasePlan, Pipeline, Registry, RunConfig};
use quadflow_systems::solver::EquilibratedSystem;
use std::io::Write;
use std::sync::Arc;

/// PETSc's class ids of a matrix and a vector in a binary file.
const MAT_FILE_CLASSID: i32 = 1_211_216;
const VEC_FILE_CLASSID: i32 = 1_211_214;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mesh, out] = args.as_slice() else {
        return Err("usage: petsc_matrix MESH.h5 OUT.petsc".into());
    };
    let raw = h5io::read_mesh(std::path::Path::new(mesh)).map_err(|e| e.to_string())?;
    let mesh =
        Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).map_err(|e| e.to_string())?;
    let mut reg = Registry::with_serial();
    reg.register(quadflow_mpi::assemble::Hold);
    let mut plan = PhasePlan::uniform("serial");
    plan.set(Phase::Solve, "mpi-hold");
    plan.set(Phase::Post, "mpi-hold");
    let mut pipe = Pipeline::new(Arc::new(mesh), RunConfig::default(), &reg, &plan)
        .map_err(|e| e.to_string())?;
    pipe.run().map_err(|e| e.to_string())?;
    let sys = std::mem::take(&mut *pipe.world.resource_mut::<LinearSystem>());
    let eq = EquilibratedSystem::new(&sys.k, &sys.f).map_err(|e| e.to_string())?;
    let (rp, col, val) = eq.a.get().to_full();
    let n = eq.a.n();
    let mut w = Vec::with_capacity(16 + 4 * n + 12 * col.len() + 8 * n + 8);
    let i32be = |w: &mut Vec<u8>, v: i32| w.extend_from_slice(&v.to_be_bytes());
    i32be(&mut w, MAT_FILE_CLASSID);
    i32be(&mut w, n as i32);
    i32be(&mut w, n as i32);
    i32be(&mut w, col.len() as i32);
    for i in 0..n {
        i32be(&mut w, (rp[i + 1] - rp[i]) as i32);
    }
    for &j in &col {
        i32be(&mut w, j as i32);
    }
    for &v in &val {
        w.extend_from_slice(&v.to_be_bytes());
    }
    i32be(&mut w, VEC_FILE_CLASSID);
    i32be(&mut w, n as i32);
    for &v in &eq.b {
        w.extend_from_slice(&v.to_be_bytes());
    }
    std::fs::File::create(out)
        .and_then(|mut f| f.write_all(&w))
        .map_err(|e| format!("{out}: {e}"))?;
    println!(
        "{out}: {n} rows, {} entries, ||b|| over the coupled rows {:.6e} (over all rows {:.6e})",
        col.len(),
        eq.b.iter().map(|v| v * v).sum::<f64>().sqrt(),
        eq.b_norm
    );
    Ok(())
}
