//! Python classes over the core's search state: `SegmentBeam` and `StreamingBestOfN`.
//!
//! The work per call is small (one entry per candidate), so unlike the B×V kernels these
//! keep the GIL; what matters here is that every bad input becomes an
//! `rshape_fast.errors` exception naming the argument.

use numpy::prelude::*;
use numpy::{Element, PyArray1, PyArray2, PyReadonlyArray1, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rshape_core::beam::SegmentBeam as CoreBeam;
use rshape_core::best_of_n::StreamingBestOfN as CoreBestOfN;

use crate::arrays::into_matrix;
use crate::errors::{parameter, shape, wrong_type, Result};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SegmentBeam>()?;
    m.add_class::<StreamingBestOfN>()?;
    Ok(())
}

/// Which numpy dtype kinds an argument accepts before it is cast to its target dtype.
#[derive(Clone, Copy)]
enum Kinds {
    /// Signed or unsigned integers (ids, indices, hashes).
    Integer,
    /// Floats or integers (scores).
    Real,
    /// Booleans only: an integer array passed as a flag is more likely a mix-up.
    Boolean,
}

impl Kinds {
    fn accepts(self, kind: u8) -> bool {
        match self {
            Kinds::Integer => matches!(kind, b'i' | b'u'),
            Kinds::Real => matches!(kind, b'f' | b'i' | b'u'),
            Kinds::Boolean => kind == b'b',
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kinds::Integer => "an integer",
            Kinds::Real => "a real",
            Kinds::Boolean => "a boolean",
        }
    }
}

/// Coerce an array-like argument (numpy array, list, ...) to a contiguous 1-D array of `T`.
///
/// The dtype kind is checked before casting so that, say, float ids are refused instead of
/// being truncated. Integer hashes of any signedness are cast bit-for-bit to uint64 (a
/// negative Python `hash()` stays a distinct value). An empty input of any dtype is fine.
fn vector<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &'static str,
    kinds: Kinds,
) -> Result<PyReadonlyArray1<'py, T>> {
    let py = obj.py();
    let numpy = py.import("numpy")?;
    let array = numpy.call_method1("asarray", (obj,))?;
    let untyped = array.cast::<PyUntypedArray>()?;
    if untyped.ndim() != 1 {
        let dims: Vec<String> = untyped.shape().iter().map(usize::to_string).collect();
        return Err(shape(
            arg,
            format!("expected a 1-D array, got shape ({})", dims.join(", ")),
        ));
    }
    let dtype = untyped.dtype();
    if untyped.len() > 0 && !kinds.accepts(dtype.kind()) {
        let message = format!(
            "expected {} array, got dtype {}",
            kinds.describe(),
            dtype.str()?
        );
        return Err(wrong_type(arg, message));
    }
    let contiguous = numpy.call_method1("ascontiguousarray", (array, numpy::dtype::<T>(py)))?;
    Ok(contiguous.cast_into::<PyArray1<T>>()?.readonly())
}

/// A size argument that must be a positive integer.
fn positive(arg: &'static str, value: i64) -> Result<usize> {
    if value < 1 {
        return Err(parameter(arg, format!("must be at least 1, got {value}")));
    }
    usize::try_from(value).map_err(|_| parameter(arg, format!("{value} is too large")))
}

/// `(ids, scores)` arrays from per-prompt optional bests: -1 / NaN where there is none.
fn best_arrays<'py>(
    py: Python<'py>,
    best: impl Iterator<Item = Option<(i64, f32)>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (ids, scores): (Vec<i64>, Vec<f32>) = best.map(|b| b.unwrap_or((-1, f32::NAN))).unzip();
    PyTuple::new(
        py,
        [
            ids.into_pyarray(py).into_any(),
            scores.into_pyarray(py).into_any(),
        ],
    )
}

/// Bookkeeping of a segment-level beam search over `num_prompts` prompts of width `width`.
///
/// Each prompt's beam holds up to `width` members. Every step the caller expands each live
/// member into sampled segments, scores `prefix + segment`, and calls `step` once with all
/// expansions of all prompts. Finished members are carried over automatically and compete
/// with the new expansions; a live member that gets no expansion leaves the beam. Each
/// expansion gets a serial id: the running count of expansions ever submitted.
#[pyclass(module = "rshape_fast._core")]
pub struct SegmentBeam {
    inner: CoreBeam,
}

