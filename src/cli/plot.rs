//! `quadflow plot RESULTS.h5 [--field u|abs_vel|pressure] -o FILE.png [--mesh MESH]`:
//! a PNG of one field of a results file.

use std::path::PathBuf;
use std::time::Instant;

use quadflow_systems::mesh::{Mesh, OrientationPolicy};

use crate::error::AppError;
use crate::io;
use crate::io::h5::{self, Attr};
use crate::run;
use crate::scene::{MeshSource, Scene};
use crate::viz::plot::{self, Field, PlotOptions};

/// `quadflow plot`: a PNG of one field of a results file.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// Results file (HDF5) written by `quadflow run`.
    pub results: PathBuf,
    /// Field to draw: u, abs_vel or pressure.
    #[arg(long, default_value = "u")]
    pub field: String,
    /// Output PNG file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Mesh file the results belong to (default: the mesh the results file
    /// carries, else the mesh file the run read, whose absolute path the
    /// results file records, or the mesh its stored scene generated, made
    /// again).
    #[arg(long)]
    pub mesh: Option<PathBuf>,
    /// Width in pixels.
    #[arg(long, default_value_t = 1600)]
    pub width: u32,
    /// Height in pixels.
    #[arg(long, default_value_t = 700)]
    pub height: u32,
}

fn attr_str<'a>(attrs: &'a [(String, Attr)], name: &str) -> Option<&'a str> {
    attrs.iter().find_map(|(k, v)| match v {
        Attr::Str(s) if k == name => Some(s.as_str()),
        _ => None,
    })
}

/// Runs `quadflow plot`, returning what to print.
///
/// The mesh is `--mesh` when given, else the mesh the results file
/// carries (`xy` and `quad8`), else the mesh of the scene stored in the
/// results file (attribute `scene`): generated again, or read from the
/// file named by the attribute `mesh_source` (the path the run resolved).
///
/// # Errors
///
/// An unknown field, an unreadable results or mesh file, a results file
/// without a scene and no `--mesh`, a mesh whose sizes do not match the
/// results, or a failure to draw or write.
pub fn plot_command(a: &PlotArgs) -> Result<String, AppError> {
    let field = Field::parse(&a.field).ok_or_else(|| {
        AppError::Other(format!(
            "--field {}: choose u, abs_vel or pressure",
            a.field
        ))
    })?;
    let res = h5::read_results(&a.results)?;
    let source = attr_str(&res.attrs, "mesh_source");
    let (mesh, origin) = match &a.mesh {
        Some(p) => {
            let (raw, _) = io::read_any_mesh(p)?;
            let origin = p.display().to_string();
            let mesh =
                Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).map_err(|source| {
                    AppError::Mesh {
                        origin: origin.clone(),
                        source,
                    }
                })?;
            (mesh, origin)
        }
        None if h5::read_results_mesh(&a.results)?.is_some() => {
            // the results carry their mesh (a distributed run's, or one
            // with an XDMF index)
            let (x, y, q) = h5::read_results_mesh(&a.results)?.expect("a mesh");
            let origin = a.results.display().to_string();
            let mesh =
                Mesh::new(x, y, &q, OrientationPolicy::Fix).map_err(|source| AppError::Mesh {
                    origin: origin.clone(),
                    source,
                })?;
            (mesh, origin)
        }
        None => {
            let text = attr_str(&res.attrs, "scene").ok_or_else(|| {
                AppError::Other(format!(
                    "{}: the results file has no \"scene\" attribute to re-create the mesh \
                     from; give the mesh with --mesh FILE",
                    a.results.display()
                ))
            })?;
            let hint = |what: String| {
                AppError::Other(format!(
                    "{}: {what}; give the mesh with --mesh FILE",
                    a.results.display()
                ))
            };
            let mut scene = Scene::parse(text, "<results>")
                .map_err(|e| hint(format!("its stored scene does not parse ({e})")))?;
            let from_scene = scene
                .mesh_source()
                .map_err(|e| hint(format!("its stored scene names no mesh ({e})")))?;
            if let MeshSource::File(f) = from_scene {
                // the path the run read (absolute since results record
                // it so; older files may hold one relative to the run's
                // directory)
                let file = source.map(PathBuf::from).unwrap_or(f);
                if !file.is_file() {
                    return Err(hint(format!(
                        "the mesh the results were computed on, {}, is not there{}",
                        file.display(),
                        if file.is_relative() {
                            " (a path relative to the directory of the run)"
                        } else {
                            ""
                        }
                    )));
                }
                scene.mesh.file = Some(file);
            }
            // the mesh alone is needed: validated on all cores, whatever
            // backend the run used
            scene.set_backend("parallel");
            let plan = scene
                .plan()
                .map_err(|e| hint(format!("its stored scene does not resolve ({e})")))?;
            let loaded = run::load_mesh(&plan)?;
            let mesh = std::sync::Arc::unwrap_or_clone(loaded.mesh);
            (mesh, loaded.origin)
        }
    };
    if res.u.len() != mesh.nodes() || res.vel.len() != mesh.elements.len() {
        return Err(AppError::Other(format!(
            "{}: the results have {} nodes and {} elements but the mesh ({origin}) has {} and \
             {}; give the right mesh with --mesh FILE",
            a.results.display(),
            res.u.len(),
            res.vel.len(),
            mesh.nodes(),
            mesh.elements.len()
        )));
    }
    let values = match field {
        Field::U => &res.u,
        Field::AbsVel => &res.abs_vel,
        Field::Pressure => &res.pressure,
    };
    let backend = attr_str(&res.attrs, "backend").unwrap_or("unknown");
    let name = plot::mesh_name(source.unwrap_or(&origin));
    let opts = PlotOptions {
        width: a.width,
        height: a.height,
        title: plot::title(&name, field, backend),
        mesh_lines: None,
    };
    let t = Instant::now();
    plot::plot_png(&a.out, &mesh, values, field, &opts)?;
    Ok(format!(
        "wrote     {} ({} x {} px, {}) in {:.3} s\n",
        a.out.display(),
        a.width,
        a.height,
        field.name(),
        t.elapsed().as_secs_f64()
    ))
}
