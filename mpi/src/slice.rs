//! A rank's block of a mesh, read (or generated) from a [`MeshBlocks`]
//! source and validated there: the first step of a run in which no rank
//! holds the whole mesh.
//!
//! The mesh is dealt out in **blocks** by index: rank `r` of `P` holds
//! elements `E r / P .. E (r + 1) / P` and nodes `N r / P .. N (r + 1) /
//! P` ([`block`]). It reads the connectivity of its elements, the
//! coordinates of its nodes, and the coordinates of the few nodes its
//! elements use outside its node range (a second, scattered read: one
//! row of nodes on either side for a mesh numbered with locality). It
//! then checks what [`Mesh::new_with`](quadflow_systems::mesh::Mesh::new_with)
//! checks, in the same order, each stage agreed before the next, so that
//! the first failure of the whole mesh is reported with the message a
//! one-process run gives (naming the node or element by its index in the
//! whole mesh): coordinates finite (each rank its node block), node
//! indices in range and not repeated, then every element's Jacobian
//! (clockwise elements renumbered or refused, degenerate ones refused).
//! What the partitioner needs follows: the element centroids and the
//! whole mesh's bounding box.

use crate::comm::{self, Comm};
use quadflow_systems::element::{self, NODES};
use quadflow_systems::mesh::{MeshError, OrientationPolicy, check_element, reverse};
use quadflow_systems::pipeline::{MeshBlocks, MeshCheck};
use std::collections::BTreeMap;
use std::ops::Range;

/// The block of `total` items that rank `r` of `parts` holds:
/// `total r / parts .. total (r + 1) / parts`.
pub fn block(total: usize, parts: usize, r: usize) -> Range<usize> {
    let at = |q: usize| (total as u128 * q as u128 / parts as u128) as usize;
    at(r)..at(r + 1)
}

/// The rank whose [`block`] of `total` items holds item `i < total`.
pub fn holder(total: usize, parts: usize, i: usize) -> usize {
    let mut r = ((i as u128 * parts as u128) / total.max(1) as u128) as usize;
    r = r.min(parts - 1);
    while block(total, parts, r).start > i {
        r -= 1;
    }
    while block(total, parts, r).end <= i {
        r += 1;
    }
    r
}

/// A rank's validated blocks of the whole mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Nodes of the whole mesh.
    pub nodes: usize,
    /// Elements of the whole mesh.
    pub elements: usize,
    /// The first node of this rank's node block.
    pub first_node: usize,
    /// Coordinates of the node block.
    pub x: Vec<f64>,
    /// Coordinates of the node block.
    pub y: Vec<f64>,
    /// The first element of this rank's element block.
    pub first_element: usize,
    /// The element block, validated: node indices of the whole mesh,
    /// every element counter-clockwise (renumbered where the policy
    /// allows).
    pub quad8: Vec<[u32; NODES]>,
    /// Centroid (mean of the four corners, summed in corner order as
    /// [`crate::partition::rcb`] does) of every element of the block.
    pub centroids: (Vec<f64>, Vec<f64>),
    /// Elements renumbered counter-clockwise, in the whole mesh.
    pub flipped: usize,
    /// Bounding box of the whole mesh's nodes, `[xmin, xmax, ymin, ymax]`.
    pub bbox: [f64; 4],
    /// The mesh's named node sets, whole.
    pub node_sets: BTreeMap<String, Vec<u32>>,
    /// Bytes this rank read from files.
    pub bytes_read: u64,
}

impl Slice {
    /// The node range of this rank's block.
    pub fn node_range(&self) -> Range<usize> {
        self.first_node..self.first_node + self.x.len()
    }

    /// The element range of this rank's block.
    pub fn element_range(&self) -> Range<usize> {
        self.first_element..self.first_element + self.quad8.len()
    }
}

/// Every rank's failure agreed (the lowest failing rank's message, which,
/// the blocks being in index order, names the first bad item of the
/// whole mesh).
fn agreed<T>(comm: &dyn Comm, r: Result<T, String>) -> Result<T, String> {
    let mine = r.as_ref().err().cloned();
    comm::agree(comm, mine)?;
    r
}

