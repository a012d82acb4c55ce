//! The phi-accrual failure detector (Hayashibara et al.), with a hard cap.
//!
//! ractor_cluster keeps a frozen or partitioned peer "connected" forever, so
//! each node heartbeats the peers it watches (see `watch_ring`) and judges
//! each by how surprising its current silence is given the gaps seen so
//! far: phi = -log10(P(gap > silence)). Regular peers are found unreachable
//! soon after they stop; irregular ones get more slack. Whatever phi says, a
//! peer silent for `max_silence` is unreachable, which bounds detection
//! time. A verdict here is one watcher's opinion: `unreachability` decides
//! when enough watchers agree. Pure: callers pass the time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use herd_config::FailureDetectorSettings;

/// Gaps remembered per peer.
const WINDOW: usize = 200;

/// One peer's detector.
#[derive(Clone, Debug)]
pub struct PhiAccrualDetector {
    settings: FailureDetectorSettings,
    /// How many standard deviations past the mean gap phi reaches the
    /// threshold (phi depends on nothing else), so the moment a silent peer
    /// becomes unreachable can be computed ahead.
    threshold_deviations: f64,
    gaps_ms: VecDeque<f64>,
    sum: f64,
    sum_of_squares: f64,
    last_heard: Instant,
}

impl PhiAccrualDetector {
    /// A detector for a peer heard from at `now`. It starts with one gap of
    /// the heartbeat interval, so a peer that never speaks is still judged.
    pub fn new(settings: FailureDetectorSettings, now: Instant) -> Self {
        let first = settings.heartbeat_interval.as_secs_f64() * 1000.0;
        let mut detector = PhiAccrualDetector {
            threshold_deviations: deviations_for(settings.threshold),
            settings,
            gaps_ms: VecDeque::with_capacity(WINDOW),
            sum: 0.0,
            sum_of_squares: 0.0,
            last_heard: now,
        };
        detector.push_gap(first);
        detector
    }

    /// Records a message from the peer.
    pub fn heard(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_heard).as_secs_f64() * 1000.0;
        self.last_heard = now;
        self.push_gap(gap);
    }

    fn push_gap(&mut self, gap_ms: f64) {
        if self.gaps_ms.len() == WINDOW
            && let Some(old) = self.gaps_ms.pop_front()
        {
            self.sum -= old;
            self.sum_of_squares -= old * old;
        }
        self.gaps_ms.push_back(gap_ms);
        self.sum += gap_ms;
        self.sum_of_squares += gap_ms * gap_ms;
    }

    /// Does not count `pause` against the peer: this node itself was
    /// stopped or starved that long, so the peer's answers could not be
    /// heard, whatever it did. Never moves the last contact past `now`.
    pub fn excuse(&mut self, pause: Duration, now: Instant) {
        self.last_heard = (self.last_heard + pause).min(now).max(self.last_heard);
    }

    /// How long the peer has been silent.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_heard)
    }

    /// The expected gap (with the acceptable pause) and its deviation, ms.
    fn distribution(&self) -> (f64, f64) {
        let count = self.gaps_ms.len() as f64;
        let mean = self.sum / count + self.settings.acceptable_pause.as_secs_f64() * 1000.0;
        let variance = (self.sum_of_squares / count - (self.sum / count).powi(2)).max(0.0);
        let std_dev = variance
            .sqrt()
            .max(self.settings.min_std_dev.as_secs_f64() * 1000.0);
        (mean, std_dev)
    }

    /// Suspicion level at `now`.
    pub fn phi(&self, now: Instant) -> f64 {
        let (mean, std_dev) = self.distribution();
        let silence = self.silence(now).as_secs_f64() * 1000.0;
        phi_at((silence - mean) / std_dev)
    }

    /// True when the peer is unreachable: past the threshold or the cap.
    pub fn is_down(&self, now: Instant) -> bool {
        self.silence(now) >= self.settings.max_silence || self.phi(now) >= self.settings.threshold
    }

    /// When the peer becomes unreachable if it stays silent: a caller that
    /// judges on a coarse tick can judge again at this moment instead of
    /// up to a tick later.
    pub fn unreachable_at(&self) -> Instant {
        let (mean, std_dev) = self.distribution();
        let by_phi = Duration::from_secs_f64(
            ((mean + self.threshold_deviations * std_dev) / 1000.0).max(0.0),
        );
        self.last_heard + by_phi.min(self.settings.max_silence)
    }

    /// True when the peer is late enough to be suspect (half the threshold).
    pub fn is_suspect(&self, now: Instant) -> bool {
        self.phi(now) >= self.settings.threshold / 2.0
    }
}

