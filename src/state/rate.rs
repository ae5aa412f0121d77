//! The call-rate baseline: EWMA mean and variance of per-minute call counts.
//!
//! Only *active* minutes (at least one call) feed the average. A batch job that runs five
//! minutes an hour at 500 calls a minute thus has a baseline near 500, not near 40, and a
//! dormant key waking up is `dormant_reuse`'s business rather than a rate spike. Minutes are
//! event-time minutes; an event older than the current minute is counted as late and leaves the
//! baseline alone.

/// Per-credential rate state: the minute being counted and the smoothed history before it.
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RateBaseline {
    /// Event-time minute currently being counted, since 1970 (32 bits, so that the baseline
    /// packs into 20 bytes with the record's other 4-byte fields; [`minute_of`] clamps a time
    /// outside years -2115 to 6053).
    pub minute: i32,
    /// Calls seen in `minute` so far.
    pub count: u32,
    /// Active minutes folded into `mean` and `variance`.
    pub minutes: u32,
    pub mean: f32,
    pub variance: f32,
}

/// A baseline as it stands at some minute: the history a new count is compared against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateView {
    /// Calls in the current minute, this event included.
    pub count: u32,
    pub minutes: u32,
    pub mean: f64,
    pub variance: f64,
}

impl RateView {
    pub fn std_dev(&self) -> f64 {
        self.variance.sqrt()
    }
}

/// An event-time minute as the baseline keeps it.
pub fn minute_of(minute: i64) -> i32 {
    minute.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

impl RateBaseline {
    /// What the baseline looks like to an event in `minute`, without changing it.
    pub fn view_at(&self, minute: i64, alpha: f64) -> RateView {
        let minute = minute_of(minute);
        if self.count > 0 && minute == self.minute {
            return RateView {
                count: self.count.saturating_add(1),
                minutes: self.minutes,
                mean: self.mean as f64,
                variance: self.variance as f64,
            };
        }
        let folded = if self.count > 0 && minute > self.minute {
            self.folded(alpha)
        } else {
            *self
        };
        RateView {
            count: if minute < self.minute && self.count > 0 {
                // A late event: compare nothing new.
                0
            } else {
                1
            },
            minutes: folded.minutes,
            mean: folded.mean as f64,
            variance: folded.variance as f64,
        }
    }

    /// Counts one call at `minute`; returns false when the call is older than the current
    /// minute and so left out of the baseline.
    pub fn record(&mut self, minute: i64, alpha: f64) -> bool {
        let minute = minute_of(minute);
        if self.count == 0 {
            self.minute = minute;
            self.count = 1;
            return true;
        }
        if minute == self.minute {
            self.count = self.count.saturating_add(1);
            true
        } else if minute > self.minute {
            *self = self.folded(alpha);
            self.minute = minute;
            self.count = 1;
            true
        } else {
            false
        }
    }

    /// The current minute's count folded into the history.
    fn folded(&self, alpha: f64) -> RateBaseline {
        let count = self.count as f64;
        let (mean, variance) = if self.minutes == 0 {
            (count, 0.0)
        } else {
            let mean = self.mean as f64;
            let diff = count - mean;
            let increment = alpha * diff;
            (
                mean + increment,
                (1.0 - alpha) * (self.variance as f64 + diff * increment),
            )
        };
        RateBaseline {
            minute: self.minute,
            count: 0,
            minutes: self.minutes.saturating_add(1),
            mean: mean as f32,
            variance: variance as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_minutes_converge_to_their_rate() {
        let mut rate = RateBaseline::default();
        for minute in 0..200 {
            for _ in 0..(10 + minute % 3) {
                rate.record(minute, 0.1);
            }
        }
        let view = rate.view_at(200, 0.1);
        assert!((view.mean - 11.0).abs() < 1.0, "{view:?}");
        assert!(view.std_dev() < 2.0, "{view:?}");
        assert_eq!(view.minutes, 200);
        assert_eq!(view.count, 1);
    }

    #[test]
    fn idle_minutes_do_not_drag_the_mean_down() {
        let mut rate = RateBaseline::default();
        for hour in 0..10 {
            for minute in 0..5 {
                for _ in 0..500 {
                    rate.record(hour * 60 + minute, 0.1);
                }
            }
        }
        assert!(rate.view_at(10_000, 0.1).mean > 450.0);
    }

    #[test]
    fn the_view_counts_the_current_event() {
        let mut rate = RateBaseline::default();
        rate.record(5, 0.1);
        rate.record(5, 0.1);
        assert_eq!(rate.view_at(5, 0.1).count, 3);
        assert_eq!(rate.view_at(6, 0.1).count, 1);
        assert_eq!(rate.view_at(6, 0.1).minutes, 1);
    }

    #[test]
    fn minutes_past_32_bits_clamp_and_stay_ordered() {
        assert_eq!(minute_of(29_600_000), 29_600_000);
        assert_eq!(minute_of(i64::MAX), i32::MAX);
        assert_eq!(minute_of(i64::MIN), i32::MIN);
        let mut rate = RateBaseline::default();
        assert!(rate.record(i64::from(i32::MAX) + 5, 0.1));
        // The same clamped minute: counted in it, not as late.
        assert!(rate.record(i64::from(i32::MAX) + 9, 0.1));
        assert_eq!(rate.count, 2);
        assert!(!rate.record(0, 0.1));
    }

    #[test]
    fn late_events_leave_the_baseline_alone() {
        let mut rate = RateBaseline::default();
        rate.record(10, 0.1);
        let before = rate;
        assert!(!rate.record(9, 0.1));
        assert_eq!(rate, before);
        assert_eq!(rate.view_at(9, 0.1).count, 0);
    }
}
