//! What each agent type asks of the pool, measured per interval and smoothed
//! so one burst does not swing the weights.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_protocol::AgentType;

/// Weight of the newest interval in the smoothed figures.
const SMOOTHING: f64 = 0.5;

/// Service time assumed for a type until one of its attempts has ended.
pub const DEFAULT_SERVICE_TIME_S: f64 = 1.0;

/// One agent type's demand, as the rebalancer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeDemand {
    /// Tasks waiting (pending or awaiting a retry).
    pub queued: u64,
    /// Attempts running now.
    pub running: u32,
    /// Submissions per second (smoothed).
    pub arrival_rate: f64,
    /// Mean handler run time in seconds (smoothed).
    pub service_time_s: f64,
    /// Fraction of ended attempts that succeeded (smoothed; 1 with no data).
    pub success_rate: f64,
    /// Mean handler-reported quality score in 0..=1 (smoothed; 1 with no data).
    pub quality: f64,
}

impl TypeDemand {
    /// A type with nothing queued, running or arriving.
    pub fn idle() -> Self {
        TypeDemand {
            queued: 0,
            running: 0,
            arrival_rate: 0.0,
            service_time_s: DEFAULT_SERVICE_TIME_S,
            success_rate: 1.0,
            quality: 1.0,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Interval {
    arrivals: u64,
    ended: u64,
    succeeded: u64,
    run_time_s: f64,
    scores: u64,
    score_sum: f64,
}

#[derive(Clone, Debug)]
struct Smoothed {
    arrival_rate: f64,
    service_time_s: Option<f64>,
    success_rate: Option<f64>,
    quality: Option<f64>,
}

fn blend(previous: Option<f64>, sample: f64) -> f64 {
    previous.map_or(sample, |p| p + SMOOTHING * (sample - p))
}

/// Blends this interval's mean (`sum / count`) into `previous`; an interval
/// without samples leaves it as it was.
fn fold_in(previous: Option<f64>, count: u64, sum: f64) -> Option<f64> {
    if count == 0 {
        previous
    } else {
        Some(blend(previous, sum / count as f64))
    }
}

/// Collects events between decisions and turns them into [`TypeDemand`]s.
#[derive(Clone, Debug, Default)]
pub struct DemandTracker {
    current: BTreeMap<AgentType, Interval>,
    smoothed: BTreeMap<AgentType, Smoothed>,
}

impl DemandTracker {
    /// `count` tasks of `agent_type` were submitted.
    pub fn arrived(&mut self, agent_type: &AgentType, count: u64) {
        self.interval(agent_type).arrivals += count;
    }

    /// An attempt ended after `run_time`; `score` is the handler's quality
    /// score, if it gave one (clamped to 0..=1).
    pub fn ended(
        &mut self,
        agent_type: &AgentType,
        succeeded: bool,
        run_time: Duration,
        score: Option<f64>,
    ) {
        let interval = self.interval(agent_type);
        interval.ended += 1;
        interval.succeeded += u64::from(succeeded);
        interval.run_time_s += run_time.as_secs_f64();
        if let Some(score) = score.filter(|s| s.is_finite()) {
            interval.scores += 1;
            interval.score_sum += score.clamp(0.0, 1.0);
        }
    }

    /// Closes the interval that lasted `elapsed` and returns each type's
    /// demand, given what is queued and running now.
    pub fn close_interval<'a>(
        &mut self,
        elapsed: Duration,
        now: impl IntoIterator<Item = (&'a AgentType, u64, u32)>,
    ) -> BTreeMap<AgentType, TypeDemand> {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let mut result = BTreeMap::new();
        for (agent_type, queued, running) in now {
            let interval = self.current.remove(agent_type).unwrap_or_default();
            let previous = self.smoothed.get(agent_type);
            let rate = interval.arrivals as f64 / seconds;
            let smoothed = Smoothed {
                arrival_rate: blend(previous.map(|p| p.arrival_rate), rate),
                service_time_s: fold_in(
                    previous.and_then(|p| p.service_time_s),
                    interval.ended,
                    interval.run_time_s,
                ),
                success_rate: fold_in(
                    previous.and_then(|p| p.success_rate),
                    interval.ended,
                    interval.succeeded as f64,
                ),
                quality: fold_in(
                    previous.and_then(|p| p.quality),
                    interval.scores,
                    interval.score_sum,
                ),
            };
            result.insert(
                agent_type.clone(),
                TypeDemand {
                    queued,
                    running,
                    arrival_rate: smoothed.arrival_rate,
                    // A sub-millisecond handler still occupies a slot.
                    service_time_s: smoothed
                        .service_time_s
                        .unwrap_or(DEFAULT_SERVICE_TIME_S)
                        .max(0.001),
                    success_rate: smoothed.success_rate.unwrap_or(1.0),
                    quality: smoothed.quality.unwrap_or(1.0),
                },
            );
            self.smoothed.insert(agent_type.clone(), smoothed);
        }
        self.current.clear();
        result
    }

    fn interval(&mut self, agent_type: &AgentType) -> &mut Interval {
        // Called per submission batch and per ended attempt: clone the key
        // only the first time a type shows up in an interval.
        if !self.current.contains_key(agent_type) {
            self.current.insert(agent_type.clone(), Interval::default());
        }
        self.current.get_mut(agent_type).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_means_come_from_the_interval_and_are_smoothed() {
        let echo = AgentType::new("echo");
        let mut tracker = DemandTracker::default();
        tracker.arrived(&echo, 10);
        tracker.ended(&echo, true, Duration::from_millis(200), Some(0.5));
        tracker.ended(&echo, false, Duration::from_millis(400), None);
        let first = tracker.close_interval(Duration::from_secs(2), [(&echo, 7, 2)]);
        let d = &first[&echo];
        assert_eq!((d.queued, d.running), (7, 2));
        assert!((d.arrival_rate - 5.0).abs() < 1e-9);
        assert!((d.service_time_s - 0.3).abs() < 1e-9);
        assert!((d.success_rate - 0.5).abs() < 1e-9);
        assert!((d.quality - 0.5).abs() < 1e-9);

        // A quiet interval halves the arrival rate and keeps the means.
        let second = tracker.close_interval(Duration::from_secs(1), [(&echo, 0, 0)]);
        let d = &second[&echo];
        assert!((d.arrival_rate - 2.5).abs() < 1e-9);
        assert!((d.service_time_s - 0.3).abs() < 1e-9);
    }

    #[test]
    fn a_type_never_seen_gets_neutral_figures() {
        let mut tracker = DemandTracker::default();
        let t = AgentType::new("ranking");
        let d = tracker.close_interval(Duration::from_secs(1), [(&t, 0, 0)]);
        assert_eq!(d[&t], TypeDemand::idle());
    }
}