/// -log10 of the probability that a normally distributed gap exceeds the
/// mean by `y` standard deviations, using the logistic approximation of the
/// normal CDF (as Akka does), which stays finite far in the tail.
fn phi_at(y: f64) -> f64 {
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let p_later = if y > 0.0 {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    -p_later.max(f64::MIN_POSITIVE).log10()
}

/// The `y` at which [`phi_at`] reaches `threshold` (phi grows with `y`), by
/// bisection to well under a microsecond of silence.
fn deviations_for(threshold: f64) -> f64 {
    let (mut low, mut high) = (-10.0_f64, 100.0_f64);
    for _ in 0..100 {
        let middle = (low + high) / 2.0;
        if phi_at(middle) >= threshold {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_moment_a_silent_peer_becomes_unreachable_is_known_ahead() {
        let start = Instant::now();
        let regular = regular_peer(start);
        let mut irregular = PhiAccrualDetector::new(FailureDetectorSettings::default(), start);
        let mut at = start;
        for i in 0..60 {
            at += Duration::from_millis(if i % 2 == 0 { 50 } else { 900 });
            irregular.heard(at);
        }
        for detector in [regular, irregular] {
            let moment = detector.unreachable_at();
            assert!(!detector.is_down(moment - Duration::from_millis(1)));
            assert!(detector.is_down(moment + Duration::from_millis(1)));
        }
    }

    fn regular_peer(start: Instant) -> PhiAccrualDetector {
        let mut detector = PhiAccrualDetector::new(FailureDetectorSettings::default(), start);
        for i in 1..=40 {
            detector.heard(start + Duration::from_millis(250 * i));
        }
        detector
    }

    #[test]
    fn a_regular_peer_is_fine_while_it_speaks_and_down_soon_after_it_stops() {
        let start = Instant::now();
        let detector = regular_peer(start);
        let last = start + Duration::from_millis(250 * 40);
        assert!(!detector.is_suspect(last + Duration::from_millis(300)));
        assert!(!detector.is_down(last + Duration::from_millis(900)));
        // Find when it is declared down: between 1 s and the 2.5 s cap.
        let detected = (1..=3000)
            .map(Duration::from_millis)
            .find(|after| detector.is_down(last + *after))
            .unwrap();
        assert!(
            detected > Duration::from_millis(1000) && detected < Duration::from_millis(2500),
            "{detected:?}"
        );
    }

    #[test]
    fn an_irregular_peer_gets_more_slack_but_never_beyond_the_cap() {
        let start = Instant::now();
        let mut detector = PhiAccrualDetector::new(FailureDetectorSettings::default(), start);
        let mut at = start;
        for i in 0..60 {
            at += Duration::from_millis(if i % 2 == 0 { 50 } else { 900 });
            detector.heard(at);
        }
        let regular = regular_peer(start);
        let regular_last = start + Duration::from_millis(250 * 40);
        let quiet = Duration::from_millis(1900);
        assert!(regular.is_down(regular_last + quiet));
        assert!(
            !detector.is_down(at + quiet),
            "phi {}",
            detector.phi(at + quiet)
        );
        assert!(detector.is_down(at + Duration::from_millis(2500)));
    }

    #[test]
    fn a_pause_of_this_node_is_not_counted_as_the_peers_silence() {
        let start = Instant::now();
        let mut detector = regular_peer(start);
        let last = start + Duration::from_millis(250 * 40);
        let resumed = last + Duration::from_millis(3000);
        assert!(detector.is_down(resumed));
        detector.excuse(Duration::from_millis(2800), resumed);
        assert_eq!(detector.silence(resumed), Duration::from_millis(200));
        assert!(!detector.is_suspect(resumed));
        detector.excuse(Duration::from_secs(60), resumed);
        assert_eq!(detector.silence(resumed), Duration::ZERO, "never past now");
    }

    #[test]
    fn phi_grows_with_silence() {
        let values: Vec<f64> = [-4.0, -2.0, 0.0, 2.0, 4.0, 12.0]
            .iter()
            .map(|y| phi_at(*y))
            .collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
        assert!(
            (phi_at(0.0) - 0.301).abs() < 0.01,
            "at the mean, P(later) is one half"
        );
        let y = deviations_for(8.0);
        assert!((phi_at(y) - 8.0).abs() < 1e-6, "{y}");
    }
}
