//! How leaf weights become outputs: sums (or averages, minima, maxima) per
//! class or target, base values, the post transform, and the binary
//! classifier's special cases.
//!
//! The ONNX spec leaves much of this open (one base value for two classes,
//! a single voted class, a class no tree voted for). Models are validated
//! against onnxruntime, so every case follows what onnxruntime 1.31 computes,
//! including its quirks; each is named where it is handled. A per-class
//! "voted" flag is kept beside each sum because onnxruntime's results
//! depend on it.

use super::forest::{Forest, Real};
use super::post::{logistic, probit, PostTransform};

/// `aggregate_function` of TreeEnsembleRegressor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub fn parse(s: &str) -> Option<Aggregate> {
        Some(match s {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            _ => return None,
        })
    }
}

/// The classifier's parameters beyond the trees.
#[derive(Clone, Debug)]
pub struct ClassifierHead {
    pub classes: usize,
    pub base: Vec<f64>,
    pub post: PostTransform,
    /// Two classes, and every weight goes to the same one.
    pub binary_case: bool,
    /// No class weight is negative (probabilities are then `[1 - p, p]`).
    pub all_positive: bool,
}

/// The regressor's parameters beyond the trees.
#[derive(Clone, Debug)]
pub struct RegressorHead {
    pub targets: usize,
    pub base: Vec<f64>,
    pub post: PostTransform,
    pub aggregate: Aggregate,
}

/// The label a classifier row gets. onnxruntime reports the class at an
/// index, except for two classes both voted for, where it reports the raw
/// integer 1 or 0 whatever the class labels are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Class(usize),
    Raw(i64),
}

/// Rows scored per pass over the trees: a block's rows (and the trees'
/// hot nodes) stay in L1/L2 while every tree walks them.
const BLOCK: usize = 128;

/// Scores `n` rows of `cols` values; returns the label picks and `n x classes`
/// probabilities.
pub fn classify<T: Real>(
    forest: &Forest<T>,
    head: &ClassifierHead,
    x: &[T],
    cols: usize,
    n: usize,
) -> (Vec<Pick>, Vec<f32>) {
    let c = head.classes;
    let base: Vec<T> = head.base.iter().map(|&b| T::from_f64(b)).collect();
    let mut picks = Vec::with_capacity(n);
    let mut probs = vec![0f32; n * c];
    let mut sums = vec![T::default(); BLOCK * c];
    let mut voted = vec![false; BLOCK * c];
    let mut masks = vec![0u64; BLOCK];
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        sums.fill(T::default());
        voted.fill(false);
        let xb = &x[start * cols..(start + rows) * cols];
        if c <= 64 && forest.has_masks() {
            // Zero weights change no sum: add the others, vote by mask.
            masks.fill(0);
            forest.walk_block(xb, cols, rows, &mut |r, leaf| {
                masks[r] |= forest.touched(leaf);
                for &(k, w) in forest.sparse_weights(leaf) {
                    let j = r * c + k as usize;
                    sums[j] = sums[j] + w;
                }
            });
            for (r, &m) in masks.iter().enumerate().take(rows) {
                for (k, v) in voted[r * c..(r + 1) * c].iter_mut().enumerate() {
                    *v = m >> k & 1 == 1;
                }
            }
        } else {
            forest.walk_block(xb, cols, rows, &mut |r, leaf| {
                for &(k, w) in forest.leaf_weights(leaf) {
                    let j = r * c + k as usize;
                    sums[j] = sums[j] + w;
                    voted[j] = true;
                }
            });
        }
        for r in 0..rows {
            let s = &mut sums[r * c..(r + 1) * c];
            let v = &mut voted[r * c..(r + 1) * c];
            let out = &mut probs[(start + r) * c..(start + r + 1) * c];
            let pick = if c == 2 {
                finish_binary(head, &base, s, v, out)
            } else {
                finish_multiclass(head, &base, s, v, out)
            };
            picks.push(pick);
        }
    }
    (picks, probs)
}

