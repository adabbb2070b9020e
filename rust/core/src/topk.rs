//! Top-k over rows of logits.
//!
//! A row is read in blocks of [`BLOCK`] floats. Two strategies share one set of SIMD
//! block primitives (a compare mask and a block maximum):
//!
//! - **Two passes** (the common case, `k` small against the row): pass 1 streams the row
//!   once, branch-free, storing each block's maximum and checking for NaN. The k-th
//!   largest block maximum `T` is a lower bound of the row's k-th largest value (k distinct
//!   blocks each hold an entry `≥ T`), so every top-k entry lies in a block whose maximum
//!   is `≥ T`; typically about k blocks. Finding `T` and revisiting those blocks is work on
//!   data in L1, so pass 1 runs at memory speed. (A single pass that admits candidates as
//!   it goes spends a mispredicted branch on each block holding a candidate, and once rows
//!   come from L3 or DRAM each of those stalls the memory stream: measured 3-4x slower.)
//! - **One pass** (short rows, large `k`, and finding `T` itself): keep a candidate buffer
//!   and a threshold at or below the k-th best value seen so far; a block goes to the
//!   element-by-element path only if its compare mask against the threshold is non-zero.
//!   Candidates are appended unsorted; when the buffer fills up it is cut back to the k
//!   best with a linear-time selection and the threshold is raised, which keeps any `k`
//!   (up to the whole row) at O(V + k log k), even on adversarial (ascending) rows.
//!
//! Order: by value, descending; equal values by column, ascending. Candidates are always
//! offered in column order and a later column enters only when strictly above the
//! threshold, which is what breaks ties toward the lower index. `-0.0` and `0.0` count as
//! equal, as `numpy.argsort` sees them.

use crate::error::{Error, Result};

/// The k best entries of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// `rows × k`, row-major, each row sorted descending.
    pub values: Vec<f32>,
    /// The column of each value, same layout.
    pub indices: Vec<i64>,
}

/// A candidate as one integer whose ascending order is the result order: the high half is
/// the value's order-preserving bit pattern, inverted (larger values first), the low half
/// the column (lower columns first; it fits in `u32`, checked). Selecting and sorting plain
/// `u64`s uses the standard library's branch-free partitions, several times faster than a
/// comparator on `(f32, u32)` pairs.
type Candidate = u64;

/// The candidate of value `x` (not NaN) at `col`.
#[inline(always)]
fn candidate(x: f32, col: usize) -> Candidate {
    // `+ 0.0` turns -0.0 into +0.0, so the two zeros tie as numpy's comparisons see them.
    let bits = (x + 0.0).to_bits();
    // Flip negatives entirely and set the sign bit of positives: unsigned order = float order.
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    };
    (u64::from(!ordered) << 32) | col as u64
}

/// The value a candidate encodes (a -0.0 comes back as +0.0).
#[inline]
fn candidate_value(c: Candidate) -> f32 {
    let ordered = !((c >> 32) as u32);
    let bits = if ordered >> 31 == 1 {
        ordered & !(1 << 31)
    } else {
        !ordered
    };
    f32::from_bits(bits)
}

/// The column a candidate encodes.
#[inline]
fn candidate_col(c: Candidate) -> usize {
    (c & u64::from(u32::MAX)) as usize
}

/// Floats per block: four cache lines, eight AVX vectors, one bit each in a [`Mask`].
/// Wide blocks amortise pass 1's horizontal maximum; the mask keeps the slow path cheap.
const BLOCK: usize = 64;

/// One bit per entry of a block.
type Mask = u64;

/// `xs` cut into whole blocks and the partial tail (what `slice::as_chunks` does from Rust
/// 1.88 on; the crate supports 1.85).
#[derive(Clone, Copy)]
struct Blocks<'a> {
    whole: &'a [f32],
    tail: &'a [f32],
}

impl<'a> Blocks<'a> {
    fn new(xs: &'a [f32]) -> Self {
        let (whole, tail) = xs.split_at(xs.len() / BLOCK * BLOCK);
        Blocks { whole, tail }
    }

    fn len(&self) -> usize {
        self.whole.len() / BLOCK
    }

