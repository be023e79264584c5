//! Reading `.msh` files (MSH 2.2 and 4.1, ASCII and binary).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::format::{GmshError, ImportedMesh, Location, NO_QUADS};
use crate::io::raw::RawMesh;

/// Nodes per element of gmsh's element types 1 to 31 (index = type), 0 for
/// types gmsh does not define.
const NODES_PER_TYPE: [usize; 32] = [
    0, 2, 3, 4, 4, 8, 6, 5, 3, 6, 9, 10, 27, 18, 14, 1, 8, 20, 15, 13, 9, 10, 12, 15, 15, 21, 4, 5,
    6, 20, 35, 56,
];

/// Nodes of an element of gmsh type `t`, if the type is known.
fn nodes_of_type(t: i32) -> Option<usize> {
    match t {
        92 => Some(64),
        93 => Some(125),
        _ => usize::try_from(t)
            .ok()
            .and_then(|i| NODES_PER_TYPE.get(i).copied())
            .filter(|&n| n > 0),
    }
}

/// A readable name of element type `t` for messages.
fn type_name(t: i32) -> String {
    let name = match t {
        1 => "2-node line",
        2 => "3-node triangle",
        3 => "4-node quadrangle",
        4 => "4-node tetrahedron",
        5 => "8-node hexahedron",
        6 => "6-node prism",
        7 => "5-node pyramid",
        8 => "3-node line",
        9 => "6-node triangle",
        10 => "9-node quadrangle",
        11 => "10-node tetrahedron",
        15 => "1-node point",
        16 => "8-node quadrangle",
        17 => "20-node hexahedron",
        20 => "9-node incomplete triangle",
        21 => "10-node triangle",
        _ => return format!("type {t}"),
    };
    format!("type {t}, {name}")
}

/// Dimension of element type `t` (0 for points, 1 for lines, 2 for surface
/// and 3 for volume elements); what physical names of MSH 2.2 files are
/// looked up with.
fn dim_of_type(t: i32) -> i32 {
    match t {
        15 => 0,
        1 | 8 | 26 | 27 | 28 => 1,
        2 | 3 | 9 | 10 | 16 | 20 | 21 | 22 | 23 | 24 | 25 => 2,
        _ => 3,
    }
}

// ---------------------------------------------------------------------------
// Reading: the byte cursor
// ---------------------------------------------------------------------------

/// A cursor over the file's bytes that reads ASCII tokens (tracking line
/// numbers) and, in binary files, raw numbers.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// 1-based line of `pos` (meaningful in ASCII parts only).
    line: usize,
    /// Where the last token or binary number started.
    tok_pos: usize,
    tok_line: usize,
    /// The file is binary: numbers in data sections are raw, and places are
    /// given as byte offsets.
    binary: bool,
    /// Binary numbers are big-endian.
    swap: bool,
    path: &'a Path,
}

