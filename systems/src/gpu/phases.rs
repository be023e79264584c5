//! Quadrature, assembly, boundary and post-processing on the device, and
//! the transfers at phase boundaries shared with host backends.

use super::assemble;
use super::device::{Ctx, GResult, backend_error};
use super::kernels::flag;
use super::launch;
use super::pattern::{self, DeviceSystem, FullPattern};
use super::report::GpuReport;
use super::state::{Geometry, GpuState};
use crate::boundary::{BoundaryConfig, Resolved};
use crate::components::*;
use crate::element::{self, QP, QuadData};
use crate::mesh::{Mesh, MeshError};
use bevy_ecs::prelude::*;
use cudarc::driver::PushKernelArg;

/// Doubles of quadrature data per element (`g00, g01, g11, w det J` at 9
/// points).
pub const QD_PER_ELEMENT: usize = 4 * QP;

/// Uploads node coordinates and connectivity once.
pub fn ensure_geometry(st: &mut GpuState, report: &mut GpuReport, mesh: &Mesh) -> GResult<()> {
    if st.geometry.is_some() {
        return Ok(());
    }
    let conn: &[u32] = mesh.elements.as_flattened();
    let geometry = Geometry {
        nodes: mesh.nodes(),
        elements: mesh.elements.len(),
        x: st.upload(report, "node x", &mesh.x)?,
        y: st.upload(report, "node y", &mesh.y)?,
        conn: st.upload(report, "connectivity", conn)?,
    };
    st.geometry = Some(geometry);
    Ok(())
}

fn geometry(st: &GpuState) -> GResult<&Geometry> {
    st.geometry
        .as_ref()
        .ok_or_else(|| backend_error("mesh geometry not on the device"))
}

fn i32_len(n: usize, what: &str) -> GResult<i32> {
    i32::try_from(n)
        .map_err(|_| backend_error(format!("{n} {what}: more than 32-bit indices allow")))
}

/// Computes the quadrature data of every element into `st.qd`; a
/// degenerate element fails with [`MeshError::Degenerate`] naming the
/// smallest such element.
pub fn quadrature(st: &mut GpuState, report: &mut GpuReport, mesh: &Mesh) -> GResult<()> {
    ensure_geometry(st, report, mesh)?;
    st.reset_flags(report)?;
    let ne = mesh.elements.len();
    let mut qd = st.zeros::<f64>(QD_PER_ELEMENT * ne)?;
    {
        let g = geometry(st)?;
        let ne32 = i32_len(ne, "elements")?;
        let f = st.func("qf_quadrature")?;
        let mut b = st.stream.launch_builder(f);
        b.arg(&ne32)
            .arg(&g.conn)
            .arg(&g.x)
            .arg(&g.y)
            .arg(&mut qd)
            .arg(&st.flags);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { b.launch(launch::per_item(ne).config()) }.ctx("qf_quadrature")?;
    }
    let flags = st.read_flags(report)?;
    let bad = flags[flag::BAD_ELEMENT];
    if bad != i32::MAX {
        let e = bad as usize;
        let c = mesh.coords(e);
        // The host's kernel gives the point and the determinant.
        let (point, det) = element::quad_data(&c).err().unwrap_or((0, f64::NAN));
        return Err(MeshError::Degenerate {
            element: e,
            nodes: mesh.elements[e],
            point,
            det,
        }
        .into());
    }
    st.qd = Some(qd);
    Ok(())
}

/// Copies the device quadrature data into the [`Quadrature`] components
/// (for a host assembly).
pub fn download_quadrature(
    st: &GpuState,
    report: &mut GpuReport,
    q: &mut Query<(&ElementIndex, &mut Quadrature)>,
) -> GResult<()> {
    let qd = st
        .qd
        .as_ref()
        .ok_or_else(|| backend_error("no quadrature data on the device"))?;
    let ne = geometry(st)?.elements;
    let h = st.download(report, "quadrature data", qd, QD_PER_ELEMENT * ne)?;
    for (idx, mut out) in q.iter_mut() {
        let e = idx.0 as usize;
        let mut d = QuadData::default();
        for p in 0..QP {
            for c in 0..3 {
                d.g[p][c] = h[(c * QP + p) * ne + e];
            }
            d.wdet[p] = h[(3 * QP + p) * ne + e];
        }
        out.0 = d;
    }
    Ok(())
}

