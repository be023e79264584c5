//! Exports the linear system quadflow's iterative solvers run on, for other
//! solvers to solve the same matrix (`benches/petsc/compare.py`).
//!
//! ```text
//! cargo run --release --example export_system -- MESH OUT_DIR
//!     MESH: a mesh file (.h5, .msh), or generate:GEOMETRY:NODES
//! ```
//!
//! The system is the equilibrated, decoupled, RCM-renumbered one that
//! Jacobi-CG and AMG-CG solve (`solver::EquilibratedSystem`: `A = D K D` on
//! the coupled rows, `b = D f`), assembled with the default scene (the
//! reference physics and boundaries). Written to `OUT_DIR`, in PETSc's
//! binary format (big-endian; `MatLoad`/`VecLoad`, `PetscBinaryIO.py`):
//! - `A.petsc`: `A`, both triangles, columns sorted (AIJ);
//! - `b.petsc`: `b`;
//! - `B.petsc`: the near-null-space vector quadflow's AMG uses (`sqrt(diag
//!   K)` on the coupled rows);
//! - `system.json`: rows, stored entries, decoupled rows, `b_norm` (`||D
//!   f||` over every row, decoupled ones included: quadflow's stopping
//!   rule is `||b - A x|| <= rtol b_norm`), the mesh, the byte count of
//!   one fused Jacobi-CG iteration.

use quadflow::run::load_mesh;
use quadflow::scene::Scene;
use quadflow::systems::amg::Csr;
use quadflow::systems::components::LinearSystem;
use quadflow::systems::pipeline::Pipeline;
use quadflow::systems::solver::{EquilibratedSystem, fused_bytes_per_iteration};
use quadflow::systems::sparse::SymCsr;
use std::io::Write;
use std::path::Path;

/// PETSc's class id of a matrix in its binary format.
const MAT_FILE_CLASSID: i32 = 1_211_216;
/// PETSc's class id of a vector in its binary format.
const VEC_FILE_CLASSID: i32 = 1_211_214;