    #[inline(always)]
    fn get(&self, j: usize) -> Option<&'a [f32; BLOCK]> {
        self.whole.get(j * BLOCK..(j + 1) * BLOCK)?.try_into().ok()
    }

    /// Every whole block; the conversion never fails and compiles away.
    #[inline(always)]
    fn iter(&self) -> impl Iterator<Item = &'a [f32; BLOCK]> {
        self.whole
            .chunks_exact(BLOCK)
            .filter_map(|block| block.try_into().ok())
    }
}

/// The largest float below `x` (for `x > -inf`, not NaN): `f32::next_down` from Rust 1.86.
fn next_below(x: f32) -> f32 {
    if x == 0.0 {
        -f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else {
        f32::from_bits(x.to_bits() + 1)
    }
}

/// The two-pass strategy needs at least this many blocks per wanted entry; below it the
/// block maxima say little and the one-pass strategy is as fast.
const BLOCKS_PER_K_FOR_TWO_PASSES: usize = 4;

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
    let mut scratch = Scratch::default();
    for (r, row) in logits.chunks_exact(cols).enumerate() {
        row_topk(row, k, &mut scratch).map_err(|col| Error::NonFinite {
            arg: "logits",
            row: r,
            col,
            value: row[col],
        })?;
        for &c in &scratch.buffer {
            let col = candidate_col(c);
            // From the row, not the key, so a -0.0 stays -0.0.
            values.push(row[col]);
            indices.push(col as i64);
        }
    }
    Ok(TopK { values, indices })
}

/// Buffers reused from row to row.
#[derive(Debug, Default)]
struct Scratch {
    /// The row's candidates; its k best, sorted, when a row is done.
    buffer: Vec<Candidate>,
    /// Pass 1: the maximum of every block (and of the partial last block).
    block_max: Vec<f32>,
    /// Candidates while finding the k-th largest block maximum.
    block_buffer: Vec<Candidate>,
    /// Pass 2: the blocks that can hold a top-k entry.
    candidate_blocks: Vec<usize>,
}

/// Buffer size before a cut-back. Twice `k` bounds the amortised selection cost at O(1) per
/// admitted candidate; the `+ 64` keeps cut-backs rare for the small `k` of decoding.
fn buffer_capacity(k: usize) -> usize {
    2 * k + 64
}

/// Leave the row's `k` best entries in `scratch.buffer`, sorted. `Err(col)` names a NaN.
fn row_topk(row: &[f32], k: usize, scratch: &mut Scratch) -> std::result::Result<(), usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU was just checked to support AVX.
            return unsafe { x86::row_topk_avx(row, k, scratch) };
        }
        row_topk_with(x86::Sse2, row, k, scratch)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        row_topk_with(Portable, row, k, scratch)
    }
}

/// The two block primitives, one implementation per instruction set.
trait Lanes: Copy {
    /// Bit `j` is set when `block[j] > t` or `block[j]` is NaN.
    fn block_mask(self, block: &[f32; BLOCK], t: f32) -> Mask;
    /// Whether any NaN was seen, accumulated over many blocks.
    type NanSeen: Copy;
    fn no_nan_seen(self) -> Self::NanSeen;
    fn any_nan_seen(self, seen: Self::NanSeen) -> bool;
    /// The block's maximum (meaningless if it holds a NaN); a NaN in it is recorded in
    /// `seen`, which is tested once per row rather than once per block.
    fn block_max(self, block: &[f32; BLOCK], seen: &mut Self::NanSeen) -> f32;
}

/// Plain Rust; LLVM vectorises the maximum (`if x > m` is exactly `maxps`).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[derive(Clone, Copy)]
struct Portable;

impl Lanes for Portable {
    #[inline(always)]
    fn block_mask(self, block: &[f32; BLOCK], t: f32) -> Mask {
        let mut mask = 0;
        for (j, &x) in block.iter().enumerate() {
            // True for `x > t` and for NaN.
            mask |= Mask::from(x > t || x.is_nan()) << j;
        }
        mask
    }

    type NanSeen = bool;

    fn no_nan_seen(self) -> bool {
        false
    }

    fn any_nan_seen(self, seen: bool) -> bool {
        seen
    }

    #[inline(always)]
    fn block_max(self, block: &[f32; BLOCK], seen: &mut bool) -> f32 {
        let mut m = block[0];
        for &x in block {
            m = if x > m { x } else { m };
            *seen |= x.is_nan();
        }
        m
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{row_topk_with, Lanes, Mask, Scratch, BLOCK};

    /// [`super::row_topk`] with the AVX primitives.
    ///
    /// # Safety
    /// The CPU must support AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn row_topk_avx(
        row: &[f32],
        k: usize,
        scratch: &mut Scratch,
    ) -> std::result::Result<(), usize> {
        // SAFETY: this function only runs where AVX is available.
        row_topk_with(unsafe { Avx::new() }, row, k, scratch)
    }

