//! Mutators: bytes (flips, interesting values, truncation, insertion,
//! deletion, splices), text (numeric tokens, lines) and TOML structure
//! (keys deleted, replaced, added, entries duplicated).

use super::rng::Rng;

/// Byte values that often matter to parsers.
const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'\n', b' ', b'$', b'"', b'[', b'=', b'-',
];

/// One to a few byte-level edits of `data`.
pub fn bytes(rng: &mut Rng, data: &mut Vec<u8>) {
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let n = data.len();
        match rng.below(8) {
            // flip one bit
            0 | 1 if n > 0 => {
                let i = rng.below(n);
                data[i] ^= 1 << rng.below(8);
            }
            // an interesting byte
            2 if n > 0 => {
                let i = rng.below(n);
                data[i] = *rng.pick(INTERESTING);
            }
            // truncate
            3 if n > 0 => {
                let at = rng.below(n);
                data.truncate(at);
            }
            // insert random bytes
            4 => {
                let at = rng.below(n + 1);
                let k = 1 + rng.below(16);
                let ins: Vec<u8> = (0..k).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, ins);
            }
            // delete a range
            5 if n > 0 => {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(64)).min(n);
                data.drain(a..b);
            }
            // splice: copy a range over another place
            6 if n > 1 => {
                let a = rng.below(n);
                let len = 1 + rng.below(64.min(n - a));
                let chunk = data[a..a + len].to_vec();
                let to = rng.below(n);
                for (k, b) in chunk.into_iter().enumerate() {
                    if to + k < data.len() {
                        data[to + k] = b;
                    }
                }
            }
            // a 4- or 8-byte little-endian integer overwritten
            7 if n >= 8 => {
                let at = rng.below(n - 7);
                let v: u64 = *rng.pick(&[0, 1, u64::MAX, 1 << 31, 1 << 32, 0x7fff_ffff, 1 << 63]);
                let w = if rng.chance(0.5) { 4 } else { 8 };
                data[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            _ => {}
        }
    }
}

/// Replacements for a numeric token.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "8",
    "9",
    "16",
    "-0",
    "0.5",
    "1.5",
    "1e308",
    "-1e308",
    "1e-308",
    "1e999",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "4294967295",
    "4294967296",
    "2147483648",
    "-2147483649",
    "18446744073709551616",
    "99999999999999999999999",
    "0x10",
    "1e",
    "--1",
    "",
];

fn numeric(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'+' || c == b'e' || c == b'E'
}

/// Replaces one numeric token of `data` (a maximal run of digits, signs,
/// points and exponents that holds a digit) with a pool value.
pub fn number(rng: &mut Rng, data: &mut Vec<u8>) -> bool {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if numeric(data[i]) {
            let s = i;
            while i < data.len() && numeric(data[i]) {
                i += 1;
            }
            if data[s..i].iter().any(u8::is_ascii_digit) {
                tokens.push((s, i));
            }
        } else {
            i += 1;
        }
    }
    if tokens.is_empty() {
        return false;
    }
    let (a, b) = *rng.pick(&tokens);
    let new = if rng.chance(0.2) {
        // a nearby value
        let old = String::from_utf8_lossy(&data[a..b]).to_string();
        match old.parse::<i64>() {
            Ok(v) => (v + rng.below(5) as i64 - 2).to_string(),
            Err(_) => format!("{old}1"),
        }
    } else {
        rng.pick(NUMBERS).to_string()
    };
    data.splice(a..b, new.into_bytes());
    true
}

/// Deletes, duplicates or swaps lines.
pub fn lines(rng: &mut Rng, data: &mut Vec<u8>) {
    let mut ls: Vec<Vec<u8>> = data.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
    if ls.is_empty() {
        return;
    }
    let n = ls.len();
    match rng.below(3) {
        0 => {
            ls.remove(rng.below(n));
        }
        1 => {
            let i = rng.below(n);
            let l = ls[i].clone();
            ls.insert(rng.below(n + 1), l);
        }
        _ => {
            let (i, j) = (rng.below(n), rng.below(n));
            ls.swap(i, j);
        }
    }
    *data = ls.join(&b'\n');
}

