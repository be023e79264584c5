//! The CUDA C sources of the backend (`kernels/` at the repository root,
//! embedded with `include_str!`), the generated basis tables they read,
//! the NVRTC options, and the names of the kernels.

use crate::element::{BASIS4, BASIS9, NODES, QP, QP_POST, gauss3};
use std::fmt::Write;

/// Every kernel file: `(file name, text)`. `common.cuh` comes first in
/// every module; the others are grouped into modules ([`ModuleSpec`]).
pub const SOURCES: [(&str, &str); 13] = [
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    (
        "quadrature.cu",
        include_str!("../../../kernels/quadrature.cu"),
    ),
    ("pattern.cu", include_str!("../../../kernels/pattern.cu")),
    ("scan.cu", include_str!("../../../kernels/scan.cu")),
    ("assemble.cu", include_str!("../../../kernels/assemble.cu")),
    ("boundary.cu", include_str!("../../../kernels/boundary.cu")),
    (
        "equilibrate.cu",
        include_str!("../../../kernels/equilibrate.cu"),
    ),
    ("cg.cu", include_str!("../../../kernels/cg.cu")),
    (
        "cg_persistent.cu",
        include_str!("../../../kernels/cg_persistent.cu"),
    ),
    ("residual.cu", include_str!("../../../kernels/residual.cu")),
    ("post.cu", include_str!("../../../kernels/post.cu")),
    ("amg.cu", include_str!("../../../kernels/amg.cu")),
    (
        "amg_setup.cu",
        include_str!("../../../kernels/amg_setup.cu"),
    ),
];

/// Thread-group sizes for which the SpMV kernels are instantiated
/// (`qf_cg_spmv_g{G}`, `qf_cg_spmv16_g{G}`, `qf_cg_spmvd_g{G}`,
/// `qf_cg_spmvd16_g{G}`, and the AMG row kernels).
pub const SPMV_GROUPS: [u32; 5] = [2, 4, 8, 16, 32];

/// Thread-group sizes of the persistent CG kernel
/// (`qf_cg_persistent_g{G}`, `qf_cg_persistent16_g{G}`).
pub const PERSISTENT_GROUPS: [u32; 3] = [4, 8, 16];

/// The AMG kernels instantiated for every group size of [`SPMV_GROUPS`]
/// (`amg.cu`; the name gets `_g{G}`).
pub const AMG_GROUP_KERNELS: [&str; 5] = [
    "qf_amg_compute_start",
    "qf_amg_step",
    "qf_amg_last",
    "qf_amg_spmv",
    "qf_amg_pq",
];

/// One NVRTC program: `common.cuh` and some kernel files, compiled,
/// cached and loaded as a unit, and only when a run needs it
/// (`gpu::compile`).
#[derive(Debug, Clone, Copy)]
pub struct ModuleSpec {
    /// Name (in reports and cache file names).
    pub name: &'static str,
    /// Kernel files after `common.cuh`, in order.
    pub files: &'static [&'static str],
    /// Its kernels (the names the host loads).
    pub kernels: fn() -> Vec<String>,
}

impl PartialEq for ModuleSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ModuleSpec {}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn grouped(base: &[&str], groups: &[u32]) -> Vec<String> {
    let mut v = Vec::new();
    for g in groups {
        for k in base {
            v.push(format!("{k}_g{g}"));
        }
    }
    v
}

/// The modules: mesh phases; the scan; the solve's common kernels;
/// the Jacobi-CG launches; the persistent Jacobi-CG; the AMG cycle and
/// CG; the AMG setup.
pub mod module {
    use super::*;