    /// The AVX primitives. Only [`row_topk_avx`] makes one, so they are only inlined into
    /// code compiled with AVX enabled.
    #[derive(Clone, Copy)]
    struct Avx(());

    impl Avx {
        /// # Safety
        /// The CPU must support AVX.
        unsafe fn new() -> Self {
            Avx(())
        }
    }

    const AVX_VECTORS: usize = BLOCK / 8;

    impl Lanes for Avx {
        #[inline(always)]
        fn block_mask(self, block: &[f32; BLOCK], t: f32) -> Mask {
            let p = block.as_ptr();
            // SAFETY: an `Avx` exists only where AVX is available; the unaligned 8-float
            // loads stay inside the block.
            unsafe {
                let t = _mm256_set1_ps(t);
                // `NLE_UQ` is true for `x > t` and for NaN.
                let hits: [__m256; AVX_VECTORS] = std::array::from_fn(|i| {
                    _mm256_cmp_ps::<_CMP_NLE_UQ>(_mm256_loadu_ps(p.add(8 * i)), t)
                });
                let any = hits[1..].iter().fold(hits[0], |a, &h| _mm256_or_ps(a, h));
                if _mm256_movemask_ps(any) == 0 {
                    return 0;
                }
                hits.iter().enumerate().fold(0, |mask, (i, &h)| {
                    mask | (_mm256_movemask_ps(h) as Mask) << (8 * i)
                })
            }
        }

        type NanSeen = __m256;

        #[inline(always)]
        fn no_nan_seen(self) -> __m256 {
            // SAFETY: an `Avx` exists only where AVX is available.
            unsafe { _mm256_setzero_ps() }
        }

        #[inline(always)]
        fn any_nan_seen(self, seen: __m256) -> bool {
            // SAFETY: as above.
            unsafe { _mm256_testz_ps(seen, seen) == 0 }
        }

        #[inline(always)]
        fn block_max(self, block: &[f32; BLOCK], seen: &mut __m256) -> f32 {
            let p = block.as_ptr();
            // SAFETY: as in `block_mask`.
            unsafe {
                let v: [__m256; AVX_VECTORS] =
                    std::array::from_fn(|i| _mm256_loadu_ps(p.add(8 * i)));
                // One unordered compare tests two vectors for NaN.
                *seen = v
                    .chunks_exact(2)
                    .map(|pair| _mm256_cmp_ps::<_CMP_UNORD_Q>(pair[0], pair[1]))
                    .fold(*seen, |acc, x| _mm256_or_ps(acc, x));
                let m8 = v[1..].iter().fold(v[0], |m, &x| _mm256_max_ps(m, x));
                let m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps::<1>(m8));
                horizontal_max(m4)
            }
        }
    }

    /// The SSE2 primitives: every x86-64 CPU has them.
    #[derive(Clone, Copy)]
    pub(super) struct Sse2;

    const SSE_VECTORS: usize = BLOCK / 4;

    impl Lanes for Sse2 {
        #[inline(always)]
        fn block_mask(self, block: &[f32; BLOCK], t: f32) -> Mask {
            let p = block.as_ptr();
            // SAFETY: SSE2 is part of the x86-64 baseline; the unaligned 4-float loads stay
            // inside the block.
            unsafe {
                let t = _mm_set1_ps(t);
                // `cmpnle` is true for `x > t` and for NaN.
                let hits: [__m128; SSE_VECTORS] =
                    std::array::from_fn(|i| _mm_cmpnle_ps(_mm_loadu_ps(p.add(4 * i)), t));
                let any = hits[1..].iter().fold(hits[0], |a, &h| _mm_or_ps(a, h));
                if _mm_movemask_ps(any) == 0 {
                    return 0;
                }
                hits.iter().enumerate().fold(0, |mask, (i, &h)| {
                    mask | (_mm_movemask_ps(h) as Mask) << (4 * i)
                })
            }
        }

        type NanSeen = __m128;

        #[inline(always)]
        fn no_nan_seen(self) -> __m128 {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_setzero_ps() }
        }

        #[inline(always)]
        fn any_nan_seen(self, seen: __m128) -> bool {
            // SAFETY: as above.
            unsafe { _mm_movemask_ps(seen) != 0 }
        }

        #[inline(always)]
        fn block_max(self, block: &[f32; BLOCK], seen: &mut __m128) -> f32 {
            let p = block.as_ptr();
            // SAFETY: as in `block_mask`.
            unsafe {
                let v: [__m128; SSE_VECTORS] = std::array::from_fn(|i| _mm_loadu_ps(p.add(4 * i)));
                *seen = v
                    .chunks_exact(2)
                    .map(|pair| _mm_cmpunord_ps(pair[0], pair[1]))
                    .fold(*seen, |acc, x| _mm_or_ps(acc, x));
                let m = v[1..].iter().fold(v[0], |m, &x| _mm_max_ps(m, x));
                horizontal_max(m)
            }
        }
    }

    /// The largest of four lanes.
    #[inline(always)]
    fn horizontal_max(m4: __m128) -> f32 {
        // SAFETY: SSE is part of the x86-64 baseline.
        unsafe {
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let m1 = _mm_max_ss(m2, _mm_shuffle_ps::<0b01>(m2, m2));
            _mm_cvtss_f32(m1)
        }
    }
}