/// Uploads the [`Quadrature`] components written by a host quadrature.
pub fn upload_quadrature(
    st: &mut GpuState,
    report: &mut GpuReport,
    mesh: &Mesh,
    q: &Query<(&ElementIndex, &ElementCoords, &Quadrature)>,
) -> GResult<()> {
    ensure_geometry(st, report, mesh)?;
    let ne = mesh.elements.len();
    let mut h = vec![0.0; QD_PER_ELEMENT * ne];
    for (idx, _, d) in q.iter() {
        let e = idx.0 as usize;
        for p in 0..QP {
            for c in 0..3 {
                h[(c * QP + p) * ne + e] = d.0.g[p][c];
            }
            h[(3 * QP + p) * ne + e] = d.0.wdet[p];
        }
    }
    st.qd = Some(st.upload(report, "quadrature data", &h)?);
    Ok(())
}

/// Builds the full-CSR pattern on the device ([`pattern::build_on_device`])
/// and assembles `K` and `f` there, row by row in element order
/// (`deterministic`) or with atomic additions ([`assemble::elements`]).
/// Returns the full non-zero count.
pub fn assemble(
    st: &mut GpuState,
    report: &mut GpuReport,
    mesh: &Mesh,
    physics: &Physics,
    deterministic: bool,
) -> GResult<usize> {
    use rayon::prelude::*;
    ensure_geometry(st, report, mesh)?;
    let ne = mesh.elements.len();
    let dp = {
        let _s = tracing::info_span!("gpu::pattern").entered();
        let g = geometry(st)?;
        pattern::build_on_device(st, report, mesh.nodes(), ne, &g.conn)?
    };
    let nnz = dp.shape.nnz();
    report.device_nnz = nnz;
    report.deterministic_assembly = Some(deterministic);
    // Source values at the Gauss points when f is a function of position
    // (evaluated on the host, elements in parallel: the closure cannot run
    // on the device).
    let (mode, src, fq) = match &physics.source {
        Source::Constant(v) if *v == 0.0 => (0i32, 0.0, None),
        Source::Constant(v) => (1, *v, None),
        Source::Function(func) => {
            let mut vals = vec![0.0; ne * QP];
            vals.par_chunks_mut(QP).enumerate().for_each(|(e, out)| {
                for (k, (x, y)) in element::gauss_points_xy(&mesh.coords(e)).iter().enumerate() {
                    out[k] = func(*x, *y);
                }
            });
            (2, 0.0, Some(vals))
        }
    };
    let fq = match fq {
        Some(v) => st.upload(report, "source at Gauss points", &v)?,
        None => st.zeros::<f64>(1)?,
    };
    let mut val = st.zeros::<f64>(nnz)?;
    let mut f = st.zeros::<f64>(dp.shape.n)?;
    st.reset_flags(report)?;
    {
        let g = geometry(st)?;
        let qd = st
            .qd
            .as_ref()
            .ok_or_else(|| backend_error("no quadrature data on the device"))?;
        let inputs = assemble::ElementInputs {
            ne,
            conn: &g.conn,
            qd,
            mode,
            src,
            fq: &fq,
        };
        assemble::elements(st, &dp, &inputs, &mut val, &mut f, deterministic)?;
    }
    let flags = st.read_flags(report)?;
    if flags[flag::MISSING] != 0 {
        return Err(backend_error(
            "assembly: an element pair is missing from the pattern (internal error)",
        ));
    }
    // the node-to-element lists go with `dp`'s other fields
    let pattern::DevicePattern {
        rowptr, col, shape, ..
    } = dp;
    st.system = Some(DeviceSystem {
        pattern: shape,
        rowptr,
        col,
        val,
        f,
    });
    st.u = None;
    Ok(nnz)
}

