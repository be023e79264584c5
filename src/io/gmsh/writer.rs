//! Writing `.msh` files (MSH 2.2 and 4.1, ASCII and binary).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::Path;

use super::format::{GmshError, MshVersion};
use crate::io::atomic::write_atomic;
use crate::io::raw::RawMesh;

/// What [`write_msh`] wrote besides nodes and quadrangles.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MshWritten {
    /// 3-node boundary line elements written for the node sets.
    pub line_elements: usize,
    /// Per node set, how many of its nodes lie on none of its boundary
    /// edges and so are not in the file (0 for sets of whole edges).
    pub uncovered: BTreeMap<String, usize>,
}

/// Formats `v` with the fewest digits that read back to the same `f64`.
fn fmt_f64(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Boundary edges (those of one element only) as `[end, end, middle]` in
/// the element's counter-clockwise direction, in element and edge order.
fn boundary_edges(quad8: &[[i64; 8]]) -> Vec<[i64; 3]> {
    let mut count: HashMap<(i64, i64, i64), u32> = HashMap::with_capacity(quad8.len() * 2);
    let key = |a: i64, b: i64, m: i64| (a.min(b), a.max(b), m);
    for q in quad8 {
        for k in 0..4 {
            *count
                .entry(key(q[k], q[(k + 1) % 4], q[4 + k]))
                .or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for q in quad8 {
        for k in 0..4 {
            let (a, b, m) = (q[k], q[(k + 1) % 4], q[4 + k]);
            if count[&key(a, b, m)] == 1 {
                out.push([a, b, m]);
            }
        }
    }
    out
}

/// A sink for the numbers of a section: ASCII text (numbers separated by
/// single spaces, one record a line) or raw little-endian.
struct Out<W: Write> {
    w: W,
    binary: bool,
    /// Nothing written on the current ASCII line yet.
    fresh: bool,
}

impl<W: Write> Out<W> {
    fn new(w: W, binary: bool) -> Self {
        Self {
            w,
            binary,
            fresh: true,
        }
    }
    fn text(&mut self, s: &str) -> io::Result<()> {
        self.fresh = s.ends_with('\n');
        self.w.write_all(s.as_bytes())
    }
    fn sep(&mut self) -> io::Result<()> {
        if !std::mem::replace(&mut self.fresh, false) {
            self.w.write_all(b" ")?;
        }
        Ok(())
    }
    fn int(&mut self, v: i32) -> io::Result<()> {
        if self.binary {
            self.w.write_all(&v.to_le_bytes())
        } else {
            self.sep()?;
            write!(self.w, "{v}")
        }
    }
    fn size(&mut self, v: u64) -> io::Result<()> {
        if self.binary {
            self.w.write_all(&v.to_le_bytes())
        } else {
            self.sep()?;
            write!(self.w, "{v}")
        }
    }
    fn double(&mut self, v: f64) -> io::Result<()> {
        if self.binary {
            self.w.write_all(&v.to_le_bytes())
        } else {
            self.sep()?;
            self.w.write_all(fmt_f64(v).as_bytes())
        }
    }
    /// Ends an ASCII line; nothing in binary data.
    fn eol(&mut self) -> io::Result<()> {
        if self.binary {
            Ok(())
        } else {
            self.fresh = true;
            self.w.write_all(b"\n")
        }
    }
    /// Ends a section: binary data is followed by a line break first.
    fn end(&mut self, name: &str) -> io::Result<()> {
        let nl = if self.binary { "\n" } else { "" };
        self.text(&format!("{nl}$End{name}\n"))
    }
}

/// The line elements of one node set.
struct SetLines {
    name: String,
    lines: Vec<[i64; 3]>,
    bbox: [f64; 4],
}

/// Writes `mesh` as a gmsh `.msh` file of variant `version`, whole or not
/// at all (a temporary file beside `path`, renamed over it at the end).
///
/// Nodes get tags 1..=N in order and all belong to one surface (entity 1,
/// physical surface 1 without a name); elements are 8-node quadrangles
/// (type 16). Each node set becomes a named physical curve (tags 1, 2, ...
/// in name order) of 3-node line elements (type 8) along the boundary edges
/// whose three nodes are all in the set; [`read_msh`] gives the set back as
/// long as every node of it lies on such an edge (what [`MshWritten`]
/// counts otherwise). ASCII numbers are written with the fewest digits that
/// read back to the same `f64`, so ASCII round trips are exact too.
///
/// # Errors
///
/// A [`GmshError`] naming `path` when `x` and `y` differ in length, an
/// element or node set refers to a node that does not exist, a node set
/// name is empty or holds a `"` or line break, MSH 2.2 is asked for more
/// than 2^31 - 1 nodes or elements, or writing fails.
pub fn write_msh(
    path: &Path,
    mesh: &RawMesh,
    node_sets: &BTreeMap<String, Vec<u32>>,
    version: MshVersion,
) -> Result<MshWritten, GmshError> {
    let n = mesh.x.len();
    if mesh.y.len() != n {
        return Err(GmshError::new(
            path,
            format!("x has {n} values but y has {}", mesh.y.len()),
        ));
    }
    if let Some((e, v)) = mesh.quad8.iter().enumerate().find_map(|(e, q)| {
        q.iter()
            .find(|&&v| v < 0 || v as u64 >= n as u64)
            .map(|&v| (e, v))
    }) {
        return Err(GmshError::new(
            path,
            format!("element {e} refers to node {v}, but the mesh has {n} nodes"),
        ));
    }
    if !version.is_v41() && (n > i32::MAX as usize || mesh.quad8.len() > i32::MAX as usize / 2) {
        return Err(GmshError::new(
            path,
            "too many nodes or elements for MSH 2.2 (32-bit numbers); write MSH 4.1",
        ));
    }
    let edges = boundary_edges(&mesh.quad8);
    let mut written = MshWritten::default();
    let mut sets = Vec::new();
    for (name, members) in node_sets {
        if name.is_empty() || name.contains(['"', '\n', '\r']) {
            return Err(GmshError::new(
                path,
                format!("node set name {name:?} cannot be a gmsh physical name"),
            ));
        }
        let mut inside = vec![false; n];
        for &m in members {
            *inside.get_mut(m as usize).ok_or_else(|| {
                GmshError::new(
                    path,
                    format!("node set \"{name}\" holds node {m}, but the mesh has {n} nodes"),
                )
            })? = true;
        }
        let lines: Vec<[i64; 3]> = edges
            .iter()
            .filter(|e| e.iter().all(|&v| inside[v as usize]))
            .copied()
            .collect();
        let mut covered = vec![false; n];
        let mut bbox = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for l in &lines {
            for &v in l {
                let v = v as usize;
                covered[v] = true;
                bbox = [
                    bbox[0].min(mesh.x[v]),
                    bbox[1].min(mesh.y[v]),
                    bbox[2].max(mesh.x[v]),
                    bbox[3].max(mesh.y[v]),
                ];
            }
        }
        if lines.is_empty() {
            bbox = [0.0; 4];
        }
        let mut uniq = members.clone();
        uniq.sort_unstable();
        uniq.dedup();
        let uncovered = uniq.iter().filter(|&&m| !covered[m as usize]).count();
        written.uncovered.insert(name.clone(), uncovered);
        written.line_elements += lines.len();
        sets.push(SetLines {
            name: name.clone(),
            lines,
            bbox,
        });
    }
    write_atomic(path, |w| {
        if version.is_v41() {
            write_41(w, mesh, &sets, version.is_binary())
        } else {
            write_22(w, mesh, &sets, version.is_binary())
        }
    })
    .map_err(|e| GmshError::new(path, e))?;
    Ok(written)
}

fn write_header<W: Write>(
    w: &mut W,
    version: &str,
    binary: bool,
    sets: &[SetLines],
) -> io::Result<()> {
    writeln!(w, "$MeshFormat\n{version} {} 8", u8::from(binary))?;
    if binary {
        w.write_all(&1i32.to_le_bytes())?;
        w.write_all(b"\n")?;
    }
    writeln!(w, "$EndMeshFormat")?;
    if !sets.is_empty() {
        writeln!(w, "$PhysicalNames\n{}", sets.len())?;
        for (i, s) in sets.iter().enumerate() {
            writeln!(w, "1 {} \"{}\"", i + 1, s.name)?;
        }
        writeln!(w, "$EndPhysicalNames")?;
    }
    Ok(())
}

fn write_41<W: Write>(
    w: &mut W,
    mesh: &RawMesh,
    sets: &[SetLines],
    binary: bool,
) -> io::Result<()> {
    write_header(w, "4.1", binary, sets)?;
    let n = mesh.x.len();
    let e = mesh.quad8.len();
    let bbox = mesh.x.iter().zip(&mesh.y).fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |b, (&x, &y)| [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)],
    );
    let mut o = Out::new(w, binary);

    o.text("$Entities\n")?;
    for c in [0, sets.len() as u64, 1, 0] {
        o.size(c)?;
    }
    o.eol()?;
    let entity = |o: &mut Out<&mut W>, tag: i32, b: [f64; 4], phys: i32| -> io::Result<()> {
        o.int(tag)?;
        for v in [b[0], b[1], 0.0, b[2], b[3], 0.0] {
            o.double(v)?;
        }
        o.size(1)?;
        o.int(phys)?;
        o.size(0)?;
        o.eol()
    };
    for (i, s) in sets.iter().enumerate() {
        entity(&mut o, i as i32 + 1, s.bbox, i as i32 + 1)?;
    }
    entity(&mut o, 1, bbox, 1)?;
    o.end("Entities")?;

    o.text("$Nodes\n")?;
    for v in [1, n as u64, 1.min(n as u64), n as u64] {
        o.size(v)?;
    }
    o.eol()?;
    o.int(2)?;
    o.int(1)?;
    o.int(0)?;
    o.size(n as u64)?;
    o.eol()?;
    for i in 0..n {
        o.size(i as u64 + 1)?;
        o.eol()?;
    }
    for i in 0..n {
        o.double(mesh.x[i])?;
        o.double(mesh.y[i])?;
        o.double(0.0)?;
        o.eol()?;
    }
    o.end("Nodes")?;

    let blocks: Vec<&SetLines> = sets.iter().filter(|s| !s.lines.is_empty()).collect();
    let lines: usize = blocks.iter().map(|s| s.lines.len()).sum();
    let total = (e + lines) as u64;
    o.text("$Elements\n")?;
    for v in [1 + blocks.len() as u64, total, 1.min(total), total] {
        o.size(v)?;
    }
    o.eol()?;
    o.int(2)?;
    o.int(1)?;
    o.int(16)?;
    o.size(e as u64)?;
    o.eol()?;
    let mut tag = 0u64;
    for q in &mesh.quad8 {
        tag += 1;
        o.size(tag)?;
        for &v in q {
            o.size(v as u64 + 1)?;
        }
        o.eol()?;
    }
    for (i, s) in sets.iter().enumerate() {
        if s.lines.is_empty() {
            continue;
        }
        o.int(1)?;
        o.int(i as i32 + 1)?;
        o.int(8)?;
        o.size(s.lines.len() as u64)?;
        o.eol()?;
        for l in &s.lines {
            tag += 1;
            o.size(tag)?;
            for &v in l {
                o.size(v as u64 + 1)?;
            }
            o.eol()?;
        }
    }
    o.end("Elements")?;
    Ok(())
}

fn write_22<W: Write>(
    w: &mut W,
    mesh: &RawMesh,
    sets: &[SetLines],
    binary: bool,
) -> io::Result<()> {
    write_header(w, "2.2", binary, sets)?;
    let n = mesh.x.len();
    let e = mesh.quad8.len();
    let lines: usize = sets.iter().map(|s| s.lines.len()).sum();
    let mut o = Out::new(w, binary);

    o.text(&format!("$Nodes\n{n}\n"))?;
    for i in 0..n {
        o.int(i as i32 + 1)?;
        o.double(mesh.x[i])?;
        o.double(mesh.y[i])?;
        o.double(0.0)?;
        o.eol()?;
    }
    o.end("Nodes")?;

    o.text(&format!("$Elements\n{}\n", e + lines))?;
    let mut num = 0i32;
    // (type, physical tag, entity tag, elements)
    let mut groups: Vec<(i32, i32, Vec<&[i64]>)> =
        vec![(16, 1, mesh.quad8.iter().map(|q| &q[..]).collect())];
    for (i, s) in sets.iter().enumerate() {
        if !s.lines.is_empty() {
            groups.push((8, i as i32 + 1, s.lines.iter().map(|l| &l[..]).collect()));
        }
    }
    for (etype, phys, elements) in groups {
        if binary {
            o.int(etype)?;
            o.int(elements.len() as i32)?;
            o.int(2)?;
        }
        for el in elements {
            num += 1;
            o.int(num)?;
            if !binary {
                o.int(etype)?;
                o.int(2)?;
            }
            o.int(phys)?;
            o.int(phys)?;
            for &v in el {
                o.int(v as i32 + 1)?;
            }
            o.eol()?;
        }
    }
    o.end("Elements")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_floats_round_trip() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1.0 / 3.0,
            1e-300,
            5e-324,
            1e300,
            -2.5e-7,
            123456.789,
        ] {
            let s = fmt_f64(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
    }
}
