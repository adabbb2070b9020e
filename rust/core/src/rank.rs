//! The one ranking rule shared by the search states: higher score first, then lower id.

use std::cmp::Ordering;

/// Order `(score, id)` pairs best first. Callers only rank validated (finite) scores, so
/// `partial_cmp` always succeeds; unlike `total_cmp` it also treats -0.0 and 0.0 as a tie.
pub(crate) fn by_rank<I: Ord>(a: (f32, I), b: (f32, I)) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}