#[pymethods]
impl SegmentBeam {
    #[new]
    #[pyo3(signature = (num_prompts, width))]
    fn new(num_prompts: i64, width: i64) -> Result<Self> {
        let inner = CoreBeam::new(
            positive("num_prompts", num_prompts)?,
            positive("width", width)?,
        )?;
        Ok(Self { inner })
    }

    /// Submit one step of expansions; returns `(keep, serials)`.
    ///
    /// One entry per new expansion in each array: `prompt` (int, which prompt), `parent`
    /// (int, the position in the previous step's `keep` of the live member it extends, or
    /// -1 at a prompt's first step), `scores` (float32, the (shaped) reward of
    /// prefix + segment, finite), `finished` (bool), `hashes` (uint64, a hash of the whole
    /// token sequence; signed integers are reinterpreted bit-for-bit).
    ///
    /// Per prompt, the carried finished members and the new expansions form a pool;
    /// duplicates by hash keep only the higher score (ties: earlier serial); the `width`
    /// best by score stay (ties: lower serial, so carried members win). `keep` (int64)
    /// holds the indices into this call's arrays of the surviving live expansions, by
    /// prompt then rank: gather sequences and caches with it, and use positions in it as
    /// the next step's `parent`. `serials` (int64) is the serial of every submitted
    /// expansion, aligned with the arrays; map `best_finished()` serials back through it.
    /// On error nothing changes.
    #[pyo3(signature = (prompt, parent, scores, finished, hashes))]
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        prompt: &Bound<'py, PyAny>,
        parent: &Bound<'py, PyAny>,
        scores: &Bound<'py, PyAny>,
        finished: &Bound<'py, PyAny>,
        hashes: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyTuple>> {
        let prompt = vector::<i64>(prompt, "prompt", Kinds::Integer)?;
        let parent = vector::<i64>(parent, "parent", Kinds::Integer)?;
        let scores = vector::<f32>(scores, "scores", Kinds::Real)?;
        let finished = vector::<bool>(finished, "finished", Kinds::Boolean)?;
        let hashes = vector::<u64>(hashes, "hashes", Kinds::Integer)?;
        let out = self.inner.step(
            prompt.as_slice()?,
            parent.as_slice()?,
            scores.as_slice()?,
            finished.as_slice()?,
            hashes.as_slice()?,
        )?;
        Ok(PyTuple::new(
            py,
            [
                out.keep.into_pyarray(py).into_any(),
                out.serials.into_pyarray(py).into_any(),
            ],
        )?)
    }

    /// True when no prompt has a live member (also before the first step).
    #[getter]
    fn done(&self) -> bool {
        self.inner.done()
    }

    /// Per prompt, the best finished expansion ever submitted, including ones later pushed
    /// out of the beam (ties: earlier serial): `(serials int64, scores float32)`, -1 / NaN
    /// where none finished.
    fn best_finished<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        best_arrays(py, self.inner.best_finished().iter().copied())
    }

    /// The current members of one prompt in rank order, as `(serial, score, finished)`.
    #[pyo3(signature = (prompt))]
    fn members(&self, prompt: i64) -> Result<Vec<(i64, f32, bool)>> {
        let index = usize::try_from(prompt).map_err(|_| {
            parameter(
                "prompt",
                format!("{prompt} is outside [0, {})", self.inner.num_prompts()),
            )
        })?;
        let members = self.inner.members(index)?;
        Ok(members
            .iter()
            .map(|m| (m.serial, m.score, m.finished))
            .collect())
    }

    /// Number of prompts.
    #[getter]
    fn num_prompts(&self) -> usize {
        self.inner.num_prompts()
    }

    /// Beam width per prompt.
    #[getter]
    fn width(&self) -> usize {
        self.inner.width()
    }

    /// Number of expansions submitted so far (the serial the next one gets).
    #[getter]
    fn submitted(&self) -> i64 {
        self.inner.submitted()
    }

    fn __repr__(&self) -> String {
        format!(
            "SegmentBeam(num_prompts={}, width={}, submitted={}, done={})",
            self.inner.num_prompts(),
            self.inner.width(),
            self.inner.submitted(),
            self.inner.done()
        )
    }
}

