//! `rshape_fast._core`: thin PyO3 wrappers over `rshape-core`.
//!
//! Each wrapper checks shapes, hands plain slices to the core with the GIL released, and
//! returns numpy arrays built from the core's `Vec`s without a copy.

use pyo3::prelude::*;

mod arrays;
mod errors;
mod kernels;
mod search_state;
mod shape_params;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    shape_params::register(m)?;
    kernels::register(m)?;
    search_state::register(m)?;
    Ok(())
}