/// Both strategies (see the module docs), on the primitives of `lanes`.
#[inline(always)]
fn row_topk_with<L: Lanes>(
    lanes: L,
    row: &[f32],
    k: usize,
    scratch: &mut Scratch,
) -> std::result::Result<(), usize> {
    let blocks = Blocks::new(row);
    if blocks.len() >= BLOCKS_PER_K_FOR_TWO_PASSES * k
        && two_passes(lanes, row, blocks, k, scratch)?
    {
        return Ok(());
    }
    one_pass(lanes, row, k, &mut scratch.buffer)?;
    scratch.buffer.sort_unstable();
    Ok(())
}

/// The two-pass strategy. `Ok(false)` leaves the row to the one-pass strategy: when the
/// bound is `-inf`, the strict admission test would lose `-inf` entries.
#[inline(always)]
fn two_passes<L: Lanes>(
    lanes: L,
    row: &[f32],
    blocks: Blocks<'_>,
    k: usize,
    scratch: &mut Scratch,
) -> std::result::Result<bool, usize> {
    // Pass 1: block maxima, branch-free; NaN is looked for once, at the end.
    let block_max = &mut scratch.block_max;
    block_max.clear();
    block_max.resize(blocks.len(), 0.0);
    let mut nan_seen = lanes.no_nan_seen();
    for (block, slot) in blocks.iter().zip(block_max.iter_mut()) {
        *slot = lanes.block_max(block, &mut nan_seen);
    }
    let tail = blocks.tail;
    if lanes.any_nan_seen(nan_seen) || tail.iter().any(|x| x.is_nan()) {
        return Err(first_nan(row));
    }
    if !tail.is_empty() {
        block_max.push(tail.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)));
    }

    // The bound: the k-th largest block maximum. The smallest of the maxima of k groups of
    // block maxima is at or below it (k distinct blocks reach it); starting the search
    // there skips the warm-up in which almost every value would be admitted.
    let group = block_max.len() / k;
    let start = block_max
        .chunks_exact(group)
        .take(k)
        .map(|g| {
            g.iter()
                .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
        })
        .fold(f32::INFINITY, |m, x| if x < m { x } else { m });
    // The maxima hold no NaN, so neither search can fail; if one did, the row would fall
    // through to the one-pass strategy, which reports NaN itself.
    let bound = if start > f32::NEG_INFINITY {
        let mut stream = Stream::new(&mut scratch.block_buffer, k, next_below(start));
        match stream.offer_blocks(lanes, block_max, 0) {
            Ok(()) => cut_back(stream.buffer, k),
            Err(_) => f32::NEG_INFINITY,
        }
    } else {
        one_pass(lanes, block_max, k, &mut scratch.block_buffer).unwrap_or(f32::NEG_INFINITY)
    };
    if bound == f32::NEG_INFINITY {
        return Ok(false);
    }

    // Pass 2: only the blocks that can hold a top-k entry (about k of them), in column
    // order. They are prefetched together first: rows that come from L3 or DRAM would
    // otherwise pay one full memory latency per block.
    let candidates = &mut scratch.candidate_blocks;
    candidates.clear();
    for (j, &m) in block_max.iter().enumerate() {
        if m >= bound {
            candidates.push(j);
        }
    }
    for &j in candidates.iter() {
        if let Some(block) = blocks.get(j) {
            prefetch(block);
        }
    }
    // Just below the bound, so entries equal to it are admitted.
    let mut stream = Stream::new(&mut scratch.buffer, k, next_below(bound));
    for &j in candidates.iter() {
        match blocks.get(j) {
            Some(block) => {
                let mask = lanes.block_mask(block, stream.threshold);
                stream.offer_masked(block, j * BLOCK, mask)?;
            }
            None => stream.offer_all(tail, j * BLOCK)?,
        }
    }
    cut_back(stream.buffer, k);
    stream.buffer.sort_unstable();
    Ok(true)
}

