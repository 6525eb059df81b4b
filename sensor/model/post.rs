//! The post transforms of the ONNX tree ops, computed in f32 as onnxruntime
//! computes them, so that probabilities match it to the last few ulps.

/// `post_transform` of TreeEnsembleClassifier / TreeEnsembleRegressor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(s: &str) -> Option<PostTransform> {
        Some(match s {
            "NONE" => PostTransform::None,
            "SOFTMAX" => PostTransform::Softmax,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            _ => return None,
        })
    }

    /// Transforms a row of two or more scores in place.
    pub fn apply(self, v: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => v.iter_mut().for_each(|x| *x = logistic(*x)),
            PostTransform::Probit => v.iter_mut().for_each(|x| *x = probit(*x)),
            PostTransform::Softmax => softmax(v),
            PostTransform::SoftmaxZero => softmax_zero(v),
        }
    }
}

/// The logistic function, evaluated on `-|x|` so that `exp` never overflows.
pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// `sqrt(2) * erfinv(2p - 1)`, with the same closed-form approximation of
/// erfinv (Winitzki's, a = 0.147) that onnxruntime uses: an exact inverse
/// would disagree with every model validated against onnxruntime.
pub fn probit(p: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * p - 1.0)
}

fn erf_inv(x: f32) -> f32 {
    const A: f32 = 0.147;
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let ln = ((1.0 - x) * (1.0 + x)).ln();
    let t = 2.0 / (std::f32::consts::PI * A) + 0.5 * ln;
    let inner = -t + (t * t - ln / A).sqrt();
    sign * inner.sqrt()
}

/// Softmax shifted by the row's maximum; the sum is accumulated in f32.
pub fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(-f32::MAX, f32::max);
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

/// Softmax over the non-zero scores only: a class no tree voted for keeps
/// probability 0 instead of getting `exp(0)`'s share.
pub fn softmax_zero(v: &mut [f32]) {
    let max = v.iter().copied().fold(-f32::MAX, f32::max);
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        if *x > 1e-7 || *x < -1e-7 {
            *x = (*x - max).exp();
            sum += *x;
        } else {
            *x *= exp_neg_max;
        }
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probit_is_close_to_the_normal_quantile() {
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.959_964).abs() < 2e-3);
        assert!((probit(0.1) + 1.281_552).abs() < 2e-3);
    }

    #[test]
    fn logistic_is_symmetric_and_finite() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(3.0) + logistic(-3.0) - 1.0).abs() < 1e-6);
        assert_eq!(logistic(-1000.0), 0.0);
        assert_eq!(logistic(1000.0), 1.0);
    }

    #[test]
    fn softmax_zero_leaves_unvoted_classes_at_zero() {
        let mut v = [0.0, 1.0, 2.0];
        softmax_zero(&mut v);
        assert_eq!(v[0], 0.0);
        assert!((v[1] + v[2] - 1.0).abs() < 1e-6);
    }
}