fn value<T: Real>(sum: T, voted: bool) -> T {
    if voted {
        sum
    } else {
        T::default()
    }
}

fn finish_multiclass<T: Real>(
    head: &ClassifierHead,
    base: &[T],
    s: &mut [T],
    v: &mut [bool],
    out: &mut [f32],
) -> Pick {
    // A base value counts as a vote, so unvoted classes get it.
    for (k, &b) in base.iter().enumerate().take(s.len()) {
        s[k] = if v[k] { s[k] + b } else { b };
        v[k] = true;
    }
    let mut best: Option<usize> = None;
    for k in 0..s.len() {
        if v[k] && best.is_none_or(|b| s[k] > s[b]) {
            best = Some(k);
        }
    }
    for k in 0..s.len() {
        out[k] = value(s[k], v[k]).to_f32();
    }
    head.post.apply(out);
    Pick::Class(best.unwrap_or(0))
}

/// Two classes, onnxruntime's way: with one base value or none and only
/// class 0 voted, the row carries a single score that becomes the two
/// columns `[1 - p, p]` (weights all positive), `[-s, s]`, or
/// `[logistic(-s), logistic(s)]` under LOGISTIC (onnxruntime 1.31 does
/// that for positive weights too); with two base values and
/// class 1 voted, only `base[1]` and class 0's sum count. Under PROBIT the
/// single-score form writes only the first column; the second stays 0
/// here (onnxruntime leaves it unwritten).
fn finish_binary<T: Real>(
    head: &ClassifierHead,
    base: &[T],
    s: &mut [T],
    v: &mut [bool],
    out: &mut [f32],
) -> Pick {
    let mut wide = true;
    let mut form: i8 = -1;
    match base.len() {
        2 => {
            if v[1] {
                s[1] = base[1] + s[0];
                s[0] = -s[1];
            } else {
                s[1] = s[1] + base[1];
                s[0] = s[0] + base[0];
            }
        }
        1 => {
            s[0] = s[0] + base[0];
            wide = v[1];
        }
        0 => {
            form = 3;
            wide = v[1];
        }
        _ => {}
    }
    let zero = T::default();
    let positive = if wide && v[1] {
        s[1]
    } else if v[0] {
        s[0]
    } else {
        zero
    };
    let pick = if head.binary_case {
        if head.all_positive {
            if positive > T::from_f64(0.5) {
                form = 0;
                Pick::Class(1)
            } else {
                form = 1;
                Pick::Class(0)
            }
        } else if positive > zero {
            form = 2;
            Pick::Class(1)
        } else {
            form = 3;
            Pick::Class(0)
        }
    } else {
        Pick::Raw(i64::from(positive > zero))
    };
    if wide {
        out[0] = value(s[0], v[0]).to_f32();
        out[1] = value(s[1], v[1]).to_f32();
        head.post.apply(out);
        return pick;
    }
    let p = value(s[0], v[0]);
    if head.post == PostTransform::Probit {
        out[0] = probit(p.to_f32());
        out[1] = 0.0;
        return pick;
    }
    match form {
        0 | 1 if head.post == PostTransform::Logistic => {
            out[0] = logistic((-p).to_f32());
            out[1] = logistic(p.to_f32());
        }
        0 | 1 => {
            out[0] = (T::from_f64(1.0) - p).to_f32();
            out[1] = p.to_f32();
        }
        2 | 3 if head.post == PostTransform::Logistic => {
            out[0] = logistic((-p).to_f32());
            out[1] = logistic(p.to_f32());
        }
        2 | 3 => {
            out[0] = (-p).to_f32();
            out[1] = p.to_f32();
        }
        _ => {
            out[0] = p.to_f32();
            out[1] = 0.0;
        }
    }
    pick
}