/// Ask for the cache lines of a block ahead of its use.
#[inline(always)]
fn prefetch(block: &[f32; BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = block.as_ptr().cast::<i8>();
        // SAFETY: SSE is part of the x86-64 baseline; a prefetch reads nothing, and every
        // address (each 64 bytes, then the last float) lies inside the block, so each
        // cache line the block touches is requested.
        unsafe {
            for offset in (0..4 * BLOCK).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(p.add(offset));
            }
            _mm_prefetch::<_MM_HINT_T0>(p.add(4 * BLOCK - 1));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = block;
}

/// Column of the first NaN in `xs` (0 if none, which callers rule out).
fn first_nan(xs: &[f32]) -> usize {
    xs.iter().position(|x| x.is_nan()).unwrap_or(0)
}

/// The one-pass strategy: leave the k best entries of `xs` (unsorted) in `buffer` and
/// return the k-th best value. `Err(col)` names a NaN.
#[inline(always)]
fn one_pass<L: Lanes>(
    lanes: L,
    xs: &[f32],
    k: usize,
    buffer: &mut Vec<Candidate>,
) -> std::result::Result<f32, usize> {
    buffer.clear();
    // The first k entries are the k best so far, whatever they are (-inf included).
    for (col, &x) in xs[..k].iter().enumerate() {
        if x.is_nan() {
            return Err(col);
        }
        buffer.push(candidate(x, col));
    }
    let threshold = xs[..k]
        .iter()
        .fold(f32::INFINITY, |m, &x| if x < m { x } else { m });
    let mut stream = Stream {
        buffer,
        k,
        capacity: buffer_capacity(k),
        threshold,
    };
    stream.offer_blocks(lanes, &xs[k..], k)?;
    Ok(cut_back(stream.buffer, k))
}

/// The candidate buffer of one row and its admission threshold.
struct Stream<'a> {
    buffer: &'a mut Vec<Candidate>,
    k: usize,
    capacity: usize,
    /// Below the k-th best value seen so far (or equal to it, once k were seen).
    threshold: f32,
}

impl<'a> Stream<'a> {
    /// An empty buffer with a threshold at or below the k-th best value to come.
    fn new(buffer: &'a mut Vec<Candidate>, k: usize, threshold: f32) -> Self {
        buffer.clear();
        Stream {
            buffer,
            k,
            capacity: buffer_capacity(k),
            threshold,
        }
    }

    /// Offer every entry of `xs` (starting at column `start`), looking element by element
    /// only into blocks whose compare mask is non-zero.
    #[inline(always)]
    fn offer_blocks<L: Lanes>(
        &mut self,
        lanes: L,
        xs: &[f32],
        start: usize,
    ) -> std::result::Result<(), usize> {
        let blocks = Blocks::new(xs);
        for (j, block) in blocks.iter().enumerate() {
            let mask = lanes.block_mask(block, self.threshold);
            if mask != 0 {
                self.offer_masked(block, start + j * BLOCK, mask)?;
            }
        }
        self.offer_all(blocks.tail, start + blocks.len() * BLOCK)
    }

    /// Admit `x` (at column `col`) if it beats the threshold; `Err(col)` if it is NaN.
    #[inline(always)]
    fn offer(&mut self, x: f32, col: usize) -> std::result::Result<(), usize> {
        if x > self.threshold {
            self.buffer.push(candidate(x, col));
            if self.buffer.len() >= self.capacity {
                self.threshold = cut_back(self.buffer, self.k);
            }
        } else if x.is_nan() {
            return Err(col);
        }
        Ok(())
    }

