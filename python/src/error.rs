//! `quadflow.QuadflowError`: every failure of the package, a `ValueError`
//! with the command line's message.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    quadflow,
    QuadflowError,
    PyValueError,
    "A quadflow failure: bad input (arrays, mesh files, scenes), a backend that cannot run, a solver that fails. A ValueError; the message is the command line's."
);

/// A `QuadflowError` with `message`.
pub fn quadflow_error(message: impl Into<String>) -> PyErr {
    QuadflowError::new_err(message.into())
}

/// Any displayable error of the app crate as a `QuadflowError`.
pub fn to_py<E: std::fmt::Display>(e: E) -> PyErr {
    quadflow_error(e.to_string())
}
