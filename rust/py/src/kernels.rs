//! The per-step kernels: `topk`, `stackelberg_threshold`, `shape_rewards`,
//! `fuse_and_select`, `sample_tokens`, and the `SCHEMES` tuple (the core's names).
//!
//! Arrays arrive as C-contiguous float32 (the Python wrappers in `rshape_fast.shaping`
//! coerce once); here they are checked for dimensions, borrowed as slices, and handed to
//! the core with the GIL released. Results go back to numpy as the core's own `Vec`s.

use numpy::prelude::*;
use numpy::{PyArray1, PyArray2, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rshape_core::{Choice, FuseOptions, PerRow, ProbSource, SampleParams, Scheme, Seeds, SCHEMES};

use crate::arrays::into_matrix;
use crate::errors::{parameter, shape, wrong_type, Result};
use crate::shape_params::ShapeParams;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SCHEMES", PyTuple::new(m.py(), SCHEMES)?)?;
    m.add_function(wrap_pyfunction!(topk, m)?)?;
    m.add_function(wrap_pyfunction!(stackelberg_threshold, m)?)?;
    m.add_function(wrap_pyfunction!(shape_rewards, m)?)?;
    m.add_function(wrap_pyfunction!(fuse_and_select, m)?)?;
    m.add_function(wrap_pyfunction!(sample_tokens, m)?)?;
    Ok(())
}

/// `(values, indices)` of `topk`.
type TopKArrays<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);
/// `(chosen, fused)` of `fuse_and_select`.
type SelectionArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray2<f32>>);

/// A borrowed `rows × cols` float32 matrix.
struct Matrix<'py> {
    array: PyReadonlyArrayDyn<'py, f32>,
    arg: &'static str,
    rows: usize,
    cols: usize,
}

impl Matrix<'_> {
    fn slice(&self) -> Result<&[f32]> {
        self.array
            .as_slice()
            .map_err(|_| shape(self.arg, "must be C-contiguous"))
    }
}

/// Borrow a 2-D C-contiguous float32 array. The public wrappers have already turned 1-D
/// input into one row, so the message speaks of what the user may pass.
fn matrix<'py>(obj: &Bound<'py, PyAny>, arg: &'static str) -> Result<Matrix<'py>> {
    let array = obj.cast::<PyArrayDyn<f32>>().map_err(|_| {
        wrong_type(
            arg,
            "expected a float32 numpy array (the rshape_fast wrappers convert with \
             numpy.ascontiguousarray(x, numpy.float32))",
        )
    })?;
    if array.ndim() != 2 {
        return Err(shape(
            arg,
            format!("expected a 1-D or 2-D array, got shape {:?}", array.shape()),
        ));
    }
    if !array.is_c_contiguous() {
        return Err(shape(arg, "must be C-contiguous"));
    }
    let (rows, cols) = (array.shape()[0], array.shape()[1]);
    let array = array
        .try_readonly()
        .map_err(|e| shape(arg, format!("cannot be borrowed: {e}")))?;
    Ok(Matrix {
        array,
        arg,
        rows,
        cols,
    })
}

/// A matrix that must have the shape of `like`.
fn matrix_like<'py>(
    obj: &Bound<'py, PyAny>,
    arg: &'static str,
    like: &Matrix<'_>,
    like_arg: &str,
) -> Result<Matrix<'py>> {
    let m = matrix(obj, arg)?;
    if (m.rows, m.cols) != (like.rows, like.cols) {
        return Err(shape(
            arg,
            format!(
                "must have the shape of {like_arg} ({}, {}), got ({}, {})",
                like.rows, like.cols, m.rows, m.cols
            ),
        ));
    }
    Ok(m)
}

/// An optional matrix that must have the shape of `like`.
fn optional_like<'py>(
    obj: Option<&Bound<'py, PyAny>>,
    arg: &'static str,
    like: &Matrix<'_>,
    like_arg: &str,
) -> Result<Option<Matrix<'py>>> {
    obj.map(|obj| matrix_like(obj, arg, like, like_arg))
        .transpose()
}

