//! Mesh file I/O timings for `benches/io_vs_h5py.py`, which runs this next to
//! h5py on the same files and writes the comparison table. Each command
//! prints one JSON object per line; times are measured inside the process
//! (no start-up), in seconds, one per repeat.
//!
//! ```text
//! cargo bench --bench h5_io -- generate GEOMETRY NODES OUT.h5 gzip|contiguous
//! cargo bench --bench h5_io -- load FILE.h5 REPEATS
//! cargo bench --bench h5_io -- write IN.h5 OUT.h5 gzip|contiguous REPEATS
//! ```
//!
//! `load` is `quadflow run`'s load phase ([`quadflow::run::load_mesh`] of a
//! scene on the parallel backend: read the file with its node sets, then
//! validate it with `Mesh::new_with` on all cores), with the read alone ([`h5io::read_mesh_with_sets`]) timed
//! separately. `write` is [`h5io::write_mesh_with_sets`] (int32 connectivity,
//! the node sets of IN), which syncs the file to disk before renaming it
//! into place.

use std::path::Path;
use std::time::Instant;

use quadflow::cli::mesh::inlet_outlet_sets;
use quadflow::generate::{self, Geometry};
use quadflow::io::h5::{self as h5io, MeshLayout};
use quadflow::run::load_mesh;
use quadflow::scene::Scene;

fn layout(name: &str) -> MeshLayout {
    MeshLayout::parse(name).unwrap_or_else(|| panic!("layout {name}: {}", MeshLayout::NAMES))
}

fn json_times(times: &[f64]) -> String {
    let items: Vec<String> = times.iter().map(|t| format!("{t:.6}")).collect();
    format!("[{}]", items.join(", "))
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["generate", geometry, nodes, out, lay] => {
            let g = Geometry::parse(geometry).expect("geometry");
            let raw = generate::generate(g, nodes.parse().expect("nodes")).expect("generate");
            let sets = inlet_outlet_sets(&raw);
            h5io::write_mesh_with_sets(Path::new(out), &raw, &sets, false, layout(lay))
                .expect("write");
            println!(
                "{{\"op\": \"generate\", \"nodes\": {}, \"elements\": {}}}",
                raw.x.len(),
                raw.quad8.len()
            );
        }
        ["load", file, repeats] => {
            let path = std::fs::canonicalize(file).expect("mesh file");
            let plan = Scene::parse(
                &format!(
                    "[mesh]\nfile = {:?}\n[backend]\ndefault = \"parallel\"\n",
                    path.display().to_string()
                ),
                "<bench>",
            )
            .expect("scene")
            .plan()
            .expect("plan");
            let (mut read, mut load) = (Vec::new(), Vec::new());
            for _ in 0..repeats.parse().expect("repeats") {
                let t = Instant::now();
                let m = h5io::read_mesh_with_sets(&path).expect("read");
                read.push(t.elapsed().as_secs_f64());
                drop(m);
                let loaded = load_mesh(&plan).expect("load");
                load.push(loaded.seconds);
            }
            println!(
                "{{\"op\": \"load\", \"threads\": {}, \"read\": {}, \"load\": {}}}",
                rayon::current_num_threads(),
                json_times(&read),
                json_times(&load)
            );
        }
        ["write", input, out, lay, repeats] => {
            let (raw, sets) = h5io::read_mesh_with_sets(Path::new(input)).expect("read");
            let lay = layout(lay);
            let mut write = Vec::new();
            for _ in 0..repeats.parse().expect("repeats") {
                let t = Instant::now();
                h5io::write_mesh_with_sets(Path::new(out), &raw, &sets, false, lay).expect("write");
                write.push(t.elapsed().as_secs_f64());
            }
            println!(
                "{{\"op\": \"write\", \"threads\": {}, \"write\": {}}}",
                rayon::current_num_threads(),
                json_times(&write)
            );
        }
        _ => {
            eprintln!(
                "usage: h5_io generate GEOMETRY NODES OUT.h5 LAYOUT | load FILE REPEATS | \
                 write IN OUT LAYOUT REPEATS"
            );
            std::process::exit(2);
        }
    }
}