/// Reads and validates this rank's blocks of `source` (collective; every
/// failure agreed, with the message of a one-process run:
/// `"{origin}: mesh: element 7 ..."`).
pub fn read(comm: &dyn Comm, source: &dyn MeshBlocks, check: MeshCheck) -> Result<Slice, String> {
    let (p, r) = (comm.size(), comm.rank());
    let (n, ne) = source.size();
    let origin = source.origin();
    let mesh_err = |e: MeshError| format!("{origin}: {e}");
    // the whole mesh's size, the same on every rank
    if n == 0 || ne == 0 {
        return Err(mesh_err(MeshError::Empty {
            nodes: n,
            elements: ne,
        }));
    }
    if n >= u32::MAX as usize {
        return Err(mesh_err(MeshError::TooLarge(n)));
    }
    let nodes = block(n, p, r);
    let els = block(ne, p, r);
    let read = (|| {
        let raw = source.elements(els.start, els.len())?;
        let (x, y) = source.coordinates(nodes.start, nodes.len())?;
        if raw.len() != els.len() || x.len() != nodes.len() || y.len() != nodes.len() {
            return Err(format!(
                "{origin}: the mesh source gave {} elements and {}/{} coordinates for blocks of {} and {}",
                raw.len(),
                x.len(),
                y.len(),
                els.len(),
                nodes.len()
            ));
        }
        Ok((raw, x, y))
    })();
    let (raw, x, y) = agreed(comm, read)?;
    // 1. coordinates finite: the first bad node of the lowest block
    let bad = (0..x.len()).find(|&i| !x[i].is_finite() || !y[i].is_finite());
    agreed(
        comm,
        match bad {
            Some(i) => Err(mesh_err(MeshError::NonFinite {
                node: nodes.start + i,
                x: x[i],
                y: y[i],
            })),
            None => Ok(()),
        },
    )?;
    // 2. indices in range, no node twice: the first bad element
    let quad8 = check_elements(&raw, els.start, n, check.parallel);
    drop(raw);
    let mut quad8 = agreed(comm, quad8.map_err(mesh_err))?;
    // 3. the nodes of the block's elements outside the node block
    let mut extra: Vec<u32> = quad8
        .iter()
        .flatten()
        .copied()
        .filter(|&v| !nodes.contains(&(v as usize)))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    let got = source.scattered(&extra).and_then(|(ex, ey)| {
        if ex.len() == extra.len() && ey.len() == extra.len() {
            Ok((ex, ey))
        } else {
            Err(format!(
                "{origin}: the mesh source gave {} coordinates for {} nodes",
                ex.len(),
                extra.len()
            ))
        }
    });
    let (ex, ey) = agreed(comm, got)?;
    let at = Coordinates {
        first: nodes.start,
        x: &x,
        y: &y,
        ids: &extra,
        ex: &ex,
        ey: &ey,
    };
    // 4. orientation and degeneracy
    let oriented = orient(&mut quad8, els.start, &at, check);
    let mine = agreed(comm, oriented.map_err(mesh_err))?;
    let flipped = comm::sum_usize(comm, mine.0);
    let mut first = [-(mine.1 as f64)];
    comm.allreduce_max(&mut first);
    if check.orientation == OrientationPolicy::Refuse && flipped > 0 {
        return Err(mesh_err(MeshError::Clockwise {
            count: flipped,
            first: -first[0] as usize,
        }));
    }
    let centroids = quad8
        .iter()
        .map(|el| {
            let cx = (0..4).map(|k| at.x(el[k])).sum::<f64>() / 4.0;
            let cy = (0..4).map(|k| at.y(el[k])).sum::<f64>() / 4.0;
            (cx, cy)
        })
        .unzip();
    let mut b = [f64::NEG_INFINITY; 4];
    for (&xi, &yi) in x.iter().zip(&y) {
        b = [b[0].max(-xi), b[1].max(xi), b[2].max(-yi), b[3].max(yi)];
    }
    comm.allreduce_max(&mut b);
    let node_sets = agreed(comm, source.node_sets())?;
    Ok(Slice {
        nodes: n,
        elements: ne,
        first_node: nodes.start,
        x,
        y,
        first_element: els.start,
        quad8,
        centroids,
        flipped,
        bbox: [-b[0], b[1], -b[2], b[3]],
        node_sets,
        bytes_read: source.bytes_read(),
    })
}

/// The coordinates a rank has: its node block and the scattered extras.
struct Coordinates<'a> {
    first: usize,
    x: &'a [f64],
    y: &'a [f64],
    ids: &'a [u32],
    ex: &'a [f64],
    ey: &'a [f64],
}

impl Coordinates<'_> {
    fn slot(&self, v: u32) -> Result<usize, usize> {
        let i = v as usize;
        if i >= self.first && i < self.first + self.x.len() {
            Ok(i - self.first)
        } else {
            Err(self.ids.binary_search(&v).expect("an extra node was read"))
        }
    }

    fn x(&self, v: u32) -> f64 {
        match self.slot(v) {
            Ok(i) => self.x[i],
            Err(k) => self.ex[k],
        }
    }

    fn y(&self, v: u32) -> f64 {
        match self.slot(v) {
            Ok(i) => self.y[i],
            Err(k) => self.ey[k],
        }
    }

    fn of(&self, el: &[u32; NODES]) -> element::Coords {
        (
            std::array::from_fn(|k| self.x(el[k])),
            std::array::from_fn(|k| self.y(el[k])),
        )
    }
}