type Res<T> = Result<T, GmshError>;

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], path: &'a Path) -> Self {
        Self {
            buf,
            pos: 0,
            line: 1,
            tok_pos: 0,
            tok_line: 1,
            binary: false,
            swap: false,
            path,
        }
    }

    /// Where the last token (or binary number) started.
    fn loc(&self) -> Location {
        if self.binary {
            Location::Byte(self.tok_pos)
        } else {
            Location::Line(self.tok_line)
        }
    }

    /// An error at the last token.
    fn err(&self, message: impl Into<String>) -> GmshError {
        self.err_at(self.loc(), message)
    }

    fn err_at(&self, loc: Location, message: impl Into<String>) -> GmshError {
        GmshError {
            path: self.path.display().to_string(),
            location: Some(loc),
            message: message.into(),
        }
    }

    /// An error at the current end of file.
    fn truncated(&mut self, what: &str) -> GmshError {
        self.tok_pos = self.buf.len();
        self.tok_line = self.line;
        self.err(format!(
            "unexpected end of file while reading {what} (the file is truncated)"
        ))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.buf.get(self.pos) {
            if !c.is_ascii_whitespace() {
                break;
            }
            if c == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
    }

    /// The next whitespace-separated token, or `None` at the end of file.
    fn token_opt(&mut self) -> Option<&'a [u8]> {
        self.skip_ws();
        if self.pos >= self.buf.len() {
            return None;
        }
        self.tok_pos = self.pos;
        self.tok_line = self.line;
        let start = self.pos;
        while self
            .buf
            .get(self.pos)
            .is_some_and(|c| !c.is_ascii_whitespace())
        {
            self.pos += 1;
        }
        Some(&self.buf[start..self.pos])
    }

    /// The next token; the end of file is a truncation error.
    fn token(&mut self, what: &str) -> Res<&'a [u8]> {
        match self.token_opt() {
            Some(t) => Ok(t),
            None => Err(self.truncated(what)),
        }
    }

    /// Parses the next token as a `T`.
    fn parse<T: std::str::FromStr>(&mut self, what: &str) -> Res<T> {
        let t = self.token(what)?;
        std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.err(format!("expected {what}, found \"{}\"", show(t))))
    }

    /// The rest of the current line (without its end), consuming the line
    /// end.
    fn rest_of_line(&mut self) -> &'a [u8] {
        let start = self.pos;
        while let Some(&c) = self.buf.get(self.pos) {
            self.pos += 1;
            if c == b'\n' {
                self.line += 1;
                let end = if self.pos >= 2 && self.buf[self.pos - 2] == b'\r' {
                    self.pos - 2
                } else {
                    self.pos - 1
                };
                return &self.buf[start..end.max(start)];
            }
        }
        &self.buf[start..]
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Res<[u8; N]> {
        if self.remaining() < N {
            return Err(self.truncated(what));
        }
        self.tok_pos = self.pos;
        let mut b: [u8; N] = self.buf[self.pos..self.pos + N]
            .try_into()
            .expect("length checked");
        self.pos += N;
        if self.swap {
            b.reverse();
        }
        Ok(b)
    }

    /// An `int` field: ASCII token, or 4 raw bytes in binary data.
    fn int(&mut self, what: &str) -> Res<i32> {
        if self.binary {
            Ok(i32::from_le_bytes(self.bytes::<4>(what)?))
        } else {
            self.parse(what)
        }
    }

    /// A `size_t` field: ASCII token, or 8 raw bytes in binary data.
    fn size(&mut self, what: &str) -> Res<u64> {
        if self.binary {
            Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
        } else {
            self.parse(what)
        }
    }

    /// A `double` field: ASCII token, or 8 raw bytes in binary data.
    fn double(&mut self, what: &str) -> Res<f64> {
        if self.binary {
            Ok(f64::from_le_bytes(self.bytes::<8>(what)?))
        } else {
            self.parse(what)
        }
    }

    /// A count of items of at least `min_bytes` bytes each, checked against
    /// what is left of the file, so a corrupt count cannot ask for a huge
    /// allocation.
    fn count(&mut self, n: u64, min_bytes: usize, what: &str) -> Res<usize> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n.saturating_mul(min_bytes) > self.remaining() {
            return Err(self.err(format!(
                "{what}: the file declares {n} of them, more than it can hold \
                 (truncated or corrupt file)"
            )));
        }
        Ok(n)
    }

    /// A count of items of at least `min_ascii` characters in ASCII files or
    /// `min_binary` bytes in binary data.
    fn count2(&mut self, n: u64, min_ascii: usize, min_binary: usize, what: &str) -> Res<usize> {
        let m = if self.binary { min_binary } else { min_ascii };
        self.count(n, m, what)
    }

    /// Expects the section end `$End<name>`.
    fn expect_end(&mut self, name: &str) -> Res<()> {
        let want = format!("$End{name}");
        let t = self.token(&want)?;
        if t != want.as_bytes() {
            return Err(self.err(format!(
                "expected {want}, found \"{}\" (the ${name} section holds more or other \
                 data than its header declares)",
                show(t)
            )));
        }
        Ok(())
    }

    /// Skips a section this reader does not use, up to its `$End<name>`.
    fn skip_section(&mut self, name: &str) -> Res<()> {
        let want = format!("$End{name}");
        let start = self.pos;
        let found = self.buf[start..]
            .windows(want.len())
            .position(|w| w == want.as_bytes());
        match found {
            Some(i) => {
                let end = start + i + want.len();
                self.line += self.buf[start..end].iter().filter(|&&c| c == b'\n').count();
                self.pos = end;
                Ok(())
            }
            None => Err(self.err(format!(
                "section ${name} has no {want} (the file is truncated)"
            ))),
        }
    }
}

