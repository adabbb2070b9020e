//! `ShapeParams`: the shaping knobs as one immutable Python object.
//!
//! It wraps the core's `ShapeParams`, whose `Default` is the one definition of the
//! defaults: the constructor starts from it and applies the keywords it is given, so a
//! knob left out keeps the core's value and `max_weight=None` / `max_exponent=None` mean
//! "no cap". `replace` applies keywords the same way to an existing object.

use std::hash::{Hash, Hasher};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rshape_core::ShapeParams as CoreParams;

use crate::errors::{parameter, Result};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ShapeParams>()
}

/// The knobs of the reward transforms (docs/algorithms.md §2.3), validated on construction.
///
/// Keyword-only: `bound` (B >= 0), `beta` (> 0), `alpha` (>= 0), `spread_ratio` (>= 0),
/// `max_weight` (>= 1, or None for no cap), `max_exponent` (>= 0, or None for no cap) and
/// `cap` (>= 0). A knob left out takes the default, the token-level ARGS setting:
/// `ShapeParams()` shows it. Equal knobs compare and hash equal; pickling keeps them.
#[pyclass(frozen, eq, hash, module = "rshape_fast._core")]
#[derive(Clone, PartialEq)]
pub struct ShapeParams {
    pub(crate) inner: CoreParams,
}

/// Every knob by name, in the order of the constructor's keywords; `None` is "no cap".
fn by_name(p: &CoreParams) -> [(&'static str, Option<f64>); 7] {
    [
        ("bound", Some(p.bound)),
        ("beta", Some(p.beta)),
        ("alpha", Some(p.alpha)),
        ("spread_ratio", Some(p.spread_ratio)),
        ("max_weight", p.max_weight),
        ("max_exponent", p.max_exponent),
        ("cap", Some(p.cap)),
    ]
}

/// A float knob (a Python float, int or numpy scalar).
fn number(value: &Bound<'_, PyAny>, arg: &'static str) -> Result<f64> {
    value
        .extract::<f64>()
        .map_err(|_| parameter(arg, format!("expected a float, got {}", type_name(value))))
}

/// A cap: a float, or None for no cap.
fn optional_number(value: &Bound<'_, PyAny>, arg: &'static str) -> Result<Option<f64>> {
    if value.is_none() {
        return Ok(None);
    }
    Ok(Some(value.extract::<f64>().map_err(|_| {
        parameter(
            arg,
            format!("expected a float or None, got {}", type_name(value)),
        )
    })?))
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an unknown type".into(), |name| name.to_string())
}

/// `params` with the keyword `changes` applied, validated.
fn with_changes(mut params: CoreParams, changes: Option<&Bound<'_, PyDict>>) -> Result<CoreParams> {
    for (key, value) in changes.into_iter().flatten() {
        let key: String = key.extract()?;
        match key.as_str() {
            "bound" => params.bound = number(&value, "bound")?,
            "beta" => params.beta = number(&value, "beta")?,
            "alpha" => params.alpha = number(&value, "alpha")?,
            "spread_ratio" => params.spread_ratio = number(&value, "spread_ratio")?,
            "max_weight" => params.max_weight = optional_number(&value, "max_weight")?,
            "max_exponent" => params.max_exponent = optional_number(&value, "max_exponent")?,
            "cap" => params.cap = number(&value, "cap")?,
            _ => {
                let names: Vec<&str> = by_name(&params).iter().map(|(name, _)| *name).collect();
                return Err(parameter(
                    "ShapeParams",
                    format!("unknown knob {key:?}; expected one of {names:?}"),
                ));
            }
        }
    }
    params.validate()?;
    Ok(params)
}

#[pymethods]
impl ShapeParams {
    #[new]
    #[pyo3(signature = (**knobs))]
    fn new(knobs: Option<&Bound<'_, PyDict>>) -> Result<Self> {
        Ok(Self {
            inner: with_changes(CoreParams::default(), knobs)?,
        })
    }

    /// A copy with the given knobs changed (validated like the constructor).
    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> Result<Self> {
        Ok(Self {
            inner: with_changes(self.inner, changes)?,
        })
    }

    /// The same knobs with the sequence-level caps (best-of-N samples, segments, CD
    /// targets): `B_eff = min(B, 2 · range)`, `γ = e^{min(B/β, 2)}`, no cap on γ itself.
    fn sequence_level(&self) -> Self {
        Self {
            inner: self.inner.sequence_level(),
        }
    }

    /// The SRS weight γ of a candidate set whose effective bound is `b_eff` (default `B`),
    /// with these caps.
    #[pyo3(signature = (b_eff=None))]
    fn gamma(&self, b_eff: Option<f64>) -> f64 {
        self.inner.srs_weight(b_eff.unwrap_or(self.inner.bound))
    }

    /// The knobs as a dict of the constructor's keywords.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, value) in by_name(&self.inner) {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }

    /// Pickle and copy rebuild the object from its keywords (the constructor takes no
    /// positional arguments).
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        Ok((PyTuple::empty(py), self.to_dict(py)?))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = Vec::with_capacity(7);
        for (name, value) in by_name(&self.inner) {
            // Python's own float repr, so that the repr evaluates back to an equal object.
            parts.push(format!("{name}={}", value.into_pyobject(py)?.repr()?));
        }
        Ok(format!("ShapeParams({})", parts.join(", ")))
    }

    /// `B`, the largest reward the provider may hand over.
    #[getter]
    fn bound(&self) -> f64 {
        self.inner.bound
    }

    /// `beta`, the KL strength of the SRS weight `gamma = exp(B_eff / beta)`.
    #[getter]
    fn beta(&self) -> f64 {
        self.inner.beta
    }

    /// `alpha`, the sigmoid sharpness of the soft schemes.
    #[getter]
    fn alpha(&self) -> f64 {
        self.inner.alpha
    }

    /// `rho` in `B_eff = min(B, rho * (max r - min r))`.
    #[getter]
    fn spread_ratio(&self) -> f64 {
        self.inner.spread_ratio
    }

    /// Cap on the SRS weight `gamma`, or None.
    #[getter]
    fn max_weight(&self) -> Option<f64> {
        self.inner.max_weight
    }

    /// Cap on the exponent `B / beta` of the SRS weight, or None.
    #[getter]
    fn max_exponent(&self) -> Option<f64> {
        self.inner.max_exponent
    }

    /// Upper clip of the `cap` scheme.
    #[getter]
    fn cap(&self) -> f64 {
        self.inner.cap
    }
}

impl Hash for ShapeParams {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for (_, value) in by_name(&self.inner) {
            // `+ 0.0` maps -0.0 to 0.0, which compare equal; validated knobs hold no NaN.
            value.map(|x| (x + 0.0).to_bits()).hash(state);
        }
    }
}
