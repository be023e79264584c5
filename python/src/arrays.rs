//! NumPy arrays in: the mesh arrays `(x, y, quad8)` checked for shape and
//! dtype (a wrong one is a `QuadflowError` naming the argument, never a
//! crash) and brought into the engine's types with at most one copy.
//!
//! - `x`, `y`: 1-D arrays of real numbers. A float64 array is copied once
//!   into the mesh (which owns its coordinates); other real dtypes are
//!   converted by NumPy first.
//! - `quad8`: an `(E, 8)` array of integers. An int64 array in C order is
//!   read in place (no copy); int32 is converted once; other integer dtypes
//!   are converted by NumPy first.
//!
//! Anything else that NumPy can turn into an array (lists) is accepted too.

use crate::error::quadflow_error;
use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

/// `obj` as a NumPy array (`numpy.asarray`), without a copy when it is one.
fn as_ndarray<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let np = obj.py().import("numpy")?;
    let a = np.call_method1("asarray", (obj,)).map_err(|e| {
        quadflow_error(format!(
            "{name} must be a NumPy array (or convertible to one): {e}"
        ))
    })?;
    a.cast_into::<PyUntypedArray>()
        .map_err(|_| quadflow_error(format!("{name} must be a NumPy array")))
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn dtype_name(a: &Bound<'_, PyUntypedArray>) -> String {
    a.dtype()
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `a.astype(dtype)` by NumPy (a conversion of a dtype the fast paths do
/// not read).
fn astype<'py>(a: &Bound<'py, PyUntypedArray>, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
    a.call_method1("astype", (dtype,))
}

/// A 1-D array of real numbers as `Vec<f64>` (node coordinates).
pub fn coordinates(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    let a = as_ndarray(name, obj)?;
    if a.ndim() != 1 {
        return Err(quadflow_error(format!(
            "{name} must be a 1-D array of node coordinates, got shape {}",
            shape_text(a.shape())
        )));
    }
    let kind = a.dtype().kind();
    if !matches!(kind, b'f' | b'i' | b'u') {
        return Err(quadflow_error(format!(
            "{name} must be an array of real numbers (float64), got dtype {}",
            dtype_name(&a)
        )));
    }
    let a64 = match a.cast::<PyArray1<f64>>() {
        Ok(f) => f.clone(),
        Err(_) => astype(&a, "float64")?
            .cast_into::<PyArray1<f64>>()
            .map_err(|_| quadflow_error(format!("{name}: cannot convert to float64")))?,
    };
    let r = a64
        .try_readonly()
        .map_err(|e| quadflow_error(format!("{name}: {e}")))?;
    Ok(match r.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => r.as_array().iter().copied().collect(),
    })
}

/// The connectivity, read in place (int64, C order) or converted once.
pub enum Connectivity<'py> {
    /// An int64 C-ordered array, borrowed.
    Borrowed(PyReadonlyArray2<'py, i64>),
    /// Converted.
    Owned(Vec<[i64; 8]>),
}

impl Connectivity<'_> {
    /// The elements, 8 node indices each.
    pub fn elements(&self) -> &[[i64; 8]] {
        match self {
            Connectivity::Owned(v) => v,
            Connectivity::Borrowed(r) => {
                let s = r.as_slice().expect("checked C-contiguous");
                // SAFETY: `[i64; 8]` has the size of 8 `i64` and their
                // alignment; the slice holds `8 * rows` values.
                unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<[i64; 8]>(), s.len() / 8) }
            }
        }
    }
}

/// An `(E, 8)` array of integers (0-based node indices of each element).
pub fn connectivity<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Connectivity<'py>> {
    let a = as_ndarray(name, obj)?;
    if a.ndim() != 2 || a.shape()[1] != 8 {
        return Err(quadflow_error(format!(
            "{name} must be an (elements, 8) array of node indices (Quad-8 connectivity), got shape {}",
            shape_text(a.shape())
        )));
    }
    let kind = a.dtype().kind();
    if !matches!(kind, b'i' | b'u') {
        return Err(quadflow_error(format!(
            "{name} must be an integer array (0-based node indices), got dtype {}; convert it with {name}.astype(numpy.int64)",
            dtype_name(&a)
        )));
    }
    let borrow = |e| quadflow_error(format!("{name}: {e}"));
    if let Ok(i) = a.cast::<PyArray2<i32>>() {
        let r = i.try_readonly().map_err(borrow)?;
        return Ok(Connectivity::Owned(
            r.as_array()
                .rows()
                .into_iter()
                .map(|row| std::array::from_fn(|k| i64::from(row[k])))
                .collect(),
        ));
    }
    let a64 = match a.cast::<PyArray2<i64>>() {
        Ok(i) if a.is_c_contiguous() => i.clone(),
        // other integer types (unsigned, 16-bit, other byte orders) and
        // non-contiguous int64: NumPy converts to int64 in C order (values
        // beyond int64, e.g. huge uint64, wrap and are refused as out of
        // range by the mesh check)
        _ => a
            .py()
            .import("numpy")?
            .call_method1("ascontiguousarray", (a.clone(), "int64"))?
            .cast_into::<PyArray2<i64>>()
            .map_err(|_| quadflow_error(format!("{name}: cannot convert to int64")))?,
    };
    Ok(Connectivity::Borrowed(a64.try_readonly().map_err(borrow)?))
}