/// A token for messages: at most 40 characters, non-text bytes replaced.
fn show(t: &[u8]) -> String {
    let s = String::from_utf8_lossy(&t[..t.len().min(40)]).into_owned();
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if t.len() > 40 { format!("{s}...") } else { s }
}

// ---------------------------------------------------------------------------
// Reading: sections
// ---------------------------------------------------------------------------

/// From node tags to positions in the file's node list.
enum NodeIndex {
    /// Tags in `min..min + table.len()`; `u32::MAX` marks a missing tag.
    Dense { min: u64, table: Vec<u32> },
    /// Any tags.
    Sparse(HashMap<u64, u32>),
}

impl NodeIndex {
    fn get(&self, tag: u64) -> Option<u32> {
        match self {
            NodeIndex::Dense { min, table } => tag
                .checked_sub(*min)
                .and_then(|i| table.get(usize::try_from(i).ok()?))
                .copied()
                .filter(|&v| v != u32::MAX),
            NodeIndex::Sparse(m) => m.get(&tag).copied(),
        }
    }
}

/// Everything gathered while reading.
#[derive(Default)]
struct State {
    /// MSH 4.1 (else 2.x).
    v4: bool,
    /// `(dimension, physical tag)` to name.
    names: HashMap<(i32, i32), String>,
    /// MSH 4.1: `(dimension, entity tag)` to physical tags.
    entity_phys: HashMap<(i32, i32), Vec<i32>>,
    tags: Vec<u64>,
    x: Vec<f64>,
    y: Vec<f64>,
    z: Vec<f64>,
    index: Option<NodeIndex>,
    have_elements: bool,
    /// Quadrangles in file node positions.
    quads: Vec<[u32; 8]>,
    /// Named sets in file node positions (unsorted, repeats allowed).
    sets: BTreeMap<String, Vec<u32>>,
    /// Skipped elements per type.
    ignored: BTreeMap<i32, usize>,
}

impl State {
    fn build_index(&mut self, r: &Reader) -> Res<()> {
        let n = self.tags.len();
        let (lo, hi) = self
            .tags
            .iter()
            .fold((u64::MAX, 0), |(a, b), &t| (a.min(t), b.max(t)));
        let span = if n == 0 {
            0
        } else {
            (hi - lo).saturating_add(1)
        };
        let dup =
            |tag: u64| GmshError::new(r.path, format!("node tag {tag} is defined twice in $Nodes"));
        if n > 0 && span <= 4 * n as u64 + 1024 {
            let mut table = vec![u32::MAX; span as usize];
            for (i, &t) in self.tags.iter().enumerate() {
                let slot = &mut table[(t - lo) as usize];
                if *slot != u32::MAX {
                    return Err(dup(t));
                }
                *slot = i as u32;
            }
            self.index = Some(NodeIndex::Dense { min: lo, table });
        } else {
            let mut m = HashMap::with_capacity(n);
            for (i, &t) in self.tags.iter().enumerate() {
                if m.insert(t, i as u32).is_some() {
                    return Err(dup(t));
                }
            }
            self.index = Some(NodeIndex::Sparse(m));
        }
        Ok(())
    }

    /// Takes one element: `nodes` are tags with the place of each, `names`
    /// the named physical groups it belongs to.
    fn element(
        &mut self,
        r: &Reader,
        etype: i32,
        nodes: &[(u64, Location)],
        names: &[String],
    ) -> Res<()> {
        if !matches!(etype, 1 | 8 | 10 | 16) {
            *self.ignored.entry(etype).or_default() += 1;
            return Ok(());
        }
        let index = self.index.as_ref().expect("nodes are read before elements");
        let mut ids = [0u32; 9];
        for (k, &(tag, loc)) in nodes.iter().enumerate() {
            ids[k] = index.get(tag).ok_or_else(|| {
                r.err_at(
                    loc,
                    format!(
                        "an element ({}) refers to node tag {tag}, which $Nodes does not define",
                        type_name(etype)
                    ),
                )
            })?;
        }
        let used = match etype {
            10 => 8, // the centre node is dropped
            _ => nodes.len(),
        };
        if matches!(etype, 10 | 16) {
            self.quads
                .push(ids[..8].try_into().expect("quadrangles have 8 or 9 nodes"));
        }
        for name in names {
            self.sets
                .entry(name.clone())
                .or_default()
                .extend_from_slice(&ids[..used]);
        }
        Ok(())
    }

