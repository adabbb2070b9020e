//! Top-k over rows of logits, in one streaming pass per row.
//!
//! The pass keeps a candidate buffer and a threshold: the smallest value among the k best
//! seen so far (or a stale, lower value — any value at or below the true k-th best keeps
//! the result exact). The row is read in chunks of [`CHUNK`] floats and each chunk is
//! tested against the threshold with one vectorisable compare-and-or; only a chunk that
//! holds something above the threshold (or a NaN) is looked at element by element. For
//! logits this rejects all but a few dozen chunks of a 150k-entry row, so the loop runs at
//! the speed the row can be read from memory.
//!
//! Candidates are appended unsorted; when the buffer fills up it is cut back to the k best
//! with a linear-time selection and the threshold is raised to the k-th value. That keeps
//! every `k` (up to the whole row) at O(V + k log k), even on adversarial (ascending) rows.
//!
//! Order: by value, descending; equal values by column, ascending. A later column can only
//! enter when strictly above the threshold, which is what breaks ties toward the lower
//! index. `-0.0` and `0.0` count as equal, as `numpy.argsort` sees them.

use std::cmp::Ordering;

use crate::error::{Error, Result};

/// Floats tested per compare-and-or. 16 floats is one cache line, two AVX2 vectors or four
/// SSE vectors: wide enough to amortise the horizontal test, narrow enough that a hit costs
/// little scalar work.
const CHUNK: usize = 16;

/// The k best entries of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// `rows × k`, row-major, each row sorted descending.
    pub values: Vec<f32>,
    /// The column of each value, same layout.
    pub indices: Vec<i64>,
}

/// `(value, column)`; the column fits in `u32` (checked), which keeps a candidate at 8 bytes.
type Candidate = (f32, u32);

/// The result order: larger value first, then smaller column. Never sees NaN (rejected
/// before), and compares `-0.0 == 0.0` like the rest of the crate.
#[inline]
fn better_first(a: &Candidate, b: &Candidate) -> Ordering {
    if a.0 > b.0 {
        Ordering::Less
    } else if a.0 < b.0 {
        Ordering::Greater
    } else {
        a.1.cmp(&b.1)
    }
}

/// Validate a row-major matrix argument: at least one row, at least one column, and a
/// buffer of exactly `rows × cols` values.
pub(crate) fn check_matrix(arg: &'static str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if rows == 0 {
        return Err(Error::Shape {
            arg,
            message: "has no rows".into(),
        });
    }
    if cols == 0 {
        return Err(Error::Shape {
            arg,
            message: "has empty rows (0 columns)".into(),
        });
    }
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::Shape {
            arg,
            message: format!("buffer of {len} values does not match shape ({rows}, {cols})"),
        });
    }
    Ok(())
}

/// The `k` largest entries of every row of the `rows × cols` matrix `logits`.
///
/// `-inf` and `+inf` are ordinary values; NaN anywhere is an error.
pub fn topk(logits: &[f32], rows: usize, cols: usize, k: usize) -> Result<TopK> {
    check_matrix("logits", logits.len(), rows, cols)?;
    if cols > u32::MAX as usize {
        return Err(Error::Shape {
            arg: "logits",
            message: format!("rows of {cols} columns exceed the supported 2^32 - 1"),
        });
    }
    if k < 1 || k > cols {
        return Err(Error::Parameter {
            arg: "k",
            message: format!("must be between 1 and the row length {cols}, got {k}"),
        });
    }
    let mut values = Vec::with_capacity(rows * k);
    let mut indices = Vec::with_capacity(rows * k);
    let mut buffer = Vec::with_capacity(buffer_capacity(k));
    for (r, row) in logits.chunks_exact(cols).enumerate() {
        row_topk(row, k, &mut buffer).map_err(|col| Error::NonFinite {
            arg: "logits",
            row: r,
            col,
            value: row[col],
        })?;
        for &(value, col) in &buffer {
            values.push(value);
            indices.push(i64::from(col));
        }
    }
    Ok(TopK { values, indices })
}

/// Buffer size before a cut-back. Twice `k` bounds the amortised selection cost at O(1) per
/// admitted candidate; the `+ 64` keeps cut-backs rare for the small `k` of decoding.
fn buffer_capacity(k: usize) -> usize {
    2 * k + 64
}

/// Leave the row's `k` best candidates in `buffer`, sorted. `Err(col)` names a NaN.
fn row_topk(row: &[f32], k: usize, buffer: &mut Vec<Candidate>) -> std::result::Result<(), usize> {
    buffer.clear();
    // The first k entries are the k best so far, whatever they are (-inf included).
    for (col, &x) in row[..k].iter().enumerate() {
        if x.is_nan() {
            return Err(col);
        }
        buffer.push((x, col as u32));
    }
    let threshold = buffer
        .iter()
        .fold(f32::INFINITY, |m, c| if c.0 < m { c.0 } else { m });
    scan(&row[k..], k, threshold, k, buffer_capacity(k), buffer)?;
    cut_back(buffer, k);
    buffer.sort_unstable_by(better_first);
    Ok(())
}