/// A text mutation: mostly numeric tokens, then lines, then bytes.
pub fn text(rng: &mut Rng, data: &mut Vec<u8>) {
    let edits = 1 + rng.below(3);
    for _ in 0..edits {
        match rng.below(10) {
            0..=5 => {
                if !number(rng, data) {
                    bytes(rng, data);
                }
            }
            6 | 7 => lines(rng, data),
            _ => bytes(rng, data),
        }
    }
}

/// Scene keys by section, and values to try.
const KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "title", "mesh", "physics", "boundary", "solver", "backend", "parallel", "gpu",
            "output", "bogus",
        ],
    ),
    (
        "mesh",
        &[
            "file",
            "generate",
            "nodes",
            "orientation",
            "components",
            "extra",
        ],
    ),
    ("physics", &["p0", "rho", "source"]),
    ("boundary", &["tolerance", "penalty", "robin", "dirichlet"]),
    (
        "solver",
        &[
            "method",
            "rtol",
            "max_iterations",
            "allow_unconverged",
            "amg",
        ],
    ),
    (
        "amg",
        &[
            "theta",
            "strength",
            "smoother",
            "degree",
            "pre_sweeps",
            "post_sweeps",
            "max_coarse",
            "max_levels",
            "chebyshev_ratio",
        ],
    ),
    (
        "backend",
        &[
            "default",
            "quadrature",
            "assembly",
            "boundary",
            "solve",
            "post",
        ],
    ),
    ("parallel", &["threads", "assembly", "batch_size"]),
    ("gpu", &["strategy", "check_every", "device"]),
    ("robin", &["name", "select", "p", "gamma"]),
    ("dirichlet", &["name", "select", "value"]),
];

const STRINGS: &[&str] = &[
    "",
    "xmin",
    "xmax",
    "ymin",
    "ymax",
    "set:inlet",
    "set:outlet",
    "set:",
    "set:nope",
    "box:0,1,0,1",
    "box:1,0,0,1",
    "box:nan,1,0,1",
    "box:0,0,0",
    "serial",
    "parallel",
    "gpu",
    "mpi",
    "cg-jacobi",
    "amg-cg",
    "cholesky",
    "fix",
    "refuse",
    "warn",
    "venturi",
    "straight_channel",
    "t_junction",
    "blob",
    "direct-csr",
    "batched-coo",
    "custom",
    "vendor",
    "negative",
    "magnitude",
    "chebyshev",
    "jacobi",
    "m.h5",
    "m.msh",
    "missing.h5",
    "m.txt",
    ".",
    "sub/",
    "\u{0}",
    "é",
];

