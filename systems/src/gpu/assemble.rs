//! The device assembly's launches (`kernels/assemble.cu`, the Robin part
//! of `kernels/boundary.cu`) and their CPU twin.
//!
//! By default every entry of `K` and `f` is summed in a fixed order: one
//! thread per row adds the row's share of each of the node's elements in
//! element order (the serial scatter's order), and one thread per Robin
//! node adds its edges in edge order, so identical runs give identical
//! systems. The other way (`[gpu] deterministic = false`) scatters with
//! atomic additions, one thread per element or edge.
//!
//! Element and edge entries are computed with explicit round-to-nearest
//! operations on the device, so the CPU twin here ([`ke_row`], [`fe`],
//! [`robin_row`], [`gather`], [`robin_gather`], [`penalties`]) reproduces
//! the deterministic device system bit for bit from the device's
//! quadrature data (`tests/gpu.rs` compares them), and the entries of a
//! pair are equal whichever row computes them (the matrix is exactly
//! symmetric).

use super::device::{Ctx, Device, GResult, backend_error};
use super::launch;
use super::pattern::{DevicePattern, FullPattern};
use crate::element::{BASIS9, NODES, QP, gauss3};
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The source term of the assembly as the kernels take it: mode 0 none,
/// 1 the constant `src`, 2 values at the Gauss points in `fq[e * QP + q]`.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    /// 0, 1 or 2.
    pub mode: i32,
    /// The constant source (mode 1).
    pub src: f64,
    /// Source values at the Gauss points (mode 2).
    pub fq: &'a [f64],
}

impl Load<'_> {
    fn value(&self, e: usize, q: usize) -> f64 {
        if self.mode == 1 {
            self.src
        } else {
            self.fq[e * QP + q]
        }
    }
}

fn i32_len(n: usize, what: &str) -> GResult<i32> {
    i32::try_from(n)
        .map_err(|_| backend_error(format!("{n} {what}: more than 32-bit indices allow")))
}

/// The device buffers of the element assembly.
pub struct ElementInputs<'a> {
    /// Elements.
    pub ne: usize,
    /// Connectivity, 8 nodes per element.
    pub conn: &'a CudaSlice<u32>,
    /// Quadrature data (`quadrature.cu`'s layout).
    pub qd: &'a CudaSlice<f64>,
    /// Load mode (see [`Load`]), constant source, Gauss-point values.
    pub mode: i32,
    /// Constant source.
    pub src: f64,
    /// Gauss-point source values (mode 2; else one unused double).
    pub fq: &'a CudaSlice<f64>,
}

/// Assembles `K` into `val` and `f` (both zero on entry) over the pattern
/// `dp`: row by row in element order (`deterministic`), else element by
/// element with atomic additions. Enqueued only; the caller reads the
/// flags.
pub fn elements(
    st: &Device,
    dp: &DevicePattern,
    a: &ElementInputs<'_>,
    val: &mut CudaSlice<f64>,
    f: &mut CudaSlice<f64>,
    deterministic: bool,
) -> GResult<()> {
    let ne32 = i32_len(a.ne, "elements")?;
    if deterministic {
        let n = dp.shape.n;
        let n32 = i32_len(n, "nodes")?;
        let func = st.func("qf_assemble_rows")?;
        let mut b = st.stream.launch_builder(func);
        b.arg(&n32)
            .arg(&ne32)
            .arg(&dp.node_ptr)
            .arg(&dp.node_el)
            .arg(a.conn)
            .arg(a.qd)
            .arg(&dp.rowptr)
            .arg(&dp.col)
            .arg(val)
            .arg(f)
            .arg(&a.mode)
            .arg(&a.src)
            .arg(a.fq)
            .arg(&st.flags);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { b.launch(launch::per_item(n).config()) }.ctx("qf_assemble_rows")?;
    } else {
        let func = st.func("qf_assemble")?;
        let mut b = st.stream.launch_builder(func);
        b.arg(&ne32)
            .arg(a.conn)
            .arg(a.qd)
            .arg(&dp.rowptr)
            .arg(&dp.col)
            .arg(val)
            .arg(f)
            .arg(&a.mode)
            .arg(&a.src)
            .arg(a.fq)
            .arg(&st.flags);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { b.launch(launch::per_item(a.ne).config()) }.ctx("qf_assemble")?;
    }
    Ok(())
}