/// A knob given for every row: a float, or a 1-D float64 array of one value per row.
enum Knob<'py> {
    All(f64),
    Each(PyReadonlyArrayDyn<'py, f64>),
}

impl Knob<'_> {
    fn per_row(&self) -> Result<PerRow<'_>> {
        Ok(match self {
            Knob::All(value) => PerRow::All(*value),
            Knob::Each(array) => PerRow::Each(
                array
                    .as_slice()
                    .map_err(|_| shape("weight", "must be C-contiguous"))?,
            ),
        })
    }
}

fn knob<'py>(obj: &Bound<'py, PyAny>, arg: &'static str) -> Result<Knob<'py>> {
    if let Ok(array) = obj.cast::<PyArrayDyn<f64>>() {
        return match array.ndim() {
            0 | 1 if array.is_c_contiguous() => {
                let array = array
                    .try_readonly()
                    .map_err(|e| shape(arg, format!("cannot be borrowed: {e}")))?;
                if array.ndim() == 0 {
                    let value = array
                        .as_slice()
                        .map_err(|_| shape(arg, "must be C-contiguous"))?[0];
                    Ok(Knob::All(value))
                } else {
                    Ok(Knob::Each(array))
                }
            }
            0 | 1 => Err(shape(arg, "must be C-contiguous")),
            _ => Err(shape(
                arg,
                format!(
                    "expected a float or a 1-D array of one value per row, got shape {:?}",
                    array.shape()
                ),
            )),
        };
    }
    obj.extract::<f64>().map(Knob::All).map_err(|_| {
        parameter(
            arg,
            "expected a float or a 1-D float64 array of one value per row",
        )
    })
}

/// The owned form of the `seed` argument.
enum SeedArg {
    Fresh,
    One(u64),
    PerRow(Vec<u64>),
}

impl SeedArg {
    fn seeds(&self) -> Seeds<'_> {
        match self {
            SeedArg::Fresh => Seeds::Fresh,
            SeedArg::One(seed) => Seeds::One(*seed),
            SeedArg::PerRow(seeds) => Seeds::PerRow(seeds),
        }
    }
}

const SEED_RULE: &str =
    "expected None, an int in [0, 2**64), or a 1-D integer array of one seed per row";

/// The values of a 1-D integer array of seeds.
fn seed_vector<T: numpy::Element>(array: &Bound<'_, PyArrayDyn<T>>) -> Result<Vec<T>> {
    if array.ndim() != 1 {
        return Err(shape("seed", SEED_RULE));
    }
    array
        .to_vec()
        .map_err(|e| shape("seed", format!("cannot be read: {e}")))
}

fn seed_arg(obj: Option<&Bound<'_, PyAny>>) -> Result<SeedArg> {
    let Some(obj) = obj else {
        return Ok(SeedArg::Fresh);
    };
    if let Ok(array) = obj.cast::<PyArrayDyn<u64>>() {
        return Ok(SeedArg::PerRow(seed_vector(array)?));
    }
    if let Ok(array) = obj.cast::<PyArrayDyn<i64>>() {
        let seeds = seed_vector(array)?
            .into_iter()
            .map(u64::try_from)
            .collect::<std::result::Result<Vec<u64>, _>>()
            .map_err(|_| parameter("seed", format!("{SEED_RULE}; got a negative seed")))?;
        return Ok(SeedArg::PerRow(seeds));
    }
    if obj.is_instance_of::<numpy::PyUntypedArray>() {
        return Err(parameter("seed", SEED_RULE));
    }
    obj.extract::<u64>()
        .map(SeedArg::One)
        .map_err(|_| parameter("seed", SEED_RULE))
}

/// The knobs of `params=`: a `ShapeParams`, or the core's defaults for None.
fn params_arg(obj: Option<&Bound<'_, PyAny>>) -> Result<rshape_core::ShapeParams> {
    let Some(obj) = obj else {
        return Ok(rshape_core::ShapeParams::default());
    };
    let params = obj.cast::<ShapeParams>().map_err(|_| {
        wrong_type(
            "params",
            "expected a rshape_fast.ShapeParams or None (build one with \
             ShapeParams(bound=..., beta=...))",
        )
    })?;
    Ok(params.get().inner)
}