    /// Quadrature and the element matrices (the largest piece of
    /// arithmetic: a module of its own, so it compiles alongside the
    /// rest).
    pub const ELEMENTS: ModuleSpec = ModuleSpec {
        name: "elements",
        files: &["quadrature.cu", "assemble.cu"],
        kernels: || names(&["qf_quadrature", "qf_assemble_rows", "qf_assemble"]),
    };
    /// Pattern, boundary, post-processing.
    pub const MESH: ModuleSpec = ModuleSpec {
        name: "mesh",
        files: &["pattern.cu", "boundary.cu", "post.cu"],
        kernels: || {
            names(&[
                "qf_node_degree",
                "qf_node_fill",
                "qf_node_sort",
                "qf_row_count",
                "qf_row_fill",
                "qf_robin_rows",
                "qf_robin",
                "qf_penalty",
                "qf_post",
            ])
        },
    };
    /// The exclusive scan (pattern, AMG setup).
    pub const SCAN: ModuleSpec = ModuleSpec {
        name: "scan",
        files: &["scan.cu"],
        kernels: || names(&["qf_scan_tiles", "qf_scan_tops", "qf_scan_add"]),
    };
    /// Equilibration, un-scaling, the true residual, the Jacobi-CG loops'
    /// residual replacement and restart (every solve).
    pub const SOLVE: ModuleSpec = ModuleSpec {
        name: "solve",
        files: &["equilibrate.cu", "residual.cu"],
        kernels: || {
            names(&[
                "qf_eq_diag",
                "qf_eq_scale_init",
                "qf_unscale",
                "qf_residual",
                "qf_eq_residual",
                "qf_cg_fold",
                "qf_cg_restart",
            ])
        },
    };
    /// The Jacobi-CG iteration's kernels (launched one by one or captured
    /// as a graph).
    pub const CG: ModuleSpec = ModuleSpec {
        name: "cg",
        files: &["cg.cu"],
        kernels: || {
            let mut v = names(&["qf_cg_direction", "qf_cg_update", "qf_cg_delta_cols"]);
            v.extend(grouped(
                &["qf_cg_spmv", "qf_cg_spmv16", "qf_cg_spmvd", "qf_cg_spmvd16"],
                &SPMV_GROUPS,
            ));
            v
        },
    };
    /// The Jacobi-CG iteration as one persistent cooperative kernel.
    pub const PERSISTENT: ModuleSpec = ModuleSpec {
        name: "cg_persistent",
        files: &["cg_persistent.cu"],
        kernels: || {
            grouped(
                &["qf_cg_persistent", "qf_cg_persistent16"],
                &PERSISTENT_GROUPS,
            )
        },
    };
    /// AMG V-cycle and CG.
    pub const AMG: ModuleSpec = ModuleSpec {
        name: "amg",
        files: &["amg.cu"],
        kernels: || {
            let mut v = names(&[
                "qf_amg_zero_start",
                "qf_amg_resid",
                "qf_amg_residual_start",
                "qf_amg_zero_copy",
                "qf_amg_add",
                "qf_amg_dense",
                "qf_amg_update",
                "qf_amg_dot",
                "qf_amg_direction",
                "qf_amg_unscale",
            ]);
            v.extend(grouped(&AMG_GROUP_KERNELS, &SPMV_GROUPS));
            v
        },
    };
    /// The AMG hierarchy built on the device.
    pub const AMG_SETUP: ModuleSpec = ModuleSpec {
        name: "amg_setup",
        files: &["amg_setup.cu"],
        kernels: || {
            super::AMG_SETUP_KERNELS
                .iter()
                .map(|s| s.to_string())
                .collect()
        },
    };
    /// Every module.
    pub const ALL: [ModuleSpec; 8] = [ELEMENTS, MESH, SCAN, SOLVE, CG, PERSISTENT, AMG, AMG_SETUP];
}

/// The kernels of `amg_setup.cu`.
pub const AMG_SETUP_KERNELS: [&str; 25] = [
    "qf_as_diag",
    "qf_as_compact",
    "qf_as_fill",
    "qf_as_sys_norms",
    "qf_as_inv_diag",
    "qf_as_strength_count",
    "qf_as_strength_fill",
    "qf_as_mis_init",
    "qf_as_mis_max",
    "qf_as_mis_update",
    "qf_as_roots",
    "qf_as_agg_attach",
    "qf_as_transpose_count",
    "qf_as_transpose_fill",
    "qf_as_sort_rows",
    "qf_as_agg_norms",
    "qf_as_tentative",
    "qf_as_prolong_count",
    "qf_as_prolong_fill",
    "qf_as_spgemm_count_c64",
    "qf_as_spgemm_fill_c64",
    "qf_as_spgemm_count_c1024",
    "qf_as_spgemm_fill_c1024",
    "qf_as_to_f32",
    "qf_as_lanczos",
];