fn random_value(rng: &mut Rng, depth: usize) -> toml::Value {
    use toml::Value;
    match rng.below(if depth > 1 { 4 } else { 6 }) {
        0 => Value::String(rng.pick(STRINGS).to_string()),
        1 => Value::Integer(*rng.pick(&[
            0,
            1,
            -1,
            2,
            3,
            10,
            50,
            100,
            1000,
            1 << 31,
            i64::MAX,
            i64::MIN,
        ])),
        2 => Value::Float(*rng.pick(&[
            0.0,
            -0.0,
            1e-300,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.5,
            2.5,
            -1.0,
            1e-9,
            1e12,
        ])),
        3 => Value::Boolean(rng.chance(0.5)),
        4 => Value::Array(
            (0..rng.below(3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut t = toml::Table::new();
            for _ in 0..rng.below(3) {
                let (_, keys) = rng.pick(KEYS);
                t.insert(rng.pick(keys).to_string(), random_value(rng, depth + 1));
            }
            Value::Table(t)
        }
    }
}

/// The tables of `t` (itself, nested tables, tables in arrays), as paths.
fn tables(
    t: &toml::Table,
    path: Vec<(String, Option<usize>)>,
    out: &mut Vec<Vec<(String, Option<usize>)>>,
) {
    out.push(path.clone());
    for (k, v) in t {
        match v {
            toml::Value::Table(s) => {
                let mut p = path.clone();
                p.push((k.clone(), None));
                tables(s, p, out);
            }
            toml::Value::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    if let toml::Value::Table(s) = e {
                        let mut p = path.clone();
                        p.push((k.clone(), Some(i)));
                        tables(s, p, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn table_at<'a>(t: &'a mut toml::Table, path: &[(String, Option<usize>)]) -> &'a mut toml::Table {
    let mut cur = t;
    for (k, i) in path {
        let v = cur.get_mut(k).expect("path from tables()");
        cur = match (v, i) {
            (toml::Value::Table(s), None) => s,
            (toml::Value::Array(a), Some(i)) => match &mut a[*i] {
                toml::Value::Table(s) => s,
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
    }
    cur
}

/// One to a few structural edits of a TOML table.
pub fn toml_structure(rng: &mut Rng, t: &mut toml::Table) {
    let edits = 1 + rng.below(3);
    for _ in 0..edits {
        let mut paths = Vec::new();
        tables(t, Vec::new(), &mut paths);
        let path = rng.pick(&paths).clone();
        let name = path.last().map(|p| p.0.as_str()).unwrap_or("").to_string();
        let tab = table_at(t, &path);
        let keys: Vec<String> = tab.keys().cloned().collect();
        match rng.below(6) {
            // delete a key
            0 if !keys.is_empty() => {
                tab.remove(rng.pick(&keys));
            }
            // replace a value
            1 | 2 if !keys.is_empty() => {
                let k = rng.pick(&keys).clone();
                tab.insert(k, random_value(rng, 0));
            }
            // add a key this section knows (or any)
            3 => {
                let vocab = KEYS
                    .iter()
                    .find(|(s, _)| *s == name)
                    .map(|(_, k)| *k)
                    .unwrap_or(rng.pick(KEYS).1);
                tab.insert(rng.pick(vocab).to_string(), random_value(rng, 0));
            }
            // duplicate an array entry
            4 => {
                for (_, v) in tab.iter_mut() {
                    if let toml::Value::Array(a) = v
                        && !a.is_empty()
                    {
                        let e = a[rng.below(a.len())].clone();
                        a.push(e);
                        break;
                    }
                }
            }
            // scale a number
            _ if !keys.is_empty() => {
                let k = rng.pick(&keys).clone();
                match tab.get(&k) {
                    Some(toml::Value::Integer(v)) => {
                        let nv = v.saturating_mul(*rng.pick(&[-1, 0, 2, 10, 1000]));
                        tab.insert(k, toml::Value::Integer(nv));
                    }
                    Some(toml::Value::Float(v)) => {
                        let nv = v * rng.pick(&[-1.0, 0.0, 1e-6, 1e6, 1e300]);
                        tab.insert(k, toml::Value::Float(nv));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutators_are_deterministic_and_change_things() {
        let seed = b"$MeshFormat\n4.1 0 8\n$EndMeshFormat\n$Nodes\n1 2 1 2\n".to_vec();
        let (mut a, mut b) = (seed.clone(), seed.clone());
        text(&mut Rng::new(7), &mut a);
        text(&mut Rng::new(7), &mut b);
        assert_eq!(a, b);
        let changed = (0..50)
            .filter(|&s| {
                let mut c = seed.clone();
                text(&mut Rng::new(s), &mut c);
                c != seed
            })
            .count();
        assert!(changed > 40, "{changed}");
        let mut t: toml::Table =
            toml::from_str("[mesh]\nfile = 'm.h5'\n[[boundary.robin]]\nselect = 'xmin'\n").unwrap();
        let orig = t.clone();
        let changed = (0..50)
            .filter(|&s| {
                let mut c = orig.clone();
                toml_structure(&mut Rng::new(s), &mut c);
                c != orig
            })
            .count();
        assert!(changed > 30, "{changed}");
        t.clear();
    }
}
