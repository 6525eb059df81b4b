//! The arithmetic of calibration: how many benign records a target
//! false-positive rate needs, how many of them may be flagged, and the
//! lowest threshold that flags no more than that.
//!
//! A threshold is chosen on the values the alert rule compares (an anomaly
//! score, a classifier's attack probability: `f32`, compared as `f64`
//! with `>=`), so the flagged share of the calibration input after
//! calibration is exactly what was asked for, ties included. Of all the
//! thresholds that flag the same records, the shortest decimal is written:
//! a spec reads `0.93`, not `0.9300000071525574`.

/// Records that must lie above the quantile: with fewer, the threshold
/// would rest on a handful of connections and say little about the next
/// day's traffic.
pub const MIN_ABOVE: u64 = 10;

/// `x` rounded to the nearest integer when it is one up to floating-point
/// noise (`10.0 / 0.001` is 10000.000000000002), else unchanged.
fn snap(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() <= 1e-9 * x.abs().max(1.0) {
        r
    } else {
        x
    }
}

/// Benign records needed for `target_fpr`: `ceil(MIN_ABOVE / target_fpr)`,
/// so that at least `MIN_ABOVE` records may be flagged.
pub fn min_records(target_fpr: f64) -> u64 {
    snap(MIN_ABOVE as f64 / target_fpr).ceil() as u64
}

/// Records of `n` that may be flagged at `target_fpr`: `floor(n *
/// target_fpr)`.
pub fn allowed(n: u64, target_fpr: f64) -> u64 {
    snap(n as f64 * target_fpr).floor() as u64
}

/// The lowest threshold `t` (as the shortest decimal among those that flag
/// the same records) such that at most `allowed` of `values` satisfy
/// `f64::from(v) >= t`. NaN never satisfies it and is left out. `None`
/// when no finite threshold can do it (the values above it are infinite)
/// or `values` holds no more than `allowed` numbers.
pub fn lowest_threshold(values: &[f32], allowed: usize) -> Option<f64> {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.len() <= allowed {
        return None;
    }
    v.sort_unstable_by(|a, b| b.total_cmp(a));
    // Sorted high to low: the first `allowed` may be flagged, the next one
    // may not, nor may any equal to it.
    let lo = *v.get(allowed)?;
    if !lo.is_finite() {
        return None;
    }
    // The smallest value above `lo`: any threshold in (lo, hi] flags the
    // same records.
    let hi = v[..allowed]
        .iter()
        .rev()
        .find(|&&x| x > lo)
        .copied()
        .filter(|x| x.is_finite())
        .unwrap_or_else(|| lo.next_up());
    Some(shortest_between(f64::from(lo), f64::from(hi)))
}

/// The decimal with the fewest significant digits in `(lo, hi]`; `hi`
/// itself when none is shorter.
fn shortest_between(lo: f64, hi: f64) -> f64 {
    let inside = |c: f64| c > lo && c <= hi;
    for digits in 0..17usize {
        let Ok(near) = format!("{hi:.digits$e}").parse::<f64>() else {
            continue;
        };
        if inside(near) {
            return near;
        }
        // Rounded up past `hi`: one unit of the last digit down.
        let exp = near.abs().log10().floor();
        let unit = 10f64.powf(exp - digits as f64);
        if let Ok(down) = format!("{:.digits$e}", near - unit).parse::<f64>() {
            if inside(down) {
                return down;
            }
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(values: &[f32], t: f64) -> usize {
        values.iter().filter(|&&v| f64::from(v) >= t).count()
    }

    #[test]
    fn records_needed_and_allowed_survive_floating_point_noise() {
        assert_eq!(min_records(0.001), 10_000);
        assert_eq!(min_records(0.01), 1_000);
        assert_eq!(min_records(0.003), 3_334);
        assert_eq!(min_records(0.5), 20);
        assert_eq!(allowed(10_000, 0.001), 10);
        assert_eq!(allowed(1_000, 0.01), 10);
        assert_eq!(allowed(1_999, 0.01), 19);
        assert_eq!(allowed(20, 0.5), 10);
    }

    #[test]
    fn the_threshold_flags_at_most_the_allowed_records() {
        let values: Vec<f32> = (0..1000).map(|i| (i as f32) * 0.001).collect();
        for allowed in [0, 1, 10, 37, 999] {
            let t = lowest_threshold(&values, allowed).expect("a threshold");
            assert_eq!(flagged(&values, t), allowed, "allowed {allowed}: t {t}");
        }
        assert_eq!(lowest_threshold(&values, 1000), None);
    }

    #[test]
    fn ties_at_the_quantile_are_not_flagged() {
        // Ten records allowed, but the 8th to the 12th highest are equal:
        // only the seven above them can be flagged.
        let mut values = vec![0.1f32; 100];
        for (i, v) in values.iter_mut().take(7).enumerate() {
            *v = 0.9 + i as f32 * 0.01;
        }
        for v in values.iter_mut().skip(7).take(5) {
            *v = 0.5;
        }
        let t = lowest_threshold(&values, 10).expect("a threshold");
        assert_eq!(flagged(&values, t), 7);
        assert!(t > 0.5 && t <= 0.9, "{t}");
        // Everything equal: nothing can be flagged, and the threshold is
        // just above the value.
        let same = vec![0.25f32; 50];
        let t = lowest_threshold(&same, 5).expect("a threshold");
        assert_eq!(flagged(&same, t), 0);
        assert!(t > 0.25 && t < 0.2501, "{t}");
    }

    #[test]
    fn thresholds_are_short_decimals() {
        // 0.95 as f32 is 0.94999998...: a threshold of 0.95 would not
        // flag it.
        let values = [0.912_345_f32, 0.95, 0.1, 0.2, 0.3];
        let t = lowest_threshold(&values, 1).expect("a threshold");
        assert_eq!(t, 0.94);
        assert_eq!(flagged(&values, t), 1);
        let t = lowest_threshold(&[3.25, 2.75, 1.0], 1).expect("a threshold");
        assert_eq!(t, 3.0);
        assert_eq!(shortest_between(0.123_45, 0.123_46), 0.123_46);
        assert_eq!(shortest_between(1.04, 1.2), 1.2);
        assert_eq!(shortest_between(9.5, 10.5), 10.0);
    }

    #[test]
    fn nan_is_never_flagged_and_infinity_cannot_be_cut() {
        let values = [f32::NAN, 0.5, 0.4, 0.3];
        let t = lowest_threshold(&values, 1).expect("a threshold");
        assert_eq!(flagged(&values, t), 1);
        assert_eq!(
            lowest_threshold(&[f32::INFINITY, f32::INFINITY, 1.0], 1),
            None
        );
        let t = lowest_threshold(&[f32::INFINITY, 2.0, 1.0], 1).expect("a threshold");
        assert_eq!(flagged(&[f32::INFINITY, 2.0, 1.0], t), 1);
    }
}
