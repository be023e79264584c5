//! Reverse Cuthill-McKee ordering of the solver's rows.
//!
//! Mesh files often number nodes with no locality (corners first, then
//! mid-side nodes: the reference's y-tube has a median node-index span of
//! 120,000 inside one element). The CG matrix-vector product then reads
//! `p` and writes `q` all over memory. Renumbering the rows by RCM gives a
//! banded matrix whose accesses stay in cache; it changes nothing but the
//! order of summation in dot products (rounding).

use crate::sparse::SymCsr;

/// Adjacency (without the diagonal) of a symmetric matrix given by its
/// upper triangle: `(ptr, adj)`.
pub fn adjacency(a: &SymCsr) -> (Vec<u32>, Vec<u32>) {
    let n = a.n;
    let mut ptr = vec![0u32; n + 1];
    for i in 0..n {
        for k in a.rowptr[i] as usize + 1..a.rowptr[i + 1] as usize {
            ptr[i + 1] += 1;
            ptr[a.col[k] as usize + 1] += 1;
        }
    }
    for i in 0..n {
        ptr[i + 1] += ptr[i];
    }
    let mut fill = ptr.clone();
    let mut adj = vec![0u32; ptr[n] as usize];
    for i in 0..n {
        for k in a.rowptr[i] as usize + 1..a.rowptr[i + 1] as usize {
            let j = a.col[k] as usize;
            adj[fill[i] as usize] = j as u32;
            fill[i] += 1;
            adj[fill[j] as usize] = i as u32;
            fill[j] += 1;
        }
    }
    (ptr, adj)
}

/// Breadth-first search from `start` over unvisited nodes, neighbours in
/// increasing `(degree, index)`; appends the visit order to `order`.
/// Returns the last level's first node (a far node) and the number of
/// levels.
fn bfs(
    start: u32,
    ptr: &[u32],
    adj: &[u32],
    deg: &[u32],
    seen: &mut [bool],
    order: &mut Vec<u32>,
) -> (u32, usize) {
    let begin = order.len();
    seen[start as usize] = true;
    order.push(start);
    let mut head = begin;
    let mut levels = 0;
    let mut level_start = begin;
    let mut nb: Vec<(u32, u32)> = Vec::new();
    while head < order.len() {
        let level_end = order.len();
        levels += 1;
        level_start = head;
        while head < level_end {
            let v = order[head] as usize;
            head += 1;
            nb.clear();
            for &w in &adj[ptr[v] as usize..ptr[v + 1] as usize] {
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    nb.push((deg[w as usize], w));
                }
            }
            nb.sort_unstable();
            order.extend(nb.iter().map(|e| e.1));
        }
    }
    (order[level_start], levels)
}

/// RCM permutation: `perm[new] = old`. Per connected component (taken
/// from its lowest-degree, then lowest-index node), a pseudo-peripheral
/// start (up to four breadth-first searches, walking to a far node while
/// the depth grows), then the Cuthill-McKee order from it (neighbours by
/// increasing degree, then index), all reversed.
pub fn rcm(n: usize, ptr: &[u32], adj: &[u32]) -> Vec<u32> {
    let deg: Vec<u32> = (0..n).map(|v| ptr[v + 1] - ptr[v]).collect();
    // nodes by (degree, index): a counting sort
    let maxd = deg.iter().copied().max().unwrap_or(0) as usize;
    let mut at = vec![0usize; maxd + 2];
    for &d in &deg {
        at[d as usize + 1] += 1;
    }
    for d in 0..=maxd {
        at[d + 1] += at[d];
    }
    let mut by_degree = vec![0u32; n];
    for (v, &d) in deg.iter().enumerate() {
        by_degree[at[d as usize]] = v as u32;
        at[d as usize] += 1;
    }
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    let mut scratch_seen = vec![false; n];
    let mut scratch = Vec::new();
    for &s in &by_degree {
        if seen[s as usize] {
            continue;
        }
        // pseudo-peripheral start: walk to a far node while the depth
        // grows. When a search does not deepen, it started from the chosen
        // start: it is the component's order already (a search visits its
        // component only, the same way whatever else is marked).
        let mut start = s;
        let mut depth = 0;
        let mut done = false;
        for _ in 0..4 {
            scratch.clear();
            let (far, levels) = bfs(start, ptr, adj, &deg, &mut scratch_seen, &mut scratch);
            for &v in &scratch {
                scratch_seen[v as usize] = false;
            }
            if levels <= depth {
                done = true;
                break;
            }
            depth = levels;
            start = far;
        }
        if done {
            for &v in &scratch {
                seen[v as usize] = true;
            }
            order.extend_from_slice(&scratch);
        } else {
            bfs(start, ptr, adj, &deg, &mut seen, &mut order);
        }
    }
    order.reverse();
    order
}