/// The Robin edges by node: every node of an edge (`nodes`, ascending),
/// and its edges (`edges[ptr[t] .. ptr[t + 1]]`, ascending; an edge twice
/// where the node is twice in it): the lists `qf_robin_rows` walks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RobinRows {
    /// The nodes.
    pub nodes: Vec<u32>,
    /// List starts, `nodes.len() + 1` entries.
    pub ptr: Vec<u32>,
    /// The edges of every node.
    pub edges: Vec<u32>,
}

impl RobinRows {
    /// The lists of the edges `edge_nodes` (three nodes each).
    pub fn new(edge_nodes: &[[u32; 3]]) -> Self {
        let mut pairs: Vec<(u32, u32)> = edge_nodes
            .iter()
            .enumerate()
            .flat_map(|(e, nd)| nd.iter().map(move |&v| (v, e as u32)))
            .collect();
        pairs.sort_unstable();
        let mut out = Self {
            ptr: vec![0],
            ..Self::default()
        };
        for (k, &(v, e)) in pairs.iter().enumerate() {
            if k == 0 || pairs[k - 1].0 != v {
                if k > 0 {
                    out.ptr.push(k as u32);
                }
                out.nodes.push(v);
            }
            out.edges.push(e);
        }
        if !pairs.is_empty() {
            out.ptr.push(pairs.len() as u32);
        }
        out
    }
}

/// [`RobinRows`] on the device: nodes, list starts, edges, and the node
/// count.
pub struct DeviceRobinRows {
    /// The nodes.
    pub nodes: CudaSlice<u32>,
    /// List starts.
    pub ptr: CudaSlice<u32>,
    /// The edges of every node.
    pub edges: CudaSlice<u32>,
    /// Nodes.
    pub count: usize,
}

/// The device buffers of the Robin edges.
pub struct RobinInputs<'a> {
    /// Edges.
    pub edges: usize,
    /// Their nodes, three each.
    pub nodes: &'a CudaSlice<u32>,
    /// `(p, gamma)` of every edge.
    pub pg: &'a CudaSlice<f64>,
    /// Node x.
    pub x: &'a CudaSlice<f64>,
    /// Node y.
    pub y: &'a CudaSlice<f64>,
    /// The lists by node ([`RobinRows`]) on the device; `None`: atomic
    /// additions.
    pub rows: Option<&'a DeviceRobinRows>,
}

/// Adds the Robin edges to `val` and `f`: node by node in edge order
/// (`rows` given), else edge by edge with atomic additions.
pub fn robin(
    st: &Device,
    rowptr: &CudaSlice<u32>,
    col: &CudaSlice<u32>,
    a: &RobinInputs<'_>,
    val: &mut CudaSlice<f64>,
    f: &mut CudaSlice<f64>,
) -> GResult<()> {
    if a.edges == 0 {
        return Ok(());
    }
    match a.rows {
        Some(rows) => {
            let m = rows.count;
            let m32 = i32_len(m, "Robin nodes")?;
            let func = st.func("qf_robin_rows")?;
            let mut b = st.stream.launch_builder(func);
            b.arg(&m32)
                .arg(&rows.nodes)
                .arg(&rows.ptr)
                .arg(&rows.edges)
                .arg(a.nodes)
                .arg(a.pg)
                .arg(a.x)
                .arg(a.y)
                .arg(rowptr)
                .arg(col)
                .arg(val)
                .arg(f)
                .arg(&st.flags);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { b.launch(launch::per_item(m).config()) }.ctx("qf_robin_rows")?;
        }
        None => {
            let m32 = i32_len(a.edges, "edges")?;
            let func = st.func("qf_robin")?;
            let mut b = st.stream.launch_builder(func);
            b.arg(&m32)
                .arg(a.nodes)
                .arg(a.pg)
                .arg(a.x)
                .arg(a.y)
                .arg(rowptr)
                .arg(col)
                .arg(val)
                .arg(f)
                .arg(&st.flags);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { b.launch(launch::per_item(a.edges).config()) }.ctx("qf_robin")?;
        }
    }
    Ok(())
}

// ---- the CPU twin -------------------------------------------------------