fn system(st: &GpuState) -> GResult<&DeviceSystem> {
    st.system
        .as_ref()
        .ok_or_else(|| backend_error("no assembled system on the device"))
}

/// Copies `K` (as the engine's upper-triangle [`SymCsr`](crate::sparse::SymCsr)) and `f` into
/// [`LinearSystem`], for a host phase after this one.
pub fn download_system(
    st: &GpuState,
    report: &mut GpuReport,
    sys: &mut LinearSystem,
) -> GResult<()> {
    let s = system(st)?;
    let full = pattern::download_pattern(st, report, s.pattern, &s.rowptr, &s.col)?;
    let val = st.download(report, "matrix values", &s.val, s.pattern.nnz())?;
    let f = st.download(report, "right-hand side", &s.f, s.pattern.n)?;
    sys.k = full.upper(&val);
    sys.f = f;
    sys.nnz = s.pattern.nnz();
    Ok(())
}

/// Uploads a system assembled (or modified) by a host phase.
pub fn upload_system(st: &mut GpuState, report: &mut GpuReport, sys: &LinearSystem) -> GResult<()> {
    if sys.k.n == 0 || sys.f.len() != sys.k.n {
        return Err(backend_error(
            "no assembled system to upload (the previous phase produced none)",
        ));
    }
    let (rowptr, col, val) = sys.k.to_full();
    let pattern = FullPattern {
        n: sys.k.n,
        rowptr,
        col,
    };
    report.device_nnz = pattern.nnz();
    let system = DeviceSystem {
        rowptr: st.upload(report, "matrix row starts", &pattern.rowptr)?,
        col: st.upload(report, "matrix columns", &pattern.col)?,
        val: st.upload(report, "matrix values", &val)?,
        f: st.upload(report, "right-hand side", &sys.f)?,
        pattern: pattern.shape(),
    };
    st.system = Some(system);
    st.u = None;
    Ok(())
}

/// Adds the resolved boundary (Robin edges, Dirichlet and unused-node
/// penalties) to the device system, in the serial order: the Robin edges
/// node by node in edge order (`deterministic`) or with atomic additions
/// ([`assemble::robin`]), then the penalties (each node once per list).
pub fn apply_boundary(
    st: &mut GpuState,
    report: &mut GpuReport,
    mesh: &Mesh,
    cfg: &BoundaryConfig,
    res: &Resolved,
    deterministic: bool,
) -> GResult<BoundaryReport> {
    ensure_geometry(st, report, mesh)?;
    st.reset_flags(report)?;
    // Robin edges: nodes and (p, gamma) per edge.
    let edge_nodes: Vec<[u32; 3]> = res.robin_edges.iter().map(|e| e.nodes).collect();
    let nodes: Vec<u32> = edge_nodes.iter().flatten().copied().collect();
    let pg: Vec<f64> = res
        .robin_edges
        .iter()
        .flat_map(|e| {
            let part = &cfg.robin[e.part as usize];
            [part.p, part.gamma]
        })
        .collect();
    let dir_nodes: Vec<u32> = res.dirichlet.iter().map(|d| d.0).collect();
    let dir_vals: Vec<f64> = res.dirichlet.iter().map(|d| d.1).collect();
    let d_nodes = st.upload(report, "robin edges", &nodes)?;
    let d_pg = st.upload(report, "robin parameters", &pg)?;
    let rows = if deterministic && !edge_nodes.is_empty() {
        let r = assemble::RobinRows::new(&edge_nodes);
        Some(assemble::DeviceRobinRows {
            nodes: st.upload(report, "robin edges", &r.nodes)?,
            ptr: st.upload(report, "robin edges", &r.ptr)?,
            edges: st.upload(report, "robin edges", &r.edges)?,
            count: r.nodes.len(),
        })
    } else {
        None
    };
    let d_dn = st.upload(report, "dirichlet nodes", &dir_nodes)?;
    let d_dv = st.upload(report, "dirichlet values", &dir_vals)?;
    let d_un = st.upload(report, "unused nodes", &res.unused)?;
    {
        let g = st
            .geometry
            .as_ref()
            .ok_or_else(|| backend_error("mesh geometry not on the device"))?;
        let s = st
            .system
            .as_mut()
            .ok_or_else(|| backend_error("no assembled system on the device"))?;
        let stream = &st.dev.stream;
        let flags = &st.dev.flags;
        let penalty = cfg.penalty;
        let inputs = assemble::RobinInputs {
            edges: res.robin_edges.len(),
            nodes: &d_nodes,
            pg: &d_pg,
            x: &g.x,
            y: &g.y,
            rows: rows.as_ref(),
        };
        assemble::robin(&st.dev, &s.rowptr, &s.col, &inputs, &mut s.val, &mut s.f)?;
        for (list, vals, with_values, len) in [
            (&d_dn, &d_dv, 1i32, res.dirichlet.len()),
            (&d_un, &d_dv, 0i32, res.unused.len()),
        ] {
            if len == 0 {
                continue;
            }
            let m = i32_len(len, "nodes")?;
            let func = st.dev.kernels.get("qf_penalty")?;
            let mut b = stream.launch_builder(func);
            b.arg(&m)
                .arg(list)
                .arg(vals)
                .arg(&with_values)
                .arg(&penalty)
                .arg(&s.rowptr)
                .arg(&s.col)
                .arg(&mut s.val)
                .arg(&mut s.f)
                .arg(flags);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { b.launch(launch::per_item(len).config()) }.ctx("qf_penalty")?;
        }
    }
    let flags = st.read_flags(report)?;
    if flags[flag::MISSING] != 0 {
        return Err(backend_error(
            "boundary: a node pair is missing from the pattern (internal error)",
        ));
    }
    st.u = None;
    Ok(BoundaryReport::of(res))
}

