//! gmsh `.msh` meshes: a reader for MSH 2.2 and 4.1, ASCII and binary
//! ([`read_msh`]), and a writer of the same four variants ([`write_msh`]).
//!
//! What is read:
//! - 8-node quadrangles (gmsh element type 16) become Quad-8 elements as
//!   they are: gmsh numbers them corners 1-4 counter-clockwise, then the
//!   mid-side nodes of edges 1-2, 2-3, 3-4, 4-1, which is the local order of
//!   `docs/numerics.md`.
//! - 9-node quadrangles (type 10) become Quad-8 elements by dropping the
//!   centre node (their ninth), which quadflow has no use for.
//! - Line elements (types 1 and 8) and the quadrangles themselves give node
//!   sets: every node of an element whose physical group has a name (in
//!   `$PhysicalNames`) goes into the node set of that name. Boundary
//!   selectors refer to them as `set:NAME`.
//! - Every other element type (points, triangles, 4-node quadrangles, ...)
//!   is skipped and counted in [`ImportedMesh::ignored_elements`]; a file
//!   without any 8- or 9-node quadrangle is an error.
//!
//! Node tags need not be contiguous nor start at 1: the nodes the
//! quadrangles use are renumbered densely from 0, in file order, and every
//! other node (a quad-9's centre, a node only some ignored element uses) is
//! dropped, node sets included.
//!
//! No malformed file makes the reader panic: each problem is a [`GmshError`]
//! naming the file, the line (ASCII files) or byte offset (binary files),
//! and what is wrong. Counts read from the file are checked against the
//! bytes left before anything is allocated for them.

mod format;
mod reader;
mod writer;

pub use format::*;
pub use reader::{parse_msh, read_msh};
pub use writer::{MshWritten, write_msh};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn p() -> &'static Path {
        Path::new("t.msh")
    }

    /// One Quad-8 element [0,1]^2 with nodes tagged 10.. in MSH 2.2.
    const ONE_22: &str = "$MeshFormat\n2.2 0 8\n$EndMeshFormat\n\
        $PhysicalNames\n1\n1 7 \"left side\"\n$EndPhysicalNames\n\
        $Nodes\n8\n10 0 0 0\n11 1 0 0\n12 1 1 0\n13 0 1 0\n14 0.5 0 0\n15 1 0.5 0\n\
        16 0.5 1 0\n17 0 0.5 0\n$EndNodes\n\
        $Elements\n3\n1 16 2 1 1 10 11 12 13 14 15 16 17\n2 8 2 7 2 13 10 17\n3 15 2 0 1 10\n\
        $EndElements\n";

    #[test]
    fn minimal_22() {
        let m = parse_msh(ONE_22.as_bytes(), p()).unwrap();
        assert_eq!(m.raw.quad8, vec![[0, 1, 2, 3, 4, 5, 6, 7]]);
        assert_eq!(m.raw.x[5], 1.0);
        assert_eq!(m.node_sets["left side"], vec![0, 3, 7]);
        assert_eq!(m.ignored_elements, 1);
        assert_eq!(m.dropped_nodes, 0);
    }

    #[test]
    fn errors_have_lines() {
        let bad = ONE_22.replace("2 13 10 17", "2 13 10 99");
        let e = parse_msh(bad.as_bytes(), p()).unwrap_err();
        assert_eq!(e.location, Some(Location::Line(22)), "{e}");
        assert!(e.message.contains("node tag 99"), "{e}");

        let e = parse_msh(&ONE_22.as_bytes()[..200], p()).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");

        let bad = ONE_22.replace("2.2 0 8", "3.0 0 8");
        let e = parse_msh(bad.as_bytes(), p()).unwrap_err();
        assert!(
            e.message.contains("unsupported MSH format version 3.0"),
            "{e}"
        );
        assert_eq!(e.location, Some(Location::Line(2)));

        let bad = ONE_22
            .replace("1 16 2 1 1", "1 2 2 1 1")
            .replace(" 13 14 15 16 17\n2", "\n2");
        let e = parse_msh(bad.as_bytes(), p()).unwrap_err();
        assert!(e.message.starts_with(NO_QUADS), "{e}");
        assert!(e.message.contains("1 of type 2, 3-node triangle"), "{e}");

        let e = parse_msh(b"hello world", p()).unwrap_err();
        assert!(e.message.contains("not a gmsh .msh file"), "{e}");
        let e = parse_msh(b"", p()).unwrap_err();
        assert!(e.message.contains("empty"), "{e}");

        let bad = ONE_22.replace("$EndNodes", "17 0 0 0\n$EndNodes");
        let e = parse_msh(bad.as_bytes(), p()).unwrap_err();
        assert!(e.message.contains("expected $EndNodes"), "{e}");
    }

    #[test]
    fn extreme_node_tags() {
        let text = ONE_22
            .replace("\n10 0 0 0", "\n18446744073709551615 0 0 0")
            .replace("1 16 2 1 1 10 ", "1 16 2 1 1 18446744073709551615 ");
        // 2.2 node numbers are read as u64 in ASCII: a sparse index
        let e = parse_msh(text.as_bytes(), p()).unwrap_err();
        assert!(e.message.contains("node tag 10,"), "{e}");
        let text = ONE_22
            .replace("\n10 0 0 0", "\n0 0 0 0")
            .replace(" 13 10 17", " 13 0 17");
        let text = text.replace("1 16 2 1 1 10 ", "1 16 2 1 1 0 ");
        let m = parse_msh(text.as_bytes(), p()).unwrap();
        assert_eq!(m.raw.quad8.len(), 1);
    }
}
