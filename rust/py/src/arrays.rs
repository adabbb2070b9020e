//! Numpy arrays out of the core's `Vec`s.

use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray2};
use pyo3::prelude::*;

/// A row-major `rows × cols` `Vec` as a numpy array, without copying it.
///
/// Every caller passes a `Vec` the core built with exactly `rows × cols` values, so the
/// shape always fits; a mismatch would be a bug in the core, hence a panic.
pub fn into_matrix<T: Element>(
    py: Python<'_>,
    rows: usize,
    cols: usize,
    values: Vec<T>,
) -> Bound<'_, PyArray2<T>> {
    Array2::from_shape_vec((rows, cols), values)
        .expect("the core returns rows × cols values")
        .into_pyarray(py)
}
