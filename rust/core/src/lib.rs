//! Pure-Rust decision kernels of rshape_fast.
//!
//! Everything here works on row-major `&[f32]` buffers with an explicit `(rows, cols)`
//! shape and never touches Python, so `cargo test` needs no interpreter.

pub mod beam;
pub mod best_of_n;
pub mod error;

pub use error::{Error, Result};