/// Uploads a solution computed by a host solve.
pub fn upload_solution(st: &mut GpuState, report: &mut GpuReport, u: &[f64]) -> GResult<()> {
    if u.is_empty() {
        return Err(backend_error("no solution to upload"));
    }
    st.u = Some(st.upload(report, "solution", u)?);
    Ok(())
}

/// Velocity, speed and pressure of every element on the device, written
/// into the [`ElementOutputs`] arrays (one download of `4 E` doubles; no
/// element entities are needed).
pub fn post(
    st: &mut GpuState,
    report: &mut GpuReport,
    mesh: &Mesh,
    physics: &Physics,
    outputs: &mut ElementOutputs,
) -> GResult<()> {
    ensure_geometry(st, report, mesh)?;
    let ne = mesh.elements.len();
    let u =
        st.u.as_ref()
            .ok_or_else(|| backend_error("no solution on the device"))?;
    if u.len() < mesh.nodes() {
        return Err(backend_error(
            "the device solution is shorter than the mesh",
        ));
    }
    let mut out = st.zeros::<f64>(4 * ne)?;
    {
        let g = geometry(st)?;
        let ne32 = i32_len(ne, "elements")?;
        let half_rho = physics.rho / 2.0;
        let func = st.func("qf_post")?;
        let mut b = st.stream.launch_builder(func);
        b.arg(&ne32)
            .arg(&g.conn)
            .arg(&g.x)
            .arg(&g.y)
            .arg(u)
            .arg(&physics.p0)
            .arg(&half_rho)
            .arg(&mut out);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { b.launch(launch::per_item(ne).config()) }.ctx("qf_post")?;
    }
    let h = st.download(report, "element fields", &out, 4 * ne)?;
    // into the output arrays on all cores (fresh pages fault in parallel)
    use rayon::prelude::*;
    outputs.vel = (0..ne).into_par_iter().map(|e| [h[e], h[ne + e]]).collect();
    outputs.abs_vel = h[2 * ne..3 * ne].par_iter().copied().collect();
    outputs.pressure = h[3 * ne..4 * ne].par_iter().copied().collect();
    Ok(())
}