/// The symmetric matrix renumbered: row `r` of the result is row
/// `perm[r]` of `a` (`inv[old] = new`). Columns stay sorted, diagonal first.
pub fn permute(a: &SymCsr, perm: &[u32], inv: &[u32]) -> SymCsr {
    let n = a.n;
    let mut cnt = vec![0u32; n + 1];
    for i in 0..n {
        for k in a.rowptr[i] as usize..a.rowptr[i + 1] as usize {
            let (p, q) = (inv[i], inv[a.col[k] as usize]);
            cnt[p.min(q) as usize + 1] += 1;
        }
    }
    for i in 0..n {
        cnt[i + 1] += cnt[i];
    }
    let mut fill = cnt.clone();
    let nnz = cnt[n] as usize;
    let mut col = vec![0u32; nnz];
    let mut val = vec![0.0; nnz];
    for r in 0..n {
        let i = perm[r] as usize;
        for k in a.rowptr[i] as usize..a.rowptr[i + 1] as usize {
            let (p, q) = (inv[i], inv[a.col[k] as usize]);
            let row = p.min(q) as usize;
            let f = fill[row] as usize;
            col[f] = p.max(q);
            val[f] = a.val[k];
            fill[row] += 1;
        }
    }
    let mut pairs: Vec<(u32, f64)> = Vec::new();
    for r in 0..n {
        let (s, e) = (cnt[r] as usize, cnt[r + 1] as usize);
        pairs.clear();
        pairs.extend(col[s..e].iter().copied().zip(val[s..e].iter().copied()));
        pairs.sort_unstable_by_key(|p| p.0);
        for (k, (c, v)) in pairs.iter().enumerate() {
            col[s + k] = *c;
            val[s + k] = *v;
        }
    }
    SymCsr {
        n,
        rowptr: cnt,
        col,
        val,
    }
}

