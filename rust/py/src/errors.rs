//! The single point where errors become Python exceptions.
//!
//! Every binding returns [`Result`]: `?` lifts a core error (`rshape_core::Error`) or an
//! error Python raised on the way (a numpy call, say) into [`Error`], and PyO3 turns that
//! into a `PyErr` through the one `From<Error> for PyErr` below. Errors the binding finds
//! itself are core errors too (the helpers [`parameter`], [`shape`] and [`wrong_type`]),
//! so they go through the same conversion.
//!
//! The exception classes live in `rshape_fast.errors` (one definition, shared with the
//! pure-Python layers); they are looked up once and cached.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use rshape_core::Error as CoreError;

/// An error of a binding call. (The core's error type cannot itself convert into `PyErr`:
/// the orphan rule forbids implementing one foreign trait for another crate's type here.)
pub enum Error {
    /// Raised as the `rshape_fast.errors` class of its variant.
    Core(CoreError),
    /// Already a Python exception; raised as it is.
    Python(PyErr),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<CoreError> for Error {
    fn from(err: CoreError) -> Self {
        Error::Core(err)
    }
}

impl From<PyErr> for Error {
    fn from(err: PyErr) -> Self {
        Error::Python(err)
    }
}

impl<'a, 'py> From<pyo3::CastError<'a, 'py>> for Error {
    fn from(err: pyo3::CastError<'a, 'py>) -> Self {
        Error::Python(err.into())
    }
}

impl<'py> From<pyo3::CastIntoError<'py>> for Error {
    fn from(err: pyo3::CastIntoError<'py>) -> Self {
        Error::Python(err.into())
    }
}

impl From<numpy::AsSliceError> for Error {
    fn from(err: numpy::AsSliceError) -> Self {
        Error::Python(err.into())
    }
}

static SHAPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NON_FINITE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PARAMETER: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INPUT_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        let err = match err {
            Error::Core(err) => err,
            Error::Python(err) => return err,
        };
        Python::attach(|py| {
            let (cell, name) = match &err {
                CoreError::Shape { .. } => (&SHAPE, "ShapeError"),
                CoreError::NonFinite { .. } => (&NON_FINITE, "NonFiniteError"),
                CoreError::Parameter { .. } => (&PARAMETER, "ParameterError"),
                CoreError::Type { .. } => (&INPUT_TYPE, "InputTypeError"),
            };
            match cell.import(py, "rshape_fast.errors", name) {
                Ok(cls) => PyErr::from_type(cls.clone(), err.to_string()),
                // Only reachable if the Python package is broken; still a clear ValueError.
                Err(_) => PyValueError::new_err(err.to_string()),
            }
        })
    }
}

/// A `ParameterError` found by the binding itself (argument parsing, unknown names).
pub fn parameter(arg: &'static str, message: impl Into<String>) -> Error {
    Error::Core(CoreError::Parameter {
        arg,
        message: message.into(),
    })
}

/// A `ShapeError` found by the binding itself (array dimensions checked before the core).
pub fn shape(arg: &'static str, message: impl Into<String>) -> Error {
    Error::Core(CoreError::Shape {
        arg,
        message: message.into(),
    })
}

/// An `InputTypeError` found by the binding itself (an argument of the wrong type or dtype).
pub fn wrong_type(arg: &'static str, message: impl Into<String>) -> Error {
    Error::Core(CoreError::Type {
        arg,
        message: message.into(),
    })
}
