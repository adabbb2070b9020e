//! Pure-Rust decision kernels of rshape_fast.
//!
//! Everything here works on row-major `&[f32]` buffers with an explicit `(rows, cols)`
//! shape and never touches Python, so `cargo test` needs no interpreter.

pub mod beam;
pub mod best_of_n;
pub mod error;
mod rank;
pub mod rng;
pub mod sample;
pub mod select;
pub mod shaping;
pub mod topk;

pub use error::{Error, Result};
pub use sample::{sample_tokens, SampleParams};
pub use select::{fuse_and_select, Choice, FuseOptions, ProbSource, Seeds, Selection};
pub use shaping::{shape_rewards, stackelberg_threshold, PerRow, Scheme, ShapeParams, SCHEMES};
pub use topk::{topk, TopK};