/// Stream `xs` (which starts at column `offset`) through the buffer and return the raised
/// threshold.
///
/// On x86-64 the same loop is compiled a second time with AVX2 enabled and chosen at run
/// time, since the wheel itself targets baseline x86-64 (SSE2) and the chunk test is the
/// whole cost of the pass.
fn scan(
    xs: &[f32],
    offset: usize,
    threshold: f32,
    k: usize,
    capacity: usize,
    buffer: &mut Vec<Candidate>,
) -> std::result::Result<f32, usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { scan_avx2(xs, offset, threshold, k, capacity, buffer) };
        }
    }
    scan_generic(xs, offset, threshold, k, capacity, buffer)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scan_avx2(
    xs: &[f32],
    offset: usize,
    threshold: f32,
    k: usize,
    capacity: usize,
    buffer: &mut Vec<Candidate>,
) -> std::result::Result<f32, usize> {
    scan_generic(xs, offset, threshold, k, capacity, buffer)
}

#[inline(always)]
fn scan_generic(
    xs: &[f32],
    offset: usize,
    mut threshold: f32,
    k: usize,
    capacity: usize,
    buffer: &mut Vec<Candidate>,
) -> std::result::Result<f32, usize> {
    let mut chunks = xs.chunks_exact(CHUNK);
    let mut start = offset;
    for chunk in &mut chunks {
        if chunk_needs_a_look(chunk, threshold) {
            threshold = admit(chunk, start, threshold, k, capacity, buffer)?;
        }
        start += CHUNK;
    }
    admit(chunks.remainder(), start, threshold, k, capacity, buffer)
}

/// True when some entry of the chunk is above the threshold or NaN. `!(x <= t)` is both
/// tests in one compare, and the or-fold over a fixed-size chunk becomes a few vector
/// compares, ors and one mask move.
#[inline(always)]
fn chunk_needs_a_look(chunk: &[f32], threshold: f32) -> bool {
    let mut hit = false;
    for &x in chunk {
        hit |= !(x <= threshold);
    }
    hit
}

/// Element-by-element admission of the entries of `xs` (starting at column `start`) that
/// are above the threshold.
#[inline(always)]
fn admit(
    xs: &[f32],
    start: usize,
    mut threshold: f32,
    k: usize,
    capacity: usize,
    buffer: &mut Vec<Candidate>,
) -> std::result::Result<f32, usize> {
    for (j, &x) in xs.iter().enumerate() {
        if x > threshold {
            buffer.push((x, (start + j) as u32));
            if buffer.len() >= capacity {
                threshold = cut_back(buffer, k);
            }
        } else if x.is_nan() {
            return Err(start + j);
        }
    }
    Ok(threshold)
}

/// Keep the k best candidates (unsorted) and return the k-th best value, the new threshold.
fn cut_back(buffer: &mut Vec<Candidate>, k: usize) -> f32 {
    if buffer.len() > k {
        buffer.select_nth_unstable_by(k - 1, better_first);
        buffer.truncate(k);
    }
    buffer
        .iter()
        .fold(f32::INFINITY, |m, c| if c.0 < m { c.0 } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(row: &[f32], k: usize) -> (Vec<f32>, Vec<i64>) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        // Stable sort by descending value keeps equal values in column order.
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
        let top = &order[..k];
        (
            top.iter().map(|&i| row[i]).collect(),
            top.iter().map(|&i| i as i64).collect(),
        )
    }

    #[test]
    fn matches_a_stable_sort_on_many_shapes() {
        let mut rng = crate::rng::SplitMix64::new(3);
        for cols in [1usize, 2, 15, 16, 17, 33, 100, 1000] {
            for k in [1usize, 2, 5, 16, 40, 100, 1000] {
                if k > cols {
                    continue;
                }
                // Few distinct values, so ties are everywhere.
                let row: Vec<f32> = (0..cols).map(|_| (rng.next_u64() % 7) as f32).collect();
                let got = topk(&row, 1, cols, k).unwrap();
                let (values, indices) = reference(&row, k);
                assert_eq!(got.values, values, "cols {cols} k {k}");
                assert_eq!(got.indices, indices, "cols {cols} k {k}");
            }
        }
    }

    #[test]
    fn ascending_rows_force_many_cut_backs() {
        let row: Vec<f32> = (0..5000).map(|i| i as f32).collect();
        let got = topk(&row, 1, 5000, 3).unwrap();
        assert_eq!(got.values, vec![4999.0, 4998.0, 4997.0]);
        assert_eq!(got.indices, vec![4999, 4998, 4997]);
    }
}