/// `qf_ke_t`: `G dN_b` at Gauss point `q` for every node `b`.
fn ke_t(g: [f64; 3], q: usize) -> [[f64; 2]; NODES] {
    let dn = &BASIS9.dn[q];
    let [g00, g01, g11] = g;
    std::array::from_fn(|b| {
        let (d0, d1) = (dn[b][0], dn[b][1]);
        [g00.mul_add(d0, g01 * d1), g01.mul_add(d0, g11 * d1)]
    })
}

/// `qf_ke_term`: the term of the pair `(lo, hi)` at Gauss point `q`.
fn ke_term(t: &[[f64; 2]; NODES], lo: usize, hi: usize, q: usize) -> f64 {
    let dn = &BASIS9.dn[q];
    t[lo][0].mul_add(dn[hi][0], t[lo][1] * dn[hi][1])
}

/// `qf_ke_row`: row `a` of the stiffness matrix of an element whose
/// quadrature data are `g[q] = [g00, g01, g11]` (bit for bit the device's).
pub fn ke_row(a: usize, g: &[[f64; 3]; QP]) -> [f64; NODES] {
    let mut row = [0.0; NODES];
    for (q, gq) in g.iter().enumerate() {
        let t = ke_t(*gq, q);
        for (b, r) in row.iter_mut().enumerate() {
            *r += if a <= b {
                ke_term(&t, a, b, q)
            } else {
                ke_term(&t, b, a, q)
            };
        }
    }
    row
}

/// `qf_fe`: entry `a` of the load vector of an element with `w det J` at
/// the Gauss points `wdet` and source values `fv(q)`.
pub fn fe(a: usize, wdet: &[f64; QP], fv: impl Fn(usize) -> f64) -> f64 {
    let n = &BASIS9.n;
    let mut s = 0.0;
    for q in 0..QP {
        s += (fv(q) * wdet[q]) * n[q][a];
    }
    s
}

/// `qf_robin_row`: row `a` of an edge's `He` (coefficient `p`) and its
/// `Pe[a]` (coefficient `gamma`), edge nodes at `(ex, ey)`.
pub fn robin_row(a: usize, ex: &[f64; 3], ey: &[f64; 3], p: f64, gamma: f64) -> ([f64; 3], f64) {
    let (gp, gw) = gauss3();
    let mut he = [0.0; 3];
    let mut pa = 0.0;
    for q in 0..3 {
        let s = gp[q];
        let b = [(s * (s - 1.0)) * 0.5, 1.0 - s * s, (s * (s + 1.0)) * 0.5];
        let db = [s - 0.5, -2.0 * s, s + 0.5];
        let dx = db[2].mul_add(ex[2], db[1].mul_add(ex[1], db[0] * ex[0]));
        let dy = db[2].mul_add(ey[2], db[1].mul_add(ey[1], db[0] * ey[0]));
        let ds = dx.mul_add(dx, dy * dy).sqrt() * gw[q];
        pa += (gamma * b[a]) * ds;
        for c in 0..3 {
            he[c] += (p * (b[a] * b[c])) * ds;
        }
    }
    (he, pa)
}

/// The quadrature data of element `e` from the device layout
/// (`qd[(c * QP + q) * ne + e]`, `c` = 0..3: `g00, g01, g11, w det J`).
pub fn element_qd(qd: &[f64], ne: usize, e: usize) -> ([[f64; 3]; QP], [f64; QP]) {
    let at = |c: usize, q: usize| qd[(c * QP + q) * ne + e];
    (
        std::array::from_fn(|q| [at(0, q), at(1, q), at(2, q)]),
        std::array::from_fn(|q| at(3, q)),
    )
}

/// `qf_assemble_rows` on the CPU: `K` (values over the full pattern `p`)
/// and `f` of the elements, row by row in element order.
pub fn gather(
    p: &FullPattern,
    elements: &[[u32; NODES]],
    qd: &[f64],
    load: &Load<'_>,
) -> (Vec<f64>, Vec<f64>) {
    let ne = elements.len();
    let (ptr, adj) = crate::sparse::node_elements(p.n, elements);
    let mut val = vec![0.0; p.nnz()];
    let mut f = vec![0.0; p.n];
    for i in 0..p.n {
        let list = &adj[ptr[i] as usize..ptr[i + 1] as usize];
        let mut fi = 0.0;
        for (k, &e) in list.iter().enumerate() {
            if k > 0 && list[k - 1] == e {
                continue;
            }
            let e = e as usize;
            let el = &elements[e];
            let (g, wdet) = element_qd(qd, ne, e);
            for a in (0..NODES).filter(|&a| el[a] as usize == i) {
                let row = ke_row(a, &g);
                for b in 0..NODES {
                    let s = p
                        .slot(i as u32, el[b])
                        .expect("element pair in its pattern");
                    val[s as usize] += row[b];
                }
                if load.mode != 0 {
                    fi += fe(a, &wdet, |q| load.value(e, q));
                }
            }
        }
        if load.mode != 0 {
            f[i] = fi;
        }
    }
    (val, f)
}

