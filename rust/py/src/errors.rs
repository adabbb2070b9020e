//! The single point where core errors become Python exceptions.
//!
//! The exception classes live in `rshape_fast.errors` (one definition, shared with the
//! pure-Python layers); they are looked up once and cached.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use rshape_core::Error;

static SHAPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NON_FINITE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PARAMETER: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "rshape_fast.errors", name)
}

/// Raise the `rshape_fast.errors` class that matches a core error.
pub fn to_pyerr(err: Error) -> PyErr {
    Python::attach(|py| {
        let (cell, name) = match &err {
            Error::Shape { .. } => (&SHAPE, "ShapeError"),
            Error::NonFinite { .. } => (&NON_FINITE, "NonFiniteError"),
            Error::Parameter { .. } => (&PARAMETER, "ParameterError"),
        };
        match class(py, cell, name) {
            Ok(cls) => PyErr::from_type(cls.clone(), err.to_string()),
            // Only reachable if the Python package is broken; still a clear ValueError.
            Err(_) => PyValueError::new_err(err.to_string()),
        }
    })
}

/// A `ParameterError` raised from the binding itself (argument parsing, unknown names).
pub fn parameter(arg: &'static str, message: impl Into<String>) -> PyErr {
    to_pyerr(Error::Parameter {
        arg,
        message: message.into(),
    })
}

/// A `ShapeError` raised from the binding itself (array dimensions checked before the core).
pub fn shape(arg: &'static str, message: impl Into<String>) -> PyErr {
    to_pyerr(Error::Shape {
        arg,
        message: message.into(),
    })
}