    /// Offer the entries of `xs` (starting at column `start`) whose bit is set in `mask`,
    /// in column order.
    #[inline(always)]
    fn offer_masked(
        &mut self,
        xs: &[f32],
        start: usize,
        mut mask: Mask,
    ) -> std::result::Result<(), usize> {
        while mask != 0 {
            let j = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            // Bits set before a cut-back raised the threshold are re-tested by `offer`.
            self.offer(xs[j], start + j)?;
        }
        Ok(())
    }

    #[inline(always)]
    fn offer_all(&mut self, xs: &[f32], start: usize) -> std::result::Result<(), usize> {
        for (j, &x) in xs.iter().enumerate() {
            self.offer(x, start + j)?;
        }
        Ok(())
    }
}

/// Keep the k best candidates (unsorted) and return the k-th best value, the new threshold.
fn cut_back(buffer: &mut Vec<Candidate>, k: usize) -> f32 {
    if buffer.len() > k {
        buffer.select_nth_unstable(k - 1);
        buffer.truncate(k);
    }
    // The worst kept candidate has the largest key.
    buffer
        .iter()
        .copied()
        .max()
        .map_or(f32::NEG_INFINITY, candidate_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// The k best by a stable sort on descending value: ties keep column order.
    fn reference(row: &[f32], k: usize) -> Vec<(f32, usize)> {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
        order[..k].iter().map(|&i| (row[i], i)).collect()
    }

    fn result(row: &[f32], scratch: &Scratch) -> Vec<(f32, usize)> {
        scratch
            .buffer
            .iter()
            .map(|&c| (row[candidate_col(c)], candidate_col(c)))
            .collect()
    }

    /// Run the row through every implementation this CPU can run.
    fn every_implementation(
        row: &[f32],
        k: usize,
    ) -> Vec<std::result::Result<Vec<(f32, usize)>, usize>> {
        let mut out = Vec::new();
        let mut scratch = Scratch::default();
        let mut record = |r: std::result::Result<(), usize>, scratch: &Scratch| {
            out.push(r.map(|()| result(row, scratch)));
        };
        let r = row_topk_with(Portable, row, k, &mut scratch);
        record(r, &scratch);
        #[cfg(target_arch = "x86_64")]
        {
            let r = row_topk_with(x86::Sse2, row, k, &mut scratch);
            record(r, &scratch);
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: AVX was just detected.
                let r = unsafe { x86::row_topk_avx(row, k, &mut scratch) };
                record(r, &scratch);
            }
        }
        out
    }

    fn check(row: &[f32], k: usize, what: &str) {
        let want = reference(row, k);
        for (i, got) in every_implementation(row, k).into_iter().enumerate() {
            let got = got.unwrap_or_else(|col| panic!("{what}: NaN reported at {col}"));
            // Compare bit patterns so -0.0 and 0.0 come back exactly as stored.
            let bits =
                |v: &[(f32, usize)]| v.iter().map(|&(x, c)| (x.to_bits(), c)).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{what}, implementation {i}, k {k}");
        }
    }

    fn normal(rng: &mut SplitMix64) -> f32 {
        let (u, v) = (rng.next_f64().max(1e-300), rng.next_f64());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    #[test]
    fn candidate_keys_order_like_the_result() {
        let values = [
            f32::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            1e-42,
            2.0,
            f32::MAX,
            f32::INFINITY,
        ];
        for (i, &a) in values.iter().enumerate() {
            for &b in &values[i..] {
                // Larger value first; equal values (the two zeros too) by column.
                let (ka, kb) = (candidate(a, 5), candidate(b, 3));
                if a < b {
                    assert!(kb < ka, "{a} vs {b}");
                } else {
                    assert!(kb < ka, "equal {a} {b}: lower column first");
                }
                assert_eq!(candidate_value(candidate(b, 0)), b + 0.0);
            }
        }
    }

    #[test]
    fn next_below_steps_one_float_down() {
        let tiny = f32::from_bits(1);
        assert_eq!(next_below(1.0), 1.0 - f32::EPSILON / 2.0);
        assert_eq!(next_below(-1.0), -1.0 - f32::EPSILON);
        assert_eq!(next_below(0.0), -tiny);
        assert_eq!(next_below(-0.0), -tiny);
        assert_eq!(next_below(tiny), 0.0);
        assert_eq!(next_below(f32::INFINITY), f32::MAX);
        assert_eq!(next_below(-f32::MAX), f32::NEG_INFINITY);
    }

    #[test]
    fn matches_a_stable_sort_on_random_rows() {
        let mut rng = SplitMix64::new(3);
        for cols in [1usize, 2, 63, 64, 65, 130, 1000, 5000, 20_000] {
            for k in [1usize, 2, 5, 10, 40, 100, 1000, cols] {
                if k > cols {
                    continue;
                }
                let row: Vec<f32> = (0..cols).map(|_| normal(&mut rng)).collect();
                check(&row, k, &format!("normal cols {cols}"));
                // Few distinct values: ties everywhere, including at the bound.
                let row: Vec<f32> = (0..cols).map(|_| (rng.next_u64() % 5) as f32).collect();
                check(&row, k, &format!("ties cols {cols}"));
            }
        }
    }

    #[test]
    fn adversarial_orders_and_special_values() {
        let mut rng = SplitMix64::new(5);
        let n = 10_000;
        let ascending: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let descending: Vec<f32> = (0..n).map(|i| -(i as f32)).collect();
        let constant = vec![0.5f32; n];
        let all_neg_inf = vec![f32::NEG_INFINITY; n];
        let mut mostly_neg_inf = all_neg_inf.clone();
        for i in (0..n).step_by(997) {
            mostly_neg_inf[i] = normal(&mut rng);
        }
        let zeros: Vec<f32> = (0..n)
            .map(|i| if i % 3 == 0 { -0.0 } else { 0.0 })
            .collect();
        let mut infinities: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
        for i in (0..n).step_by(701) {
            infinities[i] = if i % 2 == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            };
        }
        let huge: Vec<f32> = (0..n).map(|_| normal(&mut rng) * 1e30).collect();
        let mut late_max: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
        late_max[n - 1] = 100.0;
        for (name, row) in [
            ("ascending", &ascending),
            ("descending", &descending),
            ("constant", &constant),
            ("all -inf", &all_neg_inf),
            ("mostly -inf", &mostly_neg_inf),
            ("signed zeros", &zeros),
            ("infinities", &infinities),
            ("huge", &huge),
            ("late max", &late_max),
        ] {
            for k in [1usize, 3, 10, 40, 64, 500, n] {
                check(row, k, name);
            }
        }
    }

    #[test]
    fn the_first_nan_is_reported_by_every_strategy() {
        let mut rng = SplitMix64::new(9);
        for cols in [5usize, 100, 5000, 5003] {
            for k in [1usize, 4, 5] {
                if k > cols {
                    continue;
                }
                for at in [0usize, k - 1, k, cols / 2, cols - 1] {
                    if at >= cols {
                        continue;
                    }
                    let mut row: Vec<f32> = (0..cols).map(|_| normal(&mut rng)).collect();
                    row[at] = f32::NAN;
                    if at + 7 < cols {
                        row[at + 7] = f32::NAN;
                    }
                    for got in every_implementation(&row, k) {
                        assert_eq!(got, Err(at), "cols {cols} k {k} NaN at {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn batch_layout_and_errors() {
        let logits = [1.0, 3.0, 2.0, -1.0, f32::NEG_INFINITY, -0.5];
        let got = topk(&logits, 2, 3, 2).unwrap();
        assert_eq!(got.values, vec![3.0, 2.0, -0.5, -1.0]);
        assert_eq!(got.indices, vec![1, 2, 2, 0]);
        assert!(matches!(
            topk(&logits, 2, 3, 0),
            Err(Error::Parameter { arg: "k", .. })
        ));
        assert!(matches!(
            topk(&logits, 2, 3, 4),
            Err(Error::Parameter { arg: "k", .. })
        ));
        assert!(matches!(
            topk(&logits, 3, 3, 1),
            Err(Error::Shape { arg: "logits", .. })
        ));
        assert!(matches!(
            topk(&[], 0, 3, 1),
            Err(Error::Shape { arg: "logits", .. })
        ));
        assert!(matches!(
            topk(&[], 1, 0, 1),
            Err(Error::Shape { arg: "logits", .. })
        ));
        let nan = [0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0];
        assert!(matches!(
            topk(&nan, 2, 3, 1),
            Err(Error::NonFinite {
                arg: "logits",
                row: 1,
                col: 1,
                ..
            })
        ));
    }
}