/// Scores `n` rows; returns `n x targets` values.
pub fn regress<T: Real>(
    forest: &Forest<T>,
    head: &RegressorHead,
    x: &[T],
    cols: usize,
    n: usize,
) -> Vec<f32> {
    let t = head.targets;
    let base: Vec<T> = head.base.iter().map(|&b| T::from_f64(b)).collect();
    let trees = T::from_usize(forest.trees());
    let mut out = vec![0f32; n * t];
    let mut sums = vec![T::default(); BLOCK * t];
    let mut voted = vec![false; BLOCK * t];
    let agg = head.aggregate;
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        sums.fill(T::default());
        voted.fill(false);
        let xb = &x[start * cols..(start + rows) * cols];
        if t == 1 {
            // One target: onnxruntime adds each leaf's first weight,
            // whatever target id it names.
            forest.walk_block(xb, cols, rows, &mut |r, leaf| {
                let w = forest.first_weight(leaf);
                combine(agg, &mut sums[r], &mut voted[r], w);
            });
            let origin = if base.len() == 1 {
                base[0]
            } else {
                T::default()
            };
            for r in 0..rows {
                let s = match agg {
                    Aggregate::Sum => sums[r] + origin,
                    Aggregate::Average => sums[r] / trees + origin,
                    Aggregate::Min | Aggregate::Max => value(sums[r], voted[r]) + origin,
                };
                // Only PROBIT applies to a single target.
                out[start + r] = if head.post == PostTransform::Probit {
                    probit(s.to_f32())
                } else {
                    s.to_f32()
                };
            }
            continue;
        }
        forest.walk_block(xb, cols, rows, &mut |r, leaf| {
            for &(k, w) in forest.leaf_weights(leaf) {
                let j = r * t + k as usize;
                combine(agg, &mut sums[j], &mut voted[j], w);
            }
        });
        let use_base = base.len() == t;
        for r in 0..rows {
            let row = &mut out[(start + r) * t..(start + r + 1) * t];
            for k in 0..t {
                let j = r * t + k;
                let b = if use_base { base[k] } else { T::default() };
                let s = match agg {
                    Aggregate::Sum => sums[j] + b,
                    Aggregate::Average => sums[j] / trees + b,
                    Aggregate::Min | Aggregate::Max => b + value(sums[j], voted[j]),
                };
                // A target no tree voted for reads 0, base value or not.
                row[k] = value(s, voted[j]).to_f32();
            }
            head.post.apply(row);
        }
    }
    out
}

#[inline(always)]
fn combine<T: Real>(agg: Aggregate, sum: &mut T, voted: &mut bool, w: T) {
    match agg {
        Aggregate::Sum | Aggregate::Average => *sum = *sum + w,
        Aggregate::Min => {
            if !*voted || w < *sum {
                *sum = w;
            }
        }
        Aggregate::Max => {
            if !*voted || w > *sum {
                *sum = w;
            }
        }
    }
    *voted = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::forest::Attrs;

    /// The forest tests' stump with three classes: leaf 1 (x0 <= 0.5)
    /// weighs class 0 at -1 and class 1 at exactly 0; leaf 2 weighs
    /// class 2 at 1.
    fn stump() -> Attrs {
        Attrs {
            w_tree: vec![0, 0, 0],
            w_node: vec![1, 1, 2],
            w_target: vec![0, 1, 2],
            w_value: vec![-1.0, 0.0, 1.0],
            ..crate::model::forest::tests::stump()
        }
    }

    /// A zero weight is skipped in the sums but still votes: class 1's
    /// sum of 0 beats class 0's -1 only because it was voted for.
    #[test]
    fn a_zero_weight_still_votes() {
        let forest = Forest::<f32>::build(&stump(), 3).expect("forest");
        let head = ClassifierHead {
            classes: 3,
            base: vec![],
            post: PostTransform::None,
            binary_case: false,
            all_positive: false,
        };
        let (picks, probs) = classify(&forest, &head, &[0.0f32, 1.0], 1, 2);
        assert_eq!(picks, vec![Pick::Class(1), Pick::Class(2)]);
        assert_eq!(probs, vec![-1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }
}