/// Top-k of every row of a float32 `[B, V]` matrix.
///
/// Returns `(values float32 [B, k], indices int64 [B, k])`, each row sorted descending,
/// equal values by the lower index. `-inf` is allowed, NaN raises NonFiniteError.
#[pyfunction]
#[pyo3(signature = (logits, k))]
fn topk<'py>(py: Python<'py>, logits: &Bound<'py, PyAny>, k: i64) -> Result<TopKArrays<'py>> {
    let logits = matrix(logits, "logits")?;
    let (rows, cols) = (logits.rows, logits.cols);
    // The core checks the range; a negative k has no usize, so it is refused here, in the
    // core's words.
    let k = usize::try_from(k).map_err(|_| {
        parameter(
            "k",
            format!("must be between 1 and the row length {cols}, got {k}"),
        )
    })?;
    let data = logits.slice()?;
    let result = py.detach(|| rshape_core::topk(data, rows, cols, k))?;
    Ok((
        into_matrix(py, rows, k, result.values),
        into_matrix(py, rows, k, result.indices),
    ))
}

/// The exact Stackelberg threshold `m*` of every row of float32 rewards `[B, n]`.
///
/// `probs` (same shape, >= 0, renormalised per row) default to uniform; `gamma` is the
/// weight γ >= 1 of rewards at or above the threshold, a float or a float64 array `[B]`.
#[pyfunction]
#[pyo3(signature = (rewards, probs=None, *, gamma))]
fn stackelberg_threshold<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    probs: Option<&Bound<'py, PyAny>>,
    gamma: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyArray1<f64>>> {
    let rewards = matrix(rewards, "rewards")?;
    let probs = optional_like(probs, "probs", &rewards, "rewards")?;
    let gamma = knob(gamma, "gamma")?;
    let (rows, cols) = (rewards.rows, rewards.cols);
    let data = rewards.slice()?;
    let probs = probs.as_ref().map(Matrix::slice).transpose()?;
    let gamma = gamma.per_row()?;
    let out = py.detach(|| rshape_core::stackelberg_threshold(data, probs, rows, cols, gamma))?;
    Ok(PyArray1::from_vec(py, out))
}

/// Shape every row of float32 rewards `[B, n]` with the scheme `shaping` (one of
/// `SCHEMES`) and the knobs of `params` (a `ShapeParams`; None is `ShapeParams()`).
#[pyfunction]
#[pyo3(signature = (rewards, *, shaping, probs=None, params=None))]
fn shape_rewards<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    shaping: &str,
    probs: Option<&Bound<'py, PyAny>>,
    params: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyArray2<f32>>> {
    let scheme = Scheme::parse(shaping)?;
    let params = params_arg(params)?;
    let rewards = matrix(rewards, "rewards")?;
    let probs = optional_like(probs, "probs", &rewards, "rewards")?;
    let (rows, cols) = (rewards.rows, rewards.cols);
    let data = rewards.slice()?;
    let probs = probs.as_ref().map(Matrix::slice).transpose()?;
    let out = py.detach(|| rshape_core::shape_rewards(data, probs, rows, cols, scheme, &params))?;
    Ok(into_matrix(py, rows, cols, out))
}