/// Largest `|i - j|` over the stored entries.
pub fn bandwidth(a: &SymCsr) -> usize {
    (0..a.n)
        .map(|i| {
            let e = a.rowptr[i + 1] as usize;
            if e > a.rowptr[i] as usize {
                a.col[e - 1] as usize - i
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first implementation of [`rcm`]: what it must reproduce.
    fn rcm_reference(n: usize, ptr: &[u32], adj: &[u32]) -> Vec<u32> {
        fn bfs(
            s: u32,
            ptr: &[u32],
            adj: &[u32],
            seen: &mut [bool],
            o: &mut Vec<u32>,
        ) -> (u32, usize) {
            let deg = |v: u32| ptr[v as usize + 1] - ptr[v as usize];
            let begin = o.len();
            seen[s as usize] = true;
            o.push(s);
            let (mut head, mut levels, mut level_start) = (begin, 0, begin);
            let mut nb = Vec::new();
            while head < o.len() {
                let level_end = o.len();
                levels += 1;
                level_start = head;
                while head < level_end {
                    let v = o[head] as usize;
                    head += 1;
                    nb.clear();
                    for &w in &adj[ptr[v] as usize..ptr[v + 1] as usize] {
                        if !seen[w as usize] {
                            seen[w as usize] = true;
                            nb.push(w);
                        }
                    }
                    nb.sort_unstable_by_key(|&w| (deg(w), w));
                    o.extend_from_slice(&nb);
                }
            }
            (o[level_start], levels)
        }
        let deg = |v: usize| ptr[v + 1] - ptr[v];
        let (mut seen, mut order) = (vec![false; n], Vec::new());
        let (mut sseen, mut scratch) = (vec![false; n], Vec::new());
        let mut by: Vec<u32> = (0..n as u32).collect();
        by.sort_unstable_by_key(|&v| (deg(v as usize), v));
        for &s in &by {
            if seen[s as usize] {
                continue;
            }
            let (mut start, mut depth) = (s, 0);
            for _ in 0..4 {
                scratch.clear();
                let (far, levels) = bfs(start, ptr, adj, &mut sseen, &mut scratch);
                for &v in &scratch {
                    sseen[v as usize] = false;
                }
                if levels <= depth {
                    break;
                }
                depth = levels;
                start = far;
            }
            bfs(start, ptr, adj, &mut seen, &mut order);
        }
        order.reverse();
        order
    }

    #[test]
    fn rcm_reproduces_the_reference_order() {
        // scrambled grids of several shapes (long ones take all four
        // walks), several components, isolated nodes
        for (m, k, comps) in [(1, 60, 1), (7, 7, 1), (30, 4, 3), (3, 200, 2), (12, 12, 4)] {
            let per = m * k;
            let n = per * comps + 5;
            let num = |i: usize| ((i * 7919 + 13) % n) as u32;
            let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n];
            for c in 0..comps {
                for i in 0..per {
                    let (x, y) = (i % m, i / m);
                    let a = num(c * per + i);
                    let mut link = |j: usize| {
                        let b = num(c * per + j);
                        lists[a as usize].push(b);
                        lists[b as usize].push(a);
                    };
                    if x + 1 < m {
                        link(i + 1);
                    }
                    if y + 1 < k {
                        link(i + m);
                    }
                    if x + 1 < m && y + 1 < k && i % 3 == 0 {
                        link(i + m + 1);
                    }
                }
            }
            let mut ptr = vec![0u32];
            let mut adj = Vec::new();
            for l in &lists {
                adj.extend_from_slice(l);
                ptr.push(adj.len() as u32);
            }
            assert_eq!(
                rcm(n, &ptr, &adj),
                rcm_reference(n, &ptr, &adj),
                "{m} x {k} x {comps}"
            );
        }
    }

    #[test]
    fn rcm_shrinks_a_scrambled_path_and_permute_preserves_the_product() {
        // a path graph 0-1-2-...-n scrambled by a stride permutation
        let n = 101usize;
        let scr: Vec<usize> = (0..n).map(|i| (i * 37) % n).collect();
        let mut rows: Vec<Vec<(u32, f64)>> = vec![vec![]; n];
        for i in 0..n {
            rows[scr[i]].push((scr[i] as u32, 2.0 + i as f64));
            if i + 1 < n {
                let (a, b) = (scr[i].min(scr[i + 1]), scr[i].max(scr[i + 1]));
                rows[a].push((b as u32, -1.0 - i as f64 * 0.01));
            }
        }
        let mut a = SymCsr {
            n,
            rowptr: vec![0],
            ..Default::default()
        };
        for r in &mut rows {
            r.sort_by_key(|p| p.0);
            for &(c, v) in r.iter() {
                a.col.push(c);
                a.val.push(v);
            }
            a.rowptr.push(a.col.len() as u32);
        }
        assert!(bandwidth(&a) > 30);
        let (ptr, adj) = adjacency(&a);
        let perm = rcm(n, &ptr, &adj);
        let mut inv = vec![0u32; n];
        for (new, &old) in perm.iter().enumerate() {
            inv[old as usize] = new as u32;
        }
        let b = permute(&a, &perm, &inv);
        assert_eq!(bandwidth(&b), 1);
        let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).cos()).collect();
        let xp: Vec<f64> = perm.iter().map(|&o| x[o as usize]).collect();
        let (y, yp) = (a.mul(&x), b.mul(&xp));
        for r in 0..n {
            assert!((yp[r] - y[perm[r] as usize]).abs() < 1e-12);
        }
    }
}
