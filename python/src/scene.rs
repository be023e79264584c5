//! The `scene` argument (a path, TOML text or a dict with the scene file's
//! keys) and the keyword overrides (`backend`, `solver`, `rtol`,
//! `threads`), applied as the command line applies its flags: an error
//! about a value set by a keyword names the keyword.

use crate::error::{quadflow_error, to_py};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyTuple};
use quadflow::scene::Scene;
use std::path::PathBuf;

/// Where a dict scene comes from, in messages.
const DICT_ORIGIN: &str = "<scene dict>";
/// Where a TOML-text scene comes from, in messages.
const TEXT_ORIGIN: &str = "<scene text>";

/// The scene of `scene`: `None` is the built-in default scene; a
/// `pathlib.Path` (or any `os.PathLike`) is a scene file; a `str` is a
/// scene file if it is one line ending in `.toml` or naming an existing
/// file, else TOML text; a `dict` holds the scene file's keys.
pub fn scene_of(scene: Option<&Bound<'_, PyAny>>) -> PyResult<Scene> {
    let Some(obj) = scene.filter(|o| !o.is_none()) else {
        return Ok(Scene::default_scene());
    };
    if let Ok(d) = obj.cast::<PyDict>() {
        let table = table_of(d, "")?;
        let text = toml::to_string(&table)
            .map_err(|e| quadflow_error(format!("scene {DICT_ORIGIN}: {e}")))?;
        return Scene::parse(&text, DICT_ORIGIN).map_err(to_py);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        let one_line = !s.contains('\n');
        if one_line && (s.trim_end().ends_with(".toml") || std::path::Path::new(&*s).is_file()) {
            return Scene::load(std::path::Path::new(&*s)).map_err(to_py);
        }
        return Scene::parse(&s, TEXT_ORIGIN).map_err(to_py);
    }
    if let Ok(p) = obj.extract::<PathBuf>() {
        return Scene::load(&p).map_err(to_py);
    }
    Err(quadflow_error(format!(
        "scene must be a path, TOML text or a dict, got {}",
        type_name(obj)
    )))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A dict as a TOML table (keys must be strings).
fn table_of(d: &Bound<'_, PyDict>, prefix: &str) -> PyResult<toml::Table> {
    let mut t = toml::Table::new();
    for (k, v) in d.iter() {
        let key: String = k.extract().map_err(|_| {
            quadflow_error(format!(
                "scene {DICT_ORIGIN}: keys must be strings, got {} in {}",
                type_name(&k),
                if prefix.is_empty() {
                    "the top level"
                } else {
                    prefix
                }
            ))
        })?;
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        t.insert(key, value_of(&v, &dotted)?);
    }
    Ok(t)
}

/// A Python value as a TOML value.
fn value_of(v: &Bound<'_, PyAny>, key: &str) -> PyResult<toml::Value> {
    use toml::Value;
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Boolean(b.is_true()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        return Ok(Value::Table(table_of(d, key)?));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items = v
            .try_iter()?
            .enumerate()
            .map(|(i, x)| value_of(&x?, &format!("{key}[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Value::Array(items));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(Value::Float(v.extract()?));
    }
    // Python and NumPy integers
    if let Ok(i) = v.extract::<i64>() {
        return Ok(Value::Integer(i));
    }
    // NumPy floats other than float64
    if let Ok(f) = v.extract::<f64>() {
        return Ok(Value::Float(f));
    }
    if let Ok(p) = v.extract::<PathBuf>() {
        return Ok(Value::String(p.display().to_string()));
    }
    Err(quadflow_error(format!(
        "scene {DICT_ORIGIN}: {key}: a value of type {} is not a scene value (use str, int, float, bool, list or dict{})",
        type_name(v),
        if v.is_none() {
            "; leave the key out for its default"
        } else {
            ""
        }
    )))
}

/// The keyword overrides of `solve` and `assemble`.
#[derive(Default)]
pub struct Overrides {
    /// `backend=`: every phase.
    pub backend: Option<String>,
    /// `solver=`: the solver method.
    pub solver: Option<String>,
    /// `rtol=`.
    pub rtol: Option<f64>,
    /// `threads=`: threads of the parallel backend.
    pub threads: Option<i64>,
    /// `max_iterations=`.
    pub max_iterations: Option<usize>,
}

impl Overrides {
    /// Applies the overrides to `scene`, each recorded so that an error
    /// about it names the keyword; then checks the scene.
    pub fn apply(&self, scene: &mut Scene) -> PyResult<()> {
        if let Some(b) = &self.backend {
            scene.set_backend(b);
            scene.set_by_flag("backend.default", format!("backend={b:?}"));
        }
        if let Some(s) = &self.solver {
            scene.solver.method = s.clone();
            scene.set_by_flag("solver.method", format!("solver={s:?}"));
        }
        if let Some(r) = self.rtol {
            scene.solver.rtol = r;
            scene.set_by_flag("solver.rtol", format!("rtol={r}"));
        }
        if let Some(n) = self.max_iterations {
            scene.solver.max_iterations = n;
            scene.set_by_flag("solver.max_iterations", format!("max_iterations={n}"));
        }
        if let Some(t) = self.threads {
            if t < 0 {
                return Err(quadflow_error(format!(
                    "threads={t}: must be 0 (one per core) or more"
                )));
            }
            scene
                .backends
                .entry("parallel".into())
                .or_default()
                .insert("threads".into(), toml::Value::Integer(t));
            scene.set_by_flag("parallel.threads", format!("threads={t}"));
        }
        scene.check().map_err(to_py)
    }
}

/// `scene` with the mesh replaced by the file `path` (absolute, so that the
/// scene's directory does not move it), as the command line's `--mesh`.
pub fn with_mesh_file(scene: &mut Scene, path: &std::path::Path) -> PyResult<()> {
    let abs = std::path::absolute(path)
        .map_err(|e| quadflow_error(format!("{}: {e}", path.display())))?;
    scene.mesh.file = Some(abs);
    scene.mesh.generate = None;
    scene.mesh.nodes = None;
    Ok(())
}