/// Per-prompt state of best-of-N when candidates arrive over time, with early rejection
/// (after "Fast Best-of-N via Speculative Rejection").
///
/// `num_prompts` prompts each have `n` candidates with global ids `p * n + i`. Record
/// partial or final scores as they come, `prune` the weakest live candidates at
/// checkpoints, and read the best finished candidate at the end.
#[pyclass(module = "rshape_fast._core")]
pub struct StreamingBestOfN {
    inner: CoreBestOfN,
}

#[pymethods]
impl StreamingBestOfN {
    #[new]
    #[pyo3(signature = (num_prompts, n))]
    fn new(num_prompts: i64, n: i64) -> Result<Self> {
        let inner = CoreBestOfN::new(positive("num_prompts", num_prompts)?, positive("n", n)?)?;
        Ok(Self { inner })
    }

    /// Record the latest score of some candidates.
    ///
    /// `candidates` (int ids in `[0, num_prompts * n)`, each at most once per call),
    /// `scores` (float32, partial or final reward, finite), `finished` (bool; a finished
    /// candidate's score is final). Recording for a rejected or already finished candidate
    /// is an error. On error nothing is recorded.
    #[pyo3(signature = (candidates, scores, finished))]
    fn record(
        &mut self,
        candidates: &Bound<'_, PyAny>,
        scores: &Bound<'_, PyAny>,
        finished: &Bound<'_, PyAny>,
    ) -> Result<()> {
        let candidates = vector::<i64>(candidates, "candidates", Kinds::Integer)?;
        let scores = vector::<f32>(scores, "scores", Kinds::Real)?;
        let finished = vector::<bool>(finished, "finished", Kinds::Boolean)?;
        self.inner.record(
            candidates.as_slice()?,
            scores.as_slice()?,
            finished.as_slice()?,
        )?;
        Ok(())
    }

    /// Reject the weakest live candidates; returns their ids (int64, ascending).
    ///
    /// Per prompt with `L` live candidates, live and finished candidates are ranked by
    /// their latest score (ties: lower id) and the top `ceil((1 - reject_fraction) * L)`
    /// slots are kept (at least 1): live candidates inside survive, those outside are
    /// rejected. Finished candidates are never rejected but take slots. `reject_fraction`
    /// is in `[0, 1)`; 0 disables pruning. Every live candidate must have been scored.
    #[pyo3(signature = (*, reject_fraction = 0.5))]
    fn prune<'py>(
        &mut self,
        py: Python<'py>,
        reject_fraction: f64,
    ) -> Result<Bound<'py, PyArray1<i64>>> {
        let rejected = self.inner.prune(reject_fraction)?;
        Ok(rejected.into_pyarray(py))
    }

    /// Live (not finished, not rejected) mask, bool `(num_prompts, n)`.
    fn survivors<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.grid(py, self.inner.survivors())
    }

    /// Finished mask, bool `(num_prompts, n)`.
    fn finished_mask<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<bool>> {
        self.grid(py, self.inner.finished_mask())
    }

    /// Latest recorded score per candidate, float32 `(num_prompts, n)`; NaN if never scored.
    fn scores<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        self.grid(py, self.inner.scores().to_vec())
    }

    /// Per prompt, the finished candidate with the highest score (ties: lower id):
    /// `(ids int64, scores float32)`, -1 / NaN where none finished.
    fn best_finished<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        best_arrays(py, self.inner.best_finished().into_iter())
    }

    /// True when no candidate anywhere is live.
    #[getter]
    fn done(&self) -> bool {
        self.inner.done()
    }

    /// Number of prompts.
    #[getter]
    fn num_prompts(&self) -> usize {
        self.inner.num_prompts()
    }

    /// Candidates per prompt.
    #[getter]
    fn n(&self) -> usize {
        self.inner.n()
    }

    fn __repr__(&self) -> String {
        let live = self.inner.survivors().iter().filter(|&&s| s).count();
        let finished = self.inner.finished_mask().iter().filter(|&&s| s).count();
        format!(
            "StreamingBestOfN(num_prompts={}, n={}, live={live}, finished={finished})",
            self.inner.num_prompts(),
            self.inner.n()
        )
    }
}

impl StreamingBestOfN {
    /// A row-major `Vec` of one value per candidate as a `(num_prompts, n)` array.
    fn grid<'py, T: Element>(&self, py: Python<'py>, values: Vec<T>) -> Bound<'py, PyArray2<T>> {
        into_matrix(py, self.inner.num_prompts(), self.inner.n(), values)
    }
}