/// `qf_robin_rows` on the CPU: the Robin edges (`edge_nodes`, `(p,
/// gamma)` each) added to `val` and `f`, node by node in edge order.
pub fn robin_gather(
    p: &FullPattern,
    x: &[f64],
    y: &[f64],
    edge_nodes: &[[u32; 3]],
    pg: &[(f64, f64)],
    val: &mut [f64],
    f: &mut [f64],
) {
    let rows = RobinRows::new(edge_nodes);
    for (t, &i) in rows.nodes.iter().enumerate() {
        let list = &rows.edges[rows.ptr[t] as usize..rows.ptr[t + 1] as usize];
        let mut fi = f[i as usize];
        for (k, &e) in list.iter().enumerate() {
            if k > 0 && list[k - 1] == e {
                continue;
            }
            let nd = edge_nodes[e as usize];
            let ex = nd.map(|v| x[v as usize]);
            let ey = nd.map(|v| y[v as usize]);
            let (pp, gamma) = pg[e as usize];
            for a in (0..3).filter(|&a| nd[a] == i) {
                let (he, pe) = robin_row(a, &ex, &ey, pp, gamma);
                fi += pe;
                if pp != 0.0 {
                    for c in 0..3 {
                        let s = p.slot(i, nd[c]).expect("edge pair in the pattern");
                        val[s as usize] += he[c];
                    }
                }
            }
        }
        f[i as usize] = fi;
    }
}