/// The block's elements (the first is element `first` of the whole
/// mesh) checked; the first bad one's error.
fn check_elements(
    raw: &[[i64; NODES]],
    first: usize,
    n: usize,
    parallel: bool,
) -> Result<Vec<[u32; NODES]>, MeshError> {
    if !parallel {
        return raw
            .iter()
            .enumerate()
            .map(|(k, el)| check_element(first + k, el, n))
            .collect();
    }
    use rayon::prelude::*;
    let mut out = vec![[0u32; NODES]; raw.len()];
    let bad = out
        .par_iter_mut()
        .zip(raw.par_iter())
        .enumerate()
        .with_min_len(4096)
        .filter_map(|(k, (o, el))| check_element(first + k, el, n).map(|v| *o = v).err())
        .min_by_key(|e| match e {
            MeshError::IndexOutOfRange { element, .. }
            | MeshError::RepeatedNode { element, .. } => *element,
            _ => usize::MAX,
        });
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The engine's orientation check on the block: elements whose Jacobian
/// is not positive everywhere are renumbered if that makes it so
/// (counted; kept as they were under [`OrientationPolicy::Refuse`]), else
/// the first of them is degenerate. Returns the count renumbered and the
/// first (`usize::MAX` for none), as indices of the whole mesh.
fn orient(
    quad8: &mut [[u32; NODES]],
    first: usize,
    at: &Coordinates,
    check: MeshCheck,
) -> Result<(usize, usize), MeshError> {
    let bad = |el: &[u32; NODES]| element::check_jacobian(&at.of(el)).is_err();
    let suspects: Vec<usize> = if check.parallel {
        use rayon::prelude::*;
        (0..quad8.len())
            .into_par_iter()
            .with_min_len(1024)
            .filter(|&k| bad(&quad8[k]))
            .collect()
    } else {
        (0..quad8.len()).filter(|&k| bad(&quad8[k])).collect()
    };
    let (mut flipped, mut first_flipped) = (0, usize::MAX);
    for k in suspects {
        let orig = quad8[k];
        let rev = reverse(orig);
        match element::check_jacobian(&at.of(&rev)) {
            Ok(()) => {
                flipped += 1;
                first_flipped = first_flipped.min(first + k);
                if check.orientation == OrientationPolicy::Fix {
                    quad8[k] = rev;
                }
            }
            Err(_) => {
                let (point, det) = element::check_jacobian(&at.of(&orig)).unwrap_err();
                return Err(MeshError::Degenerate {
                    element: first + k,
                    nodes: orig,
                    point,
                    det,
                });
            }
        }
    }
    Ok((flipped, first_flipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_and_holders_find_them() {
        for (total, parts) in [(10, 3), (3, 5), (1, 1), (1000, 7), (7, 7)] {
            let mut next = 0;
            for r in 0..parts {
                let b = block(total, parts, r);
                assert_eq!(b.start, next);
                next = b.end;
                for i in b {
                    assert_eq!(holder(total, parts, i), r, "{total} {parts} {i}");
                }
            }
            assert_eq!(next, total);
        }
    }
}

/// A mesh held in memory as arrays, read in blocks (tests of the block
/// path without files).
#[cfg(test)]
pub(crate) mod arrays {
    use super::*;

    /// Arrays a [`MeshBlocks`] source reads from.
    pub(crate) struct Arrays {
        pub x: Vec<f64>,
        pub y: Vec<f64>,
        pub quad8: Vec<[i64; NODES]>,
        pub sets: BTreeMap<String, Vec<u32>>,
    }

    impl Arrays {
        /// The arrays of a validated mesh.
        pub fn of(m: &quadflow_systems::mesh::Mesh) -> Self {
            Self {
                x: m.x.clone(),
                y: m.y.clone(),
                quad8: m.elements.iter().map(|e| e.map(i64::from)).collect(),
                sets: m.node_sets.clone(),
            }
        }
    }

    impl MeshBlocks for Arrays {
        fn size(&self) -> (usize, usize) {
            (self.x.len(), self.quad8.len())
        }
        fn origin(&self) -> String {
            "arrays".into()
        }
        fn elements(&self, first: usize, count: usize) -> Result<Vec<[i64; 8]>, String> {
            Ok(self.quad8[first..first + count].to_vec())
        }
        fn coordinates(&self, first: usize, count: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
            Ok((
                self.x[first..first + count].to_vec(),
                self.y[first..first + count].to_vec(),
            ))
        }
        fn scattered(&self, ids: &[u32]) -> Result<(Vec<f64>, Vec<f64>), String> {
            Ok(ids
                .iter()
                .map(|&v| (self.x[v as usize], self.y[v as usize]))
                .unzip())
        }
        fn node_sets(&self) -> Result<BTreeMap<String, Vec<u32>>, String> {
            Ok(self.sets.clone())
        }
    }
}

#[cfg(test)]
mod validation {
    use super::arrays::Arrays;
    use super::*;
    use crate::comm::ThreadComm;
    use crate::partition::tests::lattice;
    use quadflow_systems::mesh::Mesh;
    use std::sync::Arc;

    /// Every rank's outcome of reading `a` on `p` ranks.
    fn read_on(p: usize, a: Arc<Arrays>, policy: OrientationPolicy) -> Vec<Result<Slice, String>> {
        ThreadComm::run(p, move |c| {
            read(
                c,
                a.as_ref(),
                MeshCheck {
                    orientation: policy,
                    parallel: c.rank() % 2 == 0,
                },
            )
        })
    }

    /// The error `Mesh::new` gives, as the block read words it.
    fn serial_error(a: &Arrays, policy: OrientationPolicy) -> String {
        let e = Mesh::new(a.x.clone(), a.y.clone(), &a.quad8, policy).unwrap_err();
        format!("arrays: {e}")
    }

    #[test]
    fn slices_hold_the_whole_mesh_validated() {
        let m = lattice(7, 5, true);
        let a = Arc::new(Arrays::of(&m));
        for p in 1..=4 {
            let got = read_on(p, a.clone(), OrientationPolicy::Fix);
            let mut quad8 = Vec::new();
            let mut x = Vec::new();
            for s in got {
                let s = s.unwrap();
                assert_eq!(s.bbox, m.bbox());
                assert_eq!(
                    (s.nodes, s.elements, s.flipped),
                    (m.nodes(), m.elements.len(), 0)
                );
                quad8.extend(s.quad8);
                x.extend(s.x);
            }
            assert_eq!(quad8, m.elements);
            assert_eq!(x, m.x);
        }
    }

    /// The first bad item of the whole mesh, by the message a whole-mesh
    /// validation gives, on every rank, whichever block holds it.
    #[test]
    fn failures_name_the_first_bad_item_of_the_whole_mesh() {
        let m = lattice(6, 5, true);
        let base = Arrays::of(&m);
        let last = m.elements.len() - 1;
        type Spoil = Box<dyn Fn(&mut Arrays)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("nan", Box::new(|a: &mut Arrays| a.y[40] = f64::NAN)),
            (
                "range",
                Box::new(move |a: &mut Arrays| a.quad8[last][3] = 10_000),
            ),
            (
                "repeat",
                Box::new(|a: &mut Arrays| a.quad8[17][5] = a.quad8[17][1]),
            ),
            (
                "degenerate",
                Box::new(|a: &mut Arrays| {
                    let v = a.quad8[20][2] as usize;
                    let w = a.quad8[20][0] as usize;
                    a.x[v] = a.x[w];
                    a.y[v] = a.y[w];
                }),
            ),
            (
                "two",
                Box::new(move |a: &mut Arrays| {
                    a.quad8[last][3] = -1;
                    a.quad8[2][0] = a.quad8[2][1];
                }),
            ),
        ];
        for (what, spoil) in cases {
            let mut a = Arrays {
                x: base.x.clone(),
                y: base.y.clone(),
                quad8: base.quad8.clone(),
                sets: BTreeMap::new(),
            };
            spoil(&mut a);
            let want = serial_error(&a, OrientationPolicy::Fix);
            let a = Arc::new(a);
            for p in [1, 3, 4] {
                for r in read_on(p, a.clone(), OrientationPolicy::Fix) {
                    assert_eq!(r.unwrap_err(), want, "{what} P={p}");
                }
            }
        }
    }

    #[test]
    fn clockwise_elements_are_renumbered_or_refused_as_on_one_process() {
        let m = lattice(6, 4, false);
        let mut a = Arrays::of(&m);
        for e in [3, 11, 20] {
            let el = a.quad8[e];
            a.quad8[e] = [el[0], el[3], el[2], el[1], el[7], el[6], el[5], el[4]];
        }
        let want = serial_error(&a, OrientationPolicy::Refuse);
        let fixed = Mesh::new(a.x.clone(), a.y.clone(), &a.quad8, OrientationPolicy::Fix).unwrap();
        let a = Arc::new(a);
        for p in [1, 2, 4] {
            for r in read_on(p, a.clone(), OrientationPolicy::Refuse) {
                assert_eq!(r.unwrap_err(), want, "P={p}");
            }
            let got = read_on(p, a.clone(), OrientationPolicy::Fix);
            let mut quad8 = Vec::new();
            for s in got {
                let s = s.unwrap();
                assert_eq!(s.flipped, 3);
                quad8.extend(s.quad8);
            }
            assert_eq!(quad8, fixed.elements);
        }
    }
}