/// Writes `a` in PETSc's binary matrix format (AIJ, big-endian).
fn write_mat(path: &Path, a: &Csr) -> std::io::Result<()> {
    let too_big = || std::io::Error::other("the matrix is too large for 32-bit PETSc indices");
    let n = i32::try_from(a.nrows()).map_err(|_| too_big())?;
    let nnz = i32::try_from(a.nnz()).map_err(|_| too_big())?;
    let mut out = Vec::with_capacity(16 + 4 * a.nrows() + 12 * a.nnz());
    for v in [
        MAT_FILE_CLASSID,
        n,
        i32::try_from(a.ncols()).map_err(|_| too_big())?,
        nnz,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    let rp = a.rowptr();
    for i in 0..a.nrows() {
        out.extend_from_slice(&((rp[i + 1] - rp[i]) as i32).to_be_bytes());
    }
    let mut order: Vec<(u32, f64)> = Vec::new();
    let mut vals = Vec::with_capacity(8 * a.nnz());
    for i in 0..a.nrows() {
        let (c, v) = a.row(i);
        order.clear();
        order.extend(c.iter().copied().zip(v.iter().copied()));
        order.sort_unstable_by_key(|e| e.0);
        for &(j, x) in &order {
            out.extend_from_slice(&(j as i32).to_be_bytes());
            vals.extend_from_slice(&x.to_be_bytes());
        }
    }
    out.extend_from_slice(&vals);
    std::fs::write(path, out)
}

/// Writes `v` in PETSc's binary vector format (big-endian).
fn write_vec(path: &Path, v: &[f64]) -> std::io::Result<()> {
    let n = i32::try_from(v.len()).map_err(|_| std::io::Error::other("vector too long"))?;
    let mut out = Vec::with_capacity(8 + 8 * v.len());
    out.extend_from_slice(&VEC_FILE_CLASSID.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
    for x in v {
        out.extend_from_slice(&x.to_be_bytes());
    }
    std::fs::write(path, out)
}

/// The assembled `K`, `f` of `mesh` (a file or `generate:GEOMETRY:NODES`)
/// with the default scene.
fn assemble(mesh: &str) -> Result<(SymCsr, Vec<f64>, String), String> {
    let src = match mesh.strip_prefix("generate:") {
        Some(g) => {
            let (geom, nodes) = g
                .split_once(':')
                .ok_or("generate:GEOMETRY:NODES, e.g. generate:venturi:1300000")?;
            format!("[mesh]\ngenerate = '{geom}'\nnodes = {nodes}\n")
        }
        None => {
            let abs = std::path::absolute(mesh).map_err(|e| format!("{mesh}: {e}"))?;
            format!("[mesh]\nfile = {:?}\n", abs.display().to_string())
        }
    };
    // the solve phase stops after one iteration: only the system is used
    let text = format!("{src}[solver]\nmax_iterations = 1\nallow_unconverged = true\n");
    let plan = Scene::parse(&text, "<export>")
        .and_then(|s| s.plan())
        .map_err(|e| e.to_string())?;
    let m = load_mesh(&plan).map_err(|e| e.to_string())?;
    let origin = m.origin.clone();
    let mut p = Pipeline::new(m.mesh, plan.config, &plan.registry, &plan.phases)
        .map_err(|e| e.to_string())?;
    p.run().map_err(|e| e.to_string())?;
    let sys = p.world.resource::<LinearSystem>();
    Ok((sys.k.clone(), sys.f.clone(), origin))
}

/// Exports the system of `mesh` into `dir` (see the module documentation).
fn export(mesh: &str, dir: &Path) -> Result<EquilibratedSystem, String> {
    let (k, f, origin) = assemble(mesh)?;
    let sys = EquilibratedSystem::new(&k, &f).map_err(|e| e.to_string())?;
    let a = Csr::from_sym(sys.a.get());
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    write_mat(&dir.join("A.petsc"), &a).map_err(err)?;
    write_vec(&dir.join("b.petsc"), &sys.b).map_err(err)?;
    write_vec(&dir.join("B.petsc"), &sys.near_null_space()).map_err(err)?;
    let m = sys.a.n();
    let stored = sys.a.get().stored();
    let json = format!(
        "{{\n  \"mesh\": {:?},\n  \"nodes\": {},\n  \"rows\": {m},\n  \"nnz\": {},\n  \"stored_upper\": {stored},\n  \"decoupled_rows\": {},\n  \"b_norm\": {:e},\n  \"f_norm\": {:e},\n  \"jacobi_cg_bytes_per_iteration\": {},\n  \"quadflow_version\": {:?}\n}}\n",
        origin,
        k.n,
        a.nnz(),
        sys.decoupled(),
        sys.b_norm,
        sys.f_norm,
        fused_bytes_per_iteration(m, stored),
        env!("CARGO_PKG_VERSION"),
    );
    std::fs::File::create(dir.join("system.json"))
        .and_then(|mut fh| fh.write_all(json.as_bytes()))
        .map_err(err)?;
    Ok(sys)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 || args[0].starts_with('-') {
        eprintln!("usage: export_system MESH|generate:GEOMETRY:NODES OUT_DIR");
        std::process::exit(2);
    }
    match export(&args[0], Path::new(&args[1])) {
        Ok(sys) => println!(
            "{}: {} rows, {} stored (upper), b_norm {:e}",
            args[1],
            sys.a.n(),
            sys.a.get().stored(),
            sys.b_norm
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be_i32(b: &[u8], at: usize) -> i32 {
        i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be_f64(b: &[u8], at: usize) -> f64 {
        f64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Reads the files back by the format's layout, and with petsc4py
    /// where a Python with it is found (`PETSC_PYTHON`, else
    /// `/usr/bin/python3`); skips that part (logged) otherwise.
    #[test]
    fn exported_system_reads_back_and_in_petsc4py() {
        let dir = std::env::temp_dir().join(format!("qf-export-{}", std::process::id()));
        let sys = export("generate:venturi:3000", &dir).unwrap();
        let a = Csr::from_sym(sys.a.get());
        let m = std::fs::read(dir.join("A.petsc")).unwrap();
        assert_eq!(be_i32(&m, 0), MAT_FILE_CLASSID);
        let (n, nnz) = (be_i32(&m, 4) as usize, be_i32(&m, 12) as usize);
        assert_eq!(
            (n, be_i32(&m, 8) as usize, nnz),
            (a.nrows(), a.ncols(), a.nnz())
        );
        // y = A x from the file against the engine's product
        let x: Vec<f64> = (0..n).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
        let mut y = vec![0.0; n];
        let (mut c, mut v) = (16 + 4 * n, 16 + 4 * n + 4 * nnz);
        for (i, yi) in y.iter_mut().enumerate() {
            let len = be_i32(&m, 16 + 4 * i) as usize;
            let mut last = -1;
            for _ in 0..len {
                let j = be_i32(&m, c);
                assert!(j > last, "columns sorted");
                last = j;
                *yi += be_f64(&m, v) * x[j as usize];
                c += 4;
                v += 8;
            }
        }
        let mut ax = vec![0.0; n];
        a.spmv(quadflow::systems::exec::Exec::Serial, &x, &mut ax);
        for (p, q) in y.iter().zip(&ax) {
            assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0));
        }
        let b = std::fs::read(dir.join("b.petsc")).unwrap();
        assert_eq!(be_i32(&b, 0), VEC_FILE_CLASSID);
        assert_eq!(be_i32(&b, 4) as usize, n);
        assert!((0..n).all(|i| be_f64(&b, 8 + 8 * i) == sys.b[i]));
        let json = std::fs::read_to_string(dir.join("system.json")).unwrap();
        assert!(json.contains(&format!("\"rows\": {n}")), "{json}");

        // PETSc's own reader
        let py = std::env::var("PETSC_PYTHON").unwrap_or("/usr/bin/python3".into());
        let script = format!(
            "import glob, os, sys\n\
             try:\n    from petsc4py import PETSc\n\
             except ImportError:\n    d = sorted(glob.glob('/usr/lib/petscdir/petsc*/*-real'))\n    \
             if not d: sys.exit(3)\n    os.environ['PETSC_DIR'] = d[-1]\n    \
             sys.path.append(d[-1] + '/lib/python3/dist-packages')\n    \
             try:\n        from petsc4py import PETSc\n    except ImportError:\n        sys.exit(3)\n\
             v = PETSc.Viewer().createBinary({:?}, 'r')\n\
             A = PETSc.Mat().load(v)\n\
             x = A.createVecRight(); x.setArray([((i * 7) % 13) - 6.0 for i in range(A.getSize()[0])])\n\
             y = A.createVecLeft(); A.mult(x, y)\n\
             b = PETSc.Vec().load(PETSc.Viewer().createBinary({:?}, 'r'))\n\
             print(A.getSize()[0], A.getInfo()['nz_used'], y.norm(), b.norm())\n",
            dir.join("A.petsc").display().to_string(),
            dir.join("b.petsc").display().to_string(),
        );
        let out = std::process::Command::new(&py)
            .arg("-c")
            .arg(&script)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let s = String::from_utf8_lossy(&o.stdout);
                let f: Vec<f64> = s.split_whitespace().map(|t| t.parse().unwrap()).collect();
                assert_eq!(f[0] as usize, n);
                assert_eq!(f[1] as usize, nnz);
                let norm = |v: &[f64]| v.iter().map(|t| t * t).sum::<f64>().sqrt();
                assert!((f[2] - norm(&ax)).abs() <= 1e-12 * norm(&ax));
                assert!((f[3] - norm(&sys.b)).abs() <= 1e-12 * norm(&sys.b));
            }
            other => {
                let why = match other {
                    Ok(o) if o.status.code() == Some(3) => format!("{py} has no petsc4py"),
                    Ok(o) => panic!("petsc4py failed: {}", String::from_utf8_lossy(&o.stderr)),
                    Err(e) => format!("{py}: {e}"),
                };
                eprintln!("SKIPPED exported_system_reads_back_and_in_petsc4py (PETSc part): {why}");
                if let Ok(log) = std::env::var("QUADFLOW_SKIP_LOG") {
                    let _ = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .and_then(|mut f| {
                            writeln!(f, "export_system PETSc read-back: {why} (apt-get install python3-petsc4py)")
                        });
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
