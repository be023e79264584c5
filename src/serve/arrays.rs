//! The binary arrays of a finished job, as the page and other clients take
//! them: little-endian `Float32` coordinates and fields (or `Float64` for
//! exact values), `Uint32` connectivity, triangles and edges.

use crate::run::RunResult;

/// The triangles of one Quad-8 element through its mid-side nodes, as
/// local node numbers (corners 0-3, mid-sides 4-7, counter-clockwise): a
/// corner triangle at each corner and the inner quadrilateral of the
/// mid-side nodes in two.
pub const TRIANGLES: [[usize; 3]; 6] = [
    [0, 4, 7],
    [4, 1, 5],
    [5, 2, 6],
    [6, 3, 7],
    [4, 5, 6],
    [4, 6, 7],
];

/// The boundary of one element as 8 segments (local node numbers).
pub const EDGES: [[usize; 2]; 8] = [
    [0, 4],
    [4, 1],
    [1, 5],
    [5, 2],
    [2, 6],
    [6, 3],
    [3, 7],
    [7, 0],
];

/// The arrays a job offers, with their element type and what each holds.
pub const NAMES: &[(&str, &str, &str)] = &[
    ("coords", "f32", "x, y per node (2 values per node)"),
    ("quad8", "u32", "8 node numbers per element"),
    (
        "triangles",
        "u32",
        "3 node numbers per triangle, 6 triangles per element",
    ),
    (
        "edges",
        "u32",
        "2 node numbers per segment, 8 segments per element",
    ),
    ("u", "f32", "the potential per node (?dtype=f64: exact)"),
    ("vel", "f32", "vx, vy per element (?dtype=f64: exact)"),
    (
        "abs_vel",
        "f32",
        "the speed per element (?dtype=f64: exact)",
    ),
    (
        "pressure",
        "f32",
        "the pressure per element (?dtype=f64: exact)",
    ),
];

fn f32s(v: impl Iterator<Item = f64>, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * n);
    for x in v {
        out.extend_from_slice(&(x as f32).to_le_bytes());
    }
    out
}

fn f64s(v: impl Iterator<Item = f64>, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * n);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn u32s(v: impl Iterator<Item = u32>, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * n);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// The bytes of array `name` of `r`; `exact` gives fields as `Float64`.
/// `None` for an unknown name.
pub fn encode(r: &RunResult, name: &str, exact: bool) -> Option<Vec<u8>> {
    let m = &r.mesh;
    let field = |v: &[f64]| {
        if exact {
            f64s(v.iter().copied(), v.len())
        } else {
            f32s(v.iter().copied(), v.len())
        }
    };
    Some(match name {
        "coords" => f32s(
            m.x.iter().zip(&m.y).flat_map(|(&x, &y)| [x, y]),
            2 * m.nodes(),
        ),
        "quad8" => u32s(m.elements.iter().flatten().copied(), 8 * m.elements.len()),
        "triangles" => u32s(
            m.elements
                .iter()
                .flat_map(|e| TRIANGLES.iter().flat_map(move |t| t.map(|k| e[k]))),
            18 * m.elements.len(),
        ),
        "edges" => u32s(
            m.elements
                .iter()
                .flat_map(|e| EDGES.iter().flat_map(move |s| s.map(|k| e[k]))),
            16 * m.elements.len(),
        ),
        "u" => field(&r.solution.u),
        "vel" => {
            let flat: Vec<f64> = r.vel.iter().flat_map(|v| [v[0], v[1]]).collect();
            field(&flat)
        }
        "abs_vel" => field(&r.abs_vel),
        "pressure" => field(&r.pressure),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triangles_cover_the_element_counter_clockwise() {
        // the reference square [-1, 1]^2 with its mid-side nodes
        let p: [(f64, f64); 8] = [
            (-1.0, -1.0),
            (1.0, -1.0),
            (1.0, 1.0),
            (-1.0, 1.0),
            (0.0, -1.0),
            (1.0, 0.0),
            (0.0, 1.0),
            (-1.0, 0.0),
        ];
        let mut area = 0.0;
        for t in TRIANGLES {
            let [a, b, c] = t.map(|k| p[k]);
            let twice = (b.0 - a.0) * (c.1 - a.1) - (c.0 - a.0) * (b.1 - a.1);
            assert!(twice > 0.0, "{t:?} is clockwise");
            area += twice / 2.0;
        }
        assert!((area - 4.0).abs() < 1e-12);
        // the edges walk the boundary once
        let mut seen = [0; 8];
        for [a, b] in EDGES {
            seen[a] += 1;
            seen[b] += 1;
        }
        assert_eq!(seen, [2; 8]);
    }
}