/// Shape, fuse (`base + weight * shaped`) and pick one candidate per row, all rows at once;
/// a sampled row draws from softmax(fused / temperature) cut to `top_k` and `top_p`.
///
/// Returns `(chosen int64 [B], fused float32 [B, k])`.
#[pyfunction]
#[pyo3(signature = (
    base_scores, rewards, *, weight, shaping="srs", probs=None, probs_from_base=true,
    greedy=true, temperature=1.0, seed=None, params=None, top_k=None, top_p=None
))]
#[allow(clippy::too_many_arguments)]
fn fuse_and_select<'py>(
    py: Python<'py>,
    base_scores: &Bound<'py, PyAny>,
    rewards: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    shaping: &str,
    probs: Option<&Bound<'py, PyAny>>,
    probs_from_base: bool,
    greedy: bool,
    temperature: f64,
    seed: Option<&Bound<'py, PyAny>>,
    params: Option<&Bound<'py, PyAny>>,
    top_k: Option<i64>,
    top_p: Option<f64>,
) -> Result<SelectionArrays<'py>> {
    let scheme = Scheme::parse(shaping)?;
    let params = params_arg(params)?;
    let base = matrix(base_scores, "base_scores")?;
    let rewards = matrix_like(rewards, "rewards", &base, "base_scores")?;
    let probs = optional_like(probs, "probs", &base, "base_scores")?;
    let weight = knob(weight, "weight")?;
    let seed = seed_arg(seed)?;
    let (rows, cols) = (base.rows, base.cols);
    let base_data = base.slice()?;
    let reward_data = rewards.slice()?;
    let probs = match probs.as_ref().map(Matrix::slice).transpose()? {
        Some(p) => ProbSource::Given(p),
        None if probs_from_base => ProbSource::SoftmaxOfBase,
        None => ProbSource::Uniform,
    };
    let sample = sample_params(temperature, top_k, top_p)?;
    let choice = if greedy {
        // Checked even when unused, so a bad value is caught before a sampling run.
        sample.check()?;
        Choice::Greedy
    } else {
        Choice::Sample {
            params: sample,
            seeds: seed.seeds(),
        }
    };
    let options = FuseOptions {
        scheme,
        params,
        weight: weight.per_row()?,
        probs,
        choice,
    };
    let selection =
        py.detach(|| rshape_core::fuse_and_select(base_data, reward_data, rows, cols, &options))?;
    Ok((
        PyArray1::from_vec(py, selection.chosen),
        into_matrix(py, rows, cols, selection.fused),
    ))
}

/// Temperature and truncation of a draw; the core checks the ranges, this only refuses a
/// negative `top_k` that `usize` cannot hold.
fn sample_params(temperature: f64, top_k: Option<i64>, top_p: Option<f64>) -> Result<SampleParams> {
    let top_k = top_k
        .map(|k| {
            usize::try_from(k).map_err(|_| {
                parameter(
                    "top_k",
                    format!(
                        "must be >= 1 (a k at or above the row length keeps every token), \
                         got {k}"
                    ),
                )
            })
        })
        .transpose()?;
    Ok(SampleParams {
        temperature,
        top_k,
        top_p,
    })
}

/// One token id per row of float32 logits `[B, V]`, drawn with `uniforms` (float64 `[B]`
/// in `[0, 1)`) from softmax(logits / temperature) cut to the top-k tokens and then to the
/// top-p nucleus, by inverse CDF in vocabulary order. Returns int64 `[B]`.
#[pyfunction]
#[pyo3(signature = (logits, uniforms, *, temperature, top_k=None, top_p=None))]
fn sample_tokens<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    uniforms: &Bound<'py, PyAny>,
    temperature: f64,
    top_k: Option<i64>,
    top_p: Option<f64>,
) -> Result<Bound<'py, PyArray1<i64>>> {
    let logits = matrix(logits, "logits")?;
    let uniforms = uniforms.cast::<PyArrayDyn<f64>>().map_err(|_| {
        wrong_type(
            "uniforms",
            "expected a 1-D float64 numpy array, one value per row",
        )
    })?;
    if uniforms.ndim() != 1 {
        return Err(shape(
            "uniforms",
            format!("expected a 1-D array, got shape {:?}", uniforms.shape()),
        ));
    }
    let uniforms = uniforms
        .try_readonly()
        .map_err(|e| shape("uniforms", format!("cannot be borrowed: {e}")))?;
    let u = uniforms
        .as_slice()
        .map_err(|_| shape("uniforms", "must be C-contiguous"))?;
    let params = sample_params(temperature, top_k, top_p)?;
    let data = logits.slice()?;
    let (rows, cols) = (logits.rows, logits.cols);
    let chosen = py.detach(|| rshape_core::sample_tokens(data, rows, cols, u, &params))?;
    Ok(PyArray1::from_vec(py, chosen))
}
