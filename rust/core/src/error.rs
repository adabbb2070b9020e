//! The one error type of the core. Every variant names the offending argument so the
//! binding can turn it into a Python exception whose message a user can act on.

use thiserror::Error as ThisError;

#[derive(Debug, Clone, PartialEq, ThisError)]
pub enum Error {
    /// An array has the wrong shape or is empty.
    #[error("{arg}: {message}")]
    Shape { arg: &'static str, message: String },
    /// An array holds NaN (or an infinity where none is allowed).
    #[error("{arg}: non-finite value {value} at row {row}, column {col}")]
    NonFinite {
        arg: &'static str,
        row: usize,
        col: usize,
        value: f32,
    },
    /// A scalar knob is out of its range or unknown.
    #[error("{arg}: {message}")]
    Parameter { arg: &'static str, message: String },
    /// An argument is of the wrong type: float ids, a list where an array is needed. The
    /// core's typed API cannot receive one; the bindings, which take untyped objects, raise it.
    #[error("{arg}: {message}")]
    Type { arg: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// `Err(Parameter)` naming `arg` unless `value` is at least 1 (sizes of the search states).
pub(crate) fn require_at_least_one(arg: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::Parameter {
            arg,
            message: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// `Err(NonFinite)` naming `arg` at the first NaN or infinity of `values`; `position` maps
/// an index into `values` to the `(row, col)` the error reports.
pub(crate) fn require_finite(
    arg: &'static str,
    values: &[f32],
    position: impl Fn(usize) -> (usize, usize),
) -> Result<()> {
    match values.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let (row, col) = position(i);
            Err(Error::NonFinite {
                arg,
                row,
                col,
                value: values[i],
            })
        }
    }
}