/// Slots of the device `flags` buffer (mirrors `QF_FLAG_*` in
/// `common.cuh`).
pub mod flag {
    /// CG loop over.
    pub const STOP: usize = 0;
    /// CG breakdown iteration + 1.
    pub const BREAKDOWN: usize = 1;
    /// Smallest row with a zero diagonal.
    pub const ZERO_DIAG: usize = 2;
    /// A non-finite value in the system.
    pub const NONFINITE: usize = 3;
    /// Smallest degenerate element.
    pub const BAD_ELEMENT: usize = 4;
    /// A pair missing from the pattern.
    pub const MISSING: usize = 5;
    /// CG: the iteration whose top the next kernel is at.
    pub const ITER: usize = 6;
    /// CG: the iteration of the last (re)start.
    pub const RESTART: usize = 7;
    /// Length of the buffer.
    pub const LEN: usize = 8;
}

/// Slots of the CG control buffer (mirrors `QF_CTL_*` in `common.cuh`).
pub mod ctl {
    /// The stopping threshold `target ||b||`.
    pub const ATOL: usize = 0;
    /// Length of the buffer.
    pub const LEN: usize = 2;
}

/// Doubles per iteration in the CG history ring (`QF_HIST`).
pub const HIST: usize = 4;

/// Every kernel of every module.
pub fn kernel_names() -> Vec<String> {
    module::ALL.iter().flat_map(|m| (m.kernels)()).collect()
}

fn push_array(out: &mut String, decl: &str, vals: &[f64]) {
    write!(out, "__constant__ double {decl} = {{").unwrap();
    for (k, v) in vals.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        // `{:e}` prints the shortest decimal that reads back to the same
        // double, in a form C accepts.
        write!(out, "{v:e}").unwrap();
    }
    out.push_str("};\n");
}

/// The reference-basis tables as CUDA `__constant__` arrays, tabulated by
/// the host ([`BASIS9`], [`BASIS4`], [`gauss3`]) so that the device uses the
/// very same numbers as the serial kernels.
pub fn basis_header() -> String {
    let b9 = &*BASIS9;
    let b4 = &*BASIS4;
    let (g3p, g3w) = gauss3();
    let mut s = String::from("// generated by quadflow-systems gpu::kernels::basis_header\n");
    push_array(&mut s, &format!("QF_W9[{QP}]"), &b9.weights);
    let n9: Vec<f64> = b9.n.iter().flatten().copied().collect();
    push_array(&mut s, &format!("QF_N9[{QP}][{NODES}]"), &n9);
    let dn9: Vec<f64> = b9.dn.iter().flatten().flatten().copied().collect();
    push_array(&mut s, &format!("QF_DN9[{QP}][{NODES}][2]"), &dn9);
    let dn4: Vec<f64> = b4.dn.iter().flatten().flatten().copied().collect();
    push_array(&mut s, &format!("QF_DN4[{QP_POST}][{NODES}][2]"), &dn4);
    push_array(&mut s, "QF_G3P[3]", &g3p);
    push_array(&mut s, "QF_G3W[3]", &g3w);
    s
}

/// The NVRTC program of one module: basis tables, `common.cuh`, then the
/// module's files in order, each preceded by a `#line` directive so
/// compiler messages name the file.
pub fn module_program(m: &ModuleSpec) -> String {
    let mut s = basis_header();
    let text = |name: &str| {
        SOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("kernel file {name} not in SOURCES"))
    };
    for name in std::iter::once("common.cuh").chain(m.files.iter().copied()) {
        writeln!(s, "#line 1 \"{name}\"").unwrap();
        s.push_str(text(name));
        s.push('\n');
    }
    s
}

