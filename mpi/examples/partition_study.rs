//! Partition-only scaling study (no solve): a generated venturi split into
//! 2..256 parts by RCB and METIS; per partition the edge cut, halo volume
//! per rank per CG iteration, neighbours, imbalance and the modelled time
//! per iteration (`quadflow_mpi::study`), as a Markdown table.
//!
//! ```text
//! cargo run --release -p quadflow-mpi --example partition_study -- \
//!     [--nodes 10000000] [--parts 2,4,8,...] [--methods rcb,metis] [--out FILE.md]
//! ```

use quadflow::generate::{self, Geometry};
use quadflow_mpi::partition::{Method, partition, quality};
use quadflow_mpi::study::{Machine, compute_bytes, model};
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use std::fmt::Write as _;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = arg(&args, "--nodes").map_or(10_000_000, |s| s.parse().expect("--nodes N"));
    let parts: Vec<usize> = arg(&args, "--parts")
        .unwrap_or("2,3,4,6,8,12,16,32,64,100,128,256")
        .split(',')
        .map(|s| s.parse().expect("--parts a,b,c"))
        .collect();
    let methods: Vec<Method> = arg(&args, "--methods")
        .unwrap_or("rcb,metis")
        .split(',')
        .map(|s| Method::parse(s).expect("--methods rcb,metis"))
        .collect();
    let mach = Machine::default();
    let t0 = Instant::now();
    let raw = generate::generate(Geometry::Venturi, nodes).expect("generate");
    let mesh =
        Mesh::new_with(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix, true).expect("mesh");
    let tgen = t0.elapsed().as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "venturi: {} nodes, {} elements (generated and validated in {tgen:.1} s)\n",
        mesh.nodes(),
        mesh.elements.len()
    );
    let q1 = quality(&mesh, &partition(&mesh, 1, Method::Rcb).expect("1 part"));
    let one = model(&q1, &mach);
    let _ = writeln!(
        out,
        "One rank: {} bytes per iteration, modelled {:.3} ms per iteration at {:.0} GB/s.\n",
        compute_bytes(q1.per_part[0].owned_nodes, q1.per_part[0].row_entries),
        one.total * 1e3,
        mach.mem_bw / 1e9
    );
    let _ = writeln!(
        out,
        "| method | P | partition s | edge cut % | imbalance nodes | imbalance elements | dup. elements % | max nbrs | halo/rank KiB mean | max | compute ms | halo ms | allreduce ms | modelled ms/it | speed-up | efficiency |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    print!("{out}");
    for &method in &methods {
        for &p in &parts {
            let t = Instant::now();
            let part = match partition(&mesh, p, method) {
                Ok(x) => x,
                Err(e) => {
                    let line = format!(
                        "| {} | {p} | failed: {e} | | | | | | | | | | | | | |\n",
                        method.name()
                    );
                    print!("{line}");
                    out.push_str(&line);
                    continue;
                }
            };
            let tp = t.elapsed().as_secs_f64();
            let q = quality(&mesh, &part);
            let m = model(&q, &mach);
            let line = format!(
                "| {} | {p} | {tp:.2} | {:.3} | {:.3} | {:.3} | {:.2} | {} | {:.1} | {:.1} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} | {:.2} |\n",
                method.name(),
                100.0 * q.edge_cut as f64 / q.edges as f64,
                q.node_imbalance(),
                q.element_imbalance(),
                100.0 * q.duplicated_elements() as f64 / mesh.elements.len() as f64,
                m.max_neighbours,
                m.mean_halo_bytes / 1024.0,
                m.max_halo_bytes as f64 / 1024.0,
                m.compute * 1e3,
                m.halo * 1e3,
                m.reductions * 1e3,
                m.total * 1e3,
                one.total / m.total,
                one.total / m.total / p as f64,
            );
            print!("{line}");
            out.push_str(&line);
        }
    }
    let _ = writeln!(
        out,
        "\npeak resident memory {:.0} MiB, total {:.0} s",
        peak_rss_mib(),
        t0.elapsed().as_secs_f64()
    );
    println!("peak resident memory {:.0} MiB", peak_rss_mib());
    if let Some(path) = arg(&args, "--out") {
        std::fs::write(path, out).expect("write --out");
    }
}