/// `qf_penalty` on the CPU: `penalty` on the diagonal of every node of
/// `dirichlet` (and `penalty * value` into `f`), then of every `unused`
/// node.
pub fn penalties(
    p: &FullPattern,
    dirichlet: &[(u32, f64)],
    unused: &[u32],
    penalty: f64,
    val: &mut [f64],
    f: &mut [f64],
) {
    for &(i, v) in dirichlet {
        let s = p.slot(i, i).expect("diagonal in the pattern");
        val[s as usize] += penalty;
        f[i as usize] += penalty * v;
    }
    for &i in unused {
        let s = p.slot(i, i).expect("diagonal in the pattern");
        val[s as usize] += penalty;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{self, stiffness_sym};
    use crate::mesh::Mesh;
    use crate::sparse::SymCsr;

    fn mesh() -> Mesh {
        // a curved 5 x 3 lattice: every element different
        Mesh::lattice(5, 3, 5.0, 3.0, |x, y| {
            (x + 0.1 * (y * 1.3).sin(), y * (1.0 + 0.05 * x))
        })
    }

    /// The quadrature data of every element in the device layout.
    fn device_qd(m: &Mesh) -> Vec<f64> {
        let ne = m.elements.len();
        let mut qd = vec![0.0; 4 * QP * ne];
        for e in 0..ne {
            let d = element::quad_data(&m.coords(e)).unwrap();
            for q in 0..QP {
                for c in 0..3 {
                    qd[(c * QP + q) * ne + e] = d.g[q][c];
                }
                qd[(3 * QP + q) * ne + e] = d.wdet[q];
            }
        }
        qd
    }

    #[test]
    fn element_rows_are_symmetric_bit_for_bit_and_match_the_serial_kernel() {
        let m = mesh();
        let qd = device_qd(&m);
        let ne = m.elements.len();
        for e in 0..ne {
            let (g, _) = element_qd(&qd, ne, e);
            let rows: Vec<[f64; NODES]> = (0..NODES).map(|a| ke_row(a, &g)).collect();
            let serial = stiffness_sym(&element::quad_data(&m.coords(e)).unwrap());
            let scale = serial.iter().fold(0.0f64, |s, v| s.max(v.abs()));
            for a in 0..NODES {
                for b in 0..NODES {
                    assert_eq!(rows[a][b].to_bits(), rows[b][a].to_bits(), "({a}, {b})");
                    let k = crate::gpu::pattern::sym_index(a.min(b), a.max(b));
                    assert!((rows[a][b] - serial[k]).abs() <= 1e-14 * scale);
                }
            }
        }
    }

    #[test]
    fn the_row_gather_sums_in_the_serial_scatter_order() {
        // scattering the twin's element entries element by element (the
        // serial order) gives the row gather's matrix bit for bit, and the
        // serial assembly's matrix to rounding
        let m = mesh();
        let qd = device_qd(&m);
        let ne = m.elements.len();
        let p = FullPattern::build(m.nodes(), &m.elements).unwrap();
        let load = Load {
            mode: 1,
            src: 0.7,
            fq: &[],
        };
        let (val, f) = gather(&p, &m.elements, &qd, &load);
        let mut sval = vec![0.0; p.nnz()];
        let mut sf = vec![0.0; p.n];
        for (e, el) in m.elements.iter().enumerate() {
            let (g, wdet) = element_qd(&qd, ne, e);
            for a in 0..NODES {
                let row = ke_row(a, &g);
                for b in 0..NODES {
                    sval[p.slot(el[a], el[b]).unwrap() as usize] += row[b];
                }
                sf[el[a] as usize] += fe(a, &wdet, |_| 0.7);
            }
        }
        assert_eq!(val, sval);
        assert_eq!(f, sf);
        // exactly symmetric
        for i in 0..p.n {
            for k in p.rowptr[i] as usize..p.rowptr[i + 1] as usize {
                let j = p.col[k];
                let t = p.slot(j, i as u32).unwrap() as usize;
                assert_eq!(val[k].to_bits(), val[t].to_bits());
            }
        }
        // the serial assembly, to rounding
        let mut k = SymCsr::pattern(m.nodes(), &m.elements).unwrap();
        for (e, el) in m.elements.iter().enumerate() {
            let ke = stiffness_sym(&element::quad_data(&m.coords(e)).unwrap());
            let slots = crate::sparse::slot_map(&k, el);
            for (s, v) in slots.iter().zip(ke.iter()) {
                k.val[*s as usize] += v;
            }
        }
        let (_, _, full) = k.to_full();
        let scale = full.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        for (a, b) in val.iter().zip(&full) {
            assert!((a - b).abs() <= 1e-13 * scale);
        }
    }

    #[test]
    fn robin_rows_list_every_node_once_with_its_edges_in_order() {
        let edges = [[4, 5, 6], [0, 1, 2], [2, 3, 4], [9, 9, 8]];
        let r = RobinRows::new(&edges);
        assert_eq!(r.nodes, vec![0, 1, 2, 3, 4, 5, 6, 8, 9]);
        assert_eq!(r.ptr.len(), r.nodes.len() + 1);
        let of = |v: u32| {
            let t = r.nodes.iter().position(|&x| x == v).unwrap();
            r.edges[r.ptr[t] as usize..r.ptr[t + 1] as usize].to_vec()
        };
        assert_eq!(of(2), vec![1, 2]);
        assert_eq!(of(4), vec![0, 2]);
        assert_eq!(of(9), vec![3, 3]);
        assert_eq!(
            RobinRows::new(&[]),
            RobinRows {
                ptr: vec![0],
                ..RobinRows::default()
            }
        );
    }

    #[test]
    fn robin_rows_match_the_serial_edge_matrix_and_are_symmetric() {
        let ex = [0.0, 0.6, 1.1];
        let ey = [0.0, 0.05, 0.3];
        let (he, pe) = element::robin_edge(&ex, &ey, 2.5, -1.5);
        let rows: Vec<([f64; 3], f64)> =
            (0..3).map(|a| robin_row(a, &ex, &ey, 2.5, -1.5)).collect();
        for a in 0..3 {
            assert!((rows[a].1 - pe[a]).abs() <= 1e-14 * pe[a].abs().max(1.0));
            for c in 0..3 {
                assert_eq!(rows[a].0[c].to_bits(), rows[c].0[a].to_bits());
                assert!((rows[a].0[c] - he[a][c]).abs() <= 1e-14 * he[a][c].abs().max(1.0));
            }
        }
    }
}