/// Every module's program, concatenated (for tests that look for a
/// kernel in the sources).
pub fn program() -> String {
    module::ALL.iter().map(module_program).collect()
}

/// The virtual architecture name NVRTC compiles for, from the device's
/// compute capability (`(9, 0)` gives `sm_90`).
pub fn arch_name(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (6, 0) => "sm_60",
        (6, 1) => "sm_61",
        (7, 0) => "sm_70",
        (7, 2) => "sm_72",
        (7, 5) => "sm_75",
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 7) => "sm_87",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90",
        (10, 0) => "sm_100",
        (10, 3) => "sm_103",
        (11, 0) => "sm_110",
        (12, 0) => "sm_120",
        (12, 1) => "sm_121",
        // An architecture newer than this table: named the same way. The
        // string lives as long as the process (one per new architecture).
        _ => Box::leak(format!("sm_{major}{minor}").into_boxed_str()),
    }
}

/// Extra NVRTC options (besides the architecture). Part of the cache key.
pub fn compile_options() -> Vec<String> {
    vec!["--std=c++17".to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_array(header: &str, name: &str) -> Vec<f64> {
        let line = header
            .lines()
            .find(|l| l.contains(&format!(" {name}[")))
            .unwrap();
        let body = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
        body.split(',').map(|t| t.trim().parse().unwrap()).collect()
    }

    #[test]
    fn basis_tables_read_back_bit_for_bit() {
        let h = basis_header();
        let dn9 = parse_array(&h, "QF_DN9");
        assert_eq!(dn9.len(), QP * NODES * 2);
        for q in 0..QP {
            for i in 0..NODES {
                for c in 0..2 {
                    assert_eq!(dn9[(q * NODES + i) * 2 + c], BASIS9.dn[q][i][c]);
                }
            }
        }
        let w = parse_array(&h, "QF_W9");
        assert_eq!(w, BASIS9.weights.to_vec());
        let n9 = parse_array(&h, "QF_N9");
        assert_eq!(n9[NODES + 3], BASIS9.n[1][3]);
        let dn4 = parse_array(&h, "QF_DN4");
        assert_eq!(dn4[(3 * NODES + 7) * 2 + 1], BASIS4.dn[3][7][1]);
        assert_eq!(parse_array(&h, "QF_G3P"), gauss3().0.to_vec());
    }

    #[test]
    fn program_holds_every_kernel_and_flag_layout_matches() {
        let p = program();
        for name in kernel_names() {
            let base = name.trim_end_matches(char::is_numeric);
            assert!(p.contains(base), "{name}");
        }
        for g in SPMV_GROUPS {
            assert!(p.contains(&format!("QF_SPMV({g})")));
            assert!(p.contains(&format!("QF_AMG_GROUP({g})")));
        }
        for k in AMG_GROUP_KERNELS {
            assert!(p.contains(&format!("void {k}_g##G(")), "{k}");
        }
        for (k, name) in [
            (flag::STOP, "QF_FLAG_STOP"),
            (flag::BREAKDOWN, "QF_FLAG_BREAKDOWN"),
            (flag::ZERO_DIAG, "QF_FLAG_ZERO_DIAG"),
            (flag::NONFINITE, "QF_FLAG_NONFINITE"),
            (flag::BAD_ELEMENT, "QF_FLAG_BAD_ELEMENT"),
            (flag::MISSING, "QF_FLAG_MISSING"),
            (flag::ITER, "QF_FLAG_ITER"),
            (flag::RESTART, "QF_FLAG_RESTART"),
            (flag::LEN, "QF_FLAGS"),
            (ctl::ATOL, "QF_CTL_ATOL"),
            (ctl::LEN, "QF_CTL"),
            (HIST, "QF_HIST"),
        ] {
            assert!(p.contains(&format!("#define {name} {k}")), "{name}");
        }
        assert_eq!(arch_name(9, 0), "sm_90");
        assert_eq!(arch_name(13, 5), "sm_135");
    }
}