    /// Names of physical tags `phys` in dimension `dim`.
    fn names_of(&self, dim: i32, phys: &[i32]) -> Vec<String> {
        let mut v: Vec<String> = phys
            .iter()
            .filter_map(|&p| self.names.get(&(dim, p.abs())).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn read_physical_names(r: &mut Reader, st: &mut State) -> Res<()> {
    // $PhysicalNames is ASCII in binary files too.
    let binary = r.binary;
    r.binary = false;
    let result = (|| {
        let n: u64 = r.parse("the number of physical names")?;
        let n = r.count(n, 6, "physical names")?;
        for _ in 0..n {
            let dim: i32 = r.parse("a physical name's dimension")?;
            let tag: i32 = r.parse("a physical name's tag")?;
            let rest = String::from_utf8_lossy(r.rest_of_line()).trim().to_string();
            let name = rest
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .ok_or_else(|| {
                    r.err(format!(
                        "expected a quoted physical name after \"{dim} {tag}\", found \"{rest}\""
                    ))
                })?;
            st.names.insert((dim, tag), name.to_string());
        }
        r.expect_end("PhysicalNames")
    })();
    r.binary = binary;
    result
}

fn read_entities(r: &mut Reader, st: &mut State) -> Res<()> {
    let mut counts = [0u64; 4];
    for (d, c) in counts.iter_mut().enumerate() {
        *c = r.size(&format!("the number of {}-dimensional entities", d))?;
    }
    for (dim, &n) in counts.iter().enumerate() {
        let n = r.count2(n, 8, 20, "entities")?;
        for _ in 0..n {
            let tag = r.int("an entity tag")?;
            let coords = if dim == 0 { 3 } else { 6 };
            for _ in 0..coords {
                r.double("an entity's bounding box")?;
            }
            let np = r.size("an entity's number of physical tags")?;
            let np = r.count2(np, 2, 4, "physical tags")?;
            let mut phys = Vec::with_capacity(np);
            for _ in 0..np {
                phys.push(r.int("a physical tag")?);
            }
            if dim > 0 {
                let nb = r.size("an entity's number of bounding entities")?;
                let nb = r.count2(nb, 2, 4, "bounding entities")?;
                for _ in 0..nb {
                    r.int("a bounding entity tag")?;
                }
            }
            if !phys.is_empty() {
                st.entity_phys.insert((dim as i32, tag), phys);
            }
        }
    }
    r.expect_end("Entities")
}

fn read_nodes_41(r: &mut Reader, st: &mut State) -> Res<()> {
    let blocks = r.size("the number of node blocks")?;
    let total = r.size("the number of nodes")?;
    r.size("the smallest node tag")?;
    r.size("the largest node tag")?;
    let blocks = r.count2(blocks, 8, 20, "node blocks")?;
    let total = r.count2(total, 8, 32, "nodes")?;
    st.tags.reserve(total);
    st.x.reserve(total);
    st.y.reserve(total);
    st.z.reserve(total);
    for _ in 0..blocks {
        let dim = r.int("a node block's entity dimension")?;
        r.int("a node block's entity tag")?;
        let param = r.int("a node block's parametric flag")?;
        let n = r.size("the number of nodes in a block")?;
        let n = r.count2(n, 8, 32, "nodes in a block")?;
        if st.tags.len() + n > total {
            return Err(r.err(format!(
                "the node blocks hold more nodes than the {total} that $Nodes declares"
            )));
        }
        let extra = if param == 1 {
            dim.clamp(0, 3) as usize
        } else {
            0
        };
        let first = st.tags.len();
        for _ in 0..n {
            st.tags.push(r.size("a node tag")?);
        }
        for _ in 0..n {
            st.x.push(r.double("a node's x coordinate")?);
            st.y.push(r.double("a node's y coordinate")?);
            st.z.push(r.double("a node's z coordinate")?);
            for _ in 0..extra {
                r.double("a node's parametric coordinate")?;
            }
        }
        debug_assert_eq!(st.x.len(), first + n);
    }
    if st.tags.len() != total {
        return Err(r.err(format!(
            "$Nodes declares {total} nodes but its blocks hold {}",
            st.tags.len()
        )));
    }
    r.expect_end("Nodes")?;
    st.build_index(r)
}

fn read_nodes_22(r: &mut Reader, st: &mut State) -> Res<()> {
    // The count is ASCII even in binary files.
    let binary = r.binary;
    r.binary = false;
    let n = r.parse::<u64>("the number of nodes");
    r.binary = binary;
    let n = n?;
    if binary {
        r.rest_of_line();
    }
    let n = r.count2(n, 8, 28, "nodes")?;
    st.tags.reserve(n);
    st.x.reserve(n);
    st.y.reserve(n);
    st.z.reserve(n);
    for _ in 0..n {
        let tag = if binary {
            let t = r.int("a node number")?;
            u64::try_from(t).map_err(|_| r.err(format!("node number {t} is negative")))?
        } else {
            r.parse("a node number")?
        };
        st.tags.push(tag);
        st.x.push(r.double("a node's x coordinate")?);
        st.y.push(r.double("a node's y coordinate")?);
        st.z.push(r.double("a node's z coordinate")?);
    }
    r.expect_end("Nodes")?;
    st.build_index(r)
}

/// The node count of element type `etype`, or an error at the type.
fn element_nodes(r: &Reader, etype: i32) -> Res<usize> {
    nodes_of_type(etype).ok_or_else(|| {
        r.err(format!(
            "unknown element type {etype} (gmsh's element types are 1 to 31, 92 and 93)"
        ))
    })
}

fn read_elements_41(r: &mut Reader, st: &mut State) -> Res<()> {
    let blocks = r.size("the number of element blocks")?;
    let total = r.size("the number of elements")?;
    r.size("the smallest element tag")?;
    r.size("the largest element tag")?;
    let blocks = r.count2(blocks, 8, 20, "element blocks")?;
    let total = r.count2(total, 4, 16, "elements")?;
    let mut seen = 0usize;
    let mut nodes = Vec::with_capacity(9);
    for _ in 0..blocks {
        let dim = r.int("an element block's entity dimension")?;
        let entity = r.int("an element block's entity tag")?;
        let etype = r.int("an element type")?;
        let k = element_nodes(r, etype)?;
        let n = r.size("the number of elements in a block")?;
        let n = r.count2(n, 2 * (k + 1), 8 * (k + 1), "elements in a block")?;
        seen += n;
        if seen > total {
            return Err(r.err(format!(
                "the element blocks hold more elements than the {total} that $Elements declares"
            )));
        }
        let phys = st
            .entity_phys
            .get(&(dim, entity))
            .cloned()
            .unwrap_or_default();
        let names = st.names_of(dim, &phys);
        let wanted = matches!(etype, 1 | 8 | 10 | 16);
        for _ in 0..n {
            r.size("an element tag")?;
            nodes.clear();
            for _ in 0..k {
                let tag = r.size("an element's node tag")?;
                if wanted {
                    nodes.push((tag, r.loc()));
                }
            }
            st.element(r, etype, &nodes, &names)?;
        }
    }
    if seen != total {
        return Err(r.err(format!(
            "$Elements declares {total} elements but its blocks hold {seen}"
        )));
    }
    r.expect_end("Elements")
}

fn read_elements_22(r: &mut Reader, st: &mut State) -> Res<()> {
    let binary = r.binary;
    r.binary = false;
    let total = r.parse::<u64>("the number of elements");
    r.binary = binary;
    let total = total?;
    if binary {
        r.rest_of_line();
    }
    let total = r.count2(total, 8, 8, "elements")?;
    let mut nodes = Vec::with_capacity(9);
    let mut tags = Vec::new();
    let mut names_cache: HashMap<(i32, i32), Vec<String>> = HashMap::new();
    let mut read = 0usize;
    while read < total {
        // ASCII: one element per line; binary: blocks of one type.
        let (etype, count, ntags) = if binary {
            let t = r.int("an element type")?;
            let c = r.int("an element block's count")?;
            let g = r.int("an element block's number of tags")?;
            let c = usize::try_from(c)
                .ok()
                .filter(|&c| c > 0 && c <= total - read)
                .ok_or_else(|| {
                    r.err(format!(
                        "an element block declares {c} elements; {} remain of the {total} \
                         that $Elements declares",
                        total - read
                    ))
                })?;
            (t, c, g)
        } else {
            r.parse::<u64>("an element number")?;
            let t = r.parse::<i32>("an element type")?;
            let g = r.parse::<i32>("an element's number of tags")?;
            (t, 1, g)
        };
        let k = element_nodes(r, etype)?;
        let ntags = usize::try_from(ntags)
            .ok()
            .filter(|&g| g <= 64)
            .ok_or_else(|| r.err(format!("an element has {ntags} tags")))?;
        let wanted = matches!(etype, 1 | 8 | 10 | 16);
        for _ in 0..count {
            if binary {
                r.int("an element number")?;
            }
            tags.clear();
            for _ in 0..ntags {
                tags.push(r.int("an element tag")?);
            }
            nodes.clear();
            for _ in 0..k {
                let tag = if binary {
                    let t = r.int("an element's node number")?;
                    u64::try_from(t).map_err(|_| {
                        r.err(format!("an element refers to negative node number {t}"))
                    })?
                } else {
                    r.parse::<u64>("an element's node number")?
                };
                let loc = r.loc();
                if wanted {
                    nodes.push((tag, loc));
                }
            }
            let names = match tags.first() {
                Some(&p) if wanted && p != 0 => {
                    let dim = dim_of_type(etype);
                    names_cache
                        .entry((dim, p))
                        .or_insert_with(|| st.names_of(dim, &[p]))
                        .clone()
                }
                _ => Vec::new(),
            };
            st.element(r, etype, &nodes, &names)?;
        }
        read += count;
    }
    r.expect_end("Elements")
}

/// Parses a whole file.
fn parse(buf: &[u8], path: &Path) -> Res<ImportedMesh> {
    let mut r = Reader::new(buf, path);
    match r.token_opt() {
        None => {
            return Err(GmshError::new(
                path,
                "the file is empty; not a gmsh .msh file",
            ));
        }
        Some(b"$MeshFormat") => {}
        Some(t) => {
            return Err(r.err(format!(
                "not a gmsh .msh file: expected $MeshFormat at the start, found \"{}\"",
                show(t)
            )));
        }
    }
    let version = String::from_utf8_lossy(r.token("the format version")?).into_owned();
    let file_type: i32 = r.parse("the file type (0 = ASCII, 1 = binary)")?;
    let data_size: i32 = r.parse("the data size")?;
    let v4 = match version.as_str() {
        "4.1" => true,
        "2.2" | "2.1" | "2.0" | "2" => false,
        _ => {
            return Err(r.err(format!(
                "unsupported MSH format version {version}; quadflow reads versions 2.2 and \
                 4.1 (gmsh: Mesh.MshFileVersion = 4.1 or 2.2)"
            )));
        }
    };
    if !matches!(file_type, 0 | 1) {
        return Err(r.err(format!(
            "file type {file_type} is neither 0 (ASCII) nor 1 (binary)"
        )));
    }
    if data_size != 8 {
        return Err(r.err(format!(
            "data size {data_size} is not supported; quadflow reads files with 8-byte \
             size_t and double (data size 8)"
        )));
    }
    if file_type == 1 {
        r.rest_of_line();
        r.binary = true;
        let one = r.bytes::<4>("the binary format's endianness marker")?;
        if i32::from_le_bytes(one) == 1 {
            r.swap = false;
        } else if i32::from_be_bytes(one) == 1 {
            r.swap = true;
        } else {
            return Err(r.err(format!(
                "the binary endianness marker is {one:?}, not the integer 1 (corrupt file)"
            )));
        }
    }
    r.expect_end("MeshFormat")?;

    let mut st = State {
        v4,
        ..State::default()
    };
    while let Some(t) = r.token_opt() {
        let Some(name) = t.strip_prefix(b"$") else {
            return Err(r.err(format!(
                "expected a section header such as $Nodes or $Elements, found \"{}\"",
                show(t)
            )));
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if r.binary {
            // binary data starts right after the header's line
            r.rest_of_line();
        }
        match name.as_str() {
            "PhysicalNames" => read_physical_names(&mut r, &mut st)?,
            "Entities" if st.v4 => read_entities(&mut r, &mut st)?,
            "Nodes" => {
                if st.index.is_some() {
                    return Err(r.err("a second $Nodes section"));
                }
                if st.v4 {
                    read_nodes_41(&mut r, &mut st)?
                } else {
                    read_nodes_22(&mut r, &mut st)?
                }
            }
            "Elements" => {
                if st.index.is_none() {
                    return Err(r.err("$Elements comes before $Nodes"));
                }
                if st.have_elements {
                    return Err(r.err("a second $Elements section"));
                }
                st.have_elements = true;
                if st.v4 {
                    read_elements_41(&mut r, &mut st)?
                } else {
                    read_elements_22(&mut r, &mut st)?
                }
            }
            "MeshFormat" => return Err(r.err("a second $MeshFormat section")),
            n if n.starts_with("End") || n.is_empty() => {
                return Err(r.err(format!(
                    "unexpected \"${name}\" outside of the section it would close"
                )));
            }
            _ => r.skip_section(&name)?,
        }
    }
    if st.index.is_none() {
        return Err(r.truncated("the $Nodes section (the file has none)"));
    }
    if !st.have_elements {
        return Err(r.truncated("the $Elements section (the file has none)"));
    }
    finish(st, path)
}

/// Renumbers the nodes the quadrangles use and builds the result.
fn finish(st: State, path: &Path) -> Res<ImportedMesh> {
    if st.quads.is_empty() {
        let found = if st.ignored.is_empty() {
            "the file has no elements of other types either".to_string()
        } else {
            let parts: Vec<String> = st
                .ignored
                .iter()
                .map(|(t, n)| format!("{n} of {}", type_name(*t)))
                .collect();
            format!("the file has {}", parts.join(", "))
        };
        return Err(GmshError::new(path, format!("{NO_QUADS}; {found}")));
    }
    let n = st.tags.len();
    let mut new_of = vec![u32::MAX; n];
    for q in &st.quads {
        for &v in q {
            new_of[v as usize] = 0;
        }
    }
    let mut next = 0u32;
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut z0: Option<(f64, u64)> = None;
    for (i, slot) in new_of.iter_mut().enumerate() {
        if *slot == 0 {
            *slot = next;
            next += 1;
            x.push(st.x[i]);
            y.push(st.y[i]);
            let z = st.z[i];
            match z0 {
                None => z0 = Some((z, st.tags[i])),
                Some((z0, t0)) if z0 != z && z.is_finite() && z0.is_finite() => {
                    return Err(GmshError::new(
                        path,
                        format!(
                            "node tag {} has z = {z} but node tag {t0} has z = {z0}; quadflow \
                             solves 2D problems and needs a mesh in a plane z = constant",
                            st.tags[i]
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    let quad8 = st
        .quads
        .iter()
        .map(|q| q.map(|v| i64::from(new_of[v as usize])))
        .collect();
    let mut node_sets = BTreeMap::new();
    for (name, members) in st.sets {
        let mut v: Vec<u32> = members
            .into_iter()
            .map(|m| new_of[m as usize])
            .filter(|&m| m != u32::MAX)
            .collect();
        v.sort_unstable();
        v.dedup();
        if !v.is_empty() {
            node_sets.insert(name, v);
        }
    }
    Ok(ImportedMesh {
        raw: RawMesh { x, y, quad8 },
        node_sets,
        ignored_elements: st.ignored.values().sum(),
        dropped_nodes: n - next as usize,
    })
}

/// Reads a gmsh `.msh` file of format 2.2 or 4.1, ASCII or binary (see the
/// module documentation for what is taken from it).
///
/// # Errors
///
/// A [`GmshError`] naming the file, the place in it and the problem when
/// the file cannot be read, is not a `.msh` file, has an unsupported
/// version, is truncated, has sections that do not hold what their headers
/// declare, has an element referring to a node tag that `$Nodes` does not
/// define, or has no 8- or 9-node quadrangle.
pub fn read_msh(path: &Path) -> Result<ImportedMesh, GmshError> {
    let buf = std::fs::read(path).map_err(|e| GmshError::new(path, format!("cannot read: {e}")))?;
    parse(&buf, path)
}

/// Parses the bytes of a `.msh` file; `path` only names it in errors.
///
/// # Errors
///
/// As [`read_msh`].
pub fn parse_msh(bytes: &[u8], path: &Path) -> Result<ImportedMesh, GmshError> {
    parse(bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counts_of_types() {
        assert_eq!(nodes_of_type(16), Some(8));
        assert_eq!(nodes_of_type(10), Some(9));
        assert_eq!(nodes_of_type(8), Some(3));
        assert_eq!(nodes_of_type(15), Some(1));
        assert_eq!(nodes_of_type(0), None);
        assert_eq!(nodes_of_type(-3), None);
        assert_eq!(nodes_of_type(40), None);
    }
}
