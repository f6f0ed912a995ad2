//! Choosing a backend: pure functions of what the balancer knows about each
//! candidate, table-tested below.

use std::time::Duration;

use crate::spec::Algorithm;

/// What the picker knows about one backend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Effective weight (its job's weight for `weighted`, 1 otherwise, times
    /// its slow-start share); positive.
    pub weight: f64,
    /// Connections (tcp) or requests (http) in flight to it.
    pub active: u32,
    /// Recent response time (EWMA), µs; 0 when not measured yet.
    pub latency_us: f64,
    /// Marked down by a failed connection, for a backoff.
    pub down: bool,
    /// A hash of its allocation id, for `ip_hash`.
    pub key: u64,
}

/// Rotating state of a listener's picker.
#[derive(Clone, Debug, Default)]
pub struct Turns {
    /// Smooth weighted round robin's current weights, by candidate position.
    current: Vec<f64>,
    /// Where ties start, advanced on every pick.
    cursor: usize,
}

/// Chooses one of `cands` (never `exclude`), preferring those not down; `None`
/// only when no candidate is left. `client` is the hash of the client's IP.
pub fn pick(
    algorithm: Algorithm,
    cands: &[Candidate],
    turns: &mut Turns,
    client: u64,
    exclude: Option<usize>,
) -> Option<usize> {
    let allowed = |i: usize| Some(i) != exclude;
    let any_up = (0..cands.len()).any(|i| allowed(i) && !cands[i].down);
    let eligible: Vec<usize> = (0..cands.len())
        .filter(|&i| allowed(i) && (!any_up || !cands[i].down))
        .collect();
    if eligible.is_empty() {
        return None;
    }
    if turns.current.len() != cands.len() {
        turns.current = vec![0.0; cands.len()];
    }
    turns.cursor = turns.cursor.wrapping_add(1);
    let n = eligible.len();
    // Ties go to the first eligible candidate at or after the cursor.
    let rotated = |k: usize| eligible[(k + turns.cursor) % n];
    let least_by = |cost: &dyn Fn(&Candidate) -> f64| {
        (0..n).map(rotated).min_by(|&a, &b| {
            cost(&cands[a])
                .partial_cmp(&cost(&cands[b]))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    };
    match algorithm {
        Algorithm::RoundRobin | Algorithm::Weighted => {
            // nginx's smooth weighted round robin: even spacing, exact shares.
            let total: f64 = eligible.iter().map(|&i| cands[i].weight).sum();
            let mut best = eligible[0];
            for &i in &eligible {
                turns.current[i] += cands[i].weight;
                if turns.current[i] > turns.current[best] {
                    best = i;
                }
            }
            turns.current[best] -= total;
            Some(best)
        }
        Algorithm::LeastConn => least_by(&|c| (f64::from(c.active) + 1.0) / c.weight),
        Algorithm::LeastTime => {
            least_by(&|c| (c.latency_us + 1.0) * (f64::from(c.active) + 1.0) / c.weight)
        }
        Algorithm::IpHash => {
            // Weighted rendezvous hashing: a client moves only when its backend
            // leaves.
            eligible.iter().copied().max_by(|&a, &b| {
                let score = |c: &Candidate| {
                    let h = mix(client ^ c.key);
                    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                    -c.weight / u.max(f64::MIN_POSITIVE).ln()
                };
                score(&cands[a])
                    .partial_cmp(&score(&cands[b]))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        }
    }
}

/// A 64-bit finalizer (splitmix64): spreads close inputs far apart.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable hash of a string (FNV-1a, mixed).
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// A new backend's share of its weight `age` after it was first seen, with a
/// slow start of `ramp`: from a tenth up to all of it, linearly.
pub fn slow_start_share(age: Duration, ramp: Duration) -> f64 {
    if ramp.is_zero() || age >= ramp {
        return 1.0;
    }
    (age.as_secs_f64() / ramp.as_secs_f64()).clamp(0.1, 1.0)
}

/// How long a backend whose connection failed `failures` times in a row stays
/// down: 1 s, doubling, at most 30 s.
pub fn down_for(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// A token bucket: `rate` per second, up to `burst` saved.
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Duration,
}

impl Bucket {
    /// A full bucket at time `now` (any monotonic clock).
    pub fn new(rate: u32, burst: u32, now: Duration) -> Self {
        Bucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn take(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A circuit breaker: closed, open until a time, or half open (one trial out).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Duration>,
    trial_out: bool,
}

/// What a breaker says about a new request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Let it through.
    Yes,
    /// Let it through as the one trial of a half-open breaker.
    Trial,
    /// Refuse it: the breaker is open.
    No,
}

impl Breaker {
    /// Whether a request may go at `now`.
    pub fn admit(&mut self, now: Duration) -> Admit {
        match self.open_until {
            None => Admit::Yes,
            Some(until) if now < until => Admit::No,
            Some(_) if self.trial_out => Admit::No,
            Some(_) => {
                self.trial_out = true;
                Admit::Trial
            }
        }
    }

    /// A request succeeded: the breaker closes.
    pub fn success(&mut self) {
        *self = Breaker::default();
    }

    /// A request failed at `now`; `threshold` in a row (or a failed trial)
    /// open the breaker for `open_for`.
    pub fn failure(&mut self, now: Duration, threshold: u32, open_for: Duration) {
        self.failures += 1;
        if self.trial_out || self.failures >= threshold {
            self.open_until = Some(now + open_for);
            self.trial_out = false;
        }
    }

    /// Whether it refuses requests at `now`.
    pub fn is_open(&self, now: Duration) -> bool {
        self.open_until.is_some_and(|u| now < u || self.trial_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: f64) -> Candidate {
        Candidate {
            weight,
            active: 0,
            latency_us: 0.0,
            down: false,
            key: 0,
        }
    }

    fn counts(alg: Algorithm, cands: &[Candidate], n: usize) -> Vec<usize> {
        let mut turns = Turns::default();
        let mut out = vec![0; cands.len()];
        for i in 0..n {
            out[pick(alg, cands, &mut turns, i as u64, None).unwrap()] += 1;
        }
        out
    }

    #[test]
    fn round_robin_and_weighted_give_exact_shares() {
        let cases: &[(&[f64], usize, &[usize])] = &[
            (&[1.0, 1.0, 1.0], 3000, &[1000, 1000, 1000]),
            (&[1.0, 3.0], 400, &[100, 300]),
            (&[5.0, 1.0, 1.0], 700, &[500, 100, 100]),
            (&[1.0], 10, &[10]),
        ];
        for (weights, n, want) in cases {
            let cands: Vec<_> = weights.iter().map(|w| c(*w)).collect();
            assert_eq!(
                counts(Algorithm::Weighted, &cands, *n),
                *want,
                "{weights:?}"
            );
        }
    }

    #[test]
    fn smooth_round_robin_spaces_a_heavy_backend_out() {
        let cands = [c(2.0), c(1.0)];
        let mut turns = Turns::default();
        let seq: Vec<usize> = (0..6)
            .map(|_| pick(Algorithm::Weighted, &cands, &mut turns, 0, None).unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn down_backends_are_skipped_unless_all_are_down() {
        let mut cands = [c(1.0), c(1.0), c(1.0)];
        cands[1].down = true;
        let got = counts(Algorithm::RoundRobin, &cands, 100);
        assert_eq!(got[1], 0);
        assert_eq!(got[0] + got[2], 100);
        for x in cands.iter_mut() {
            x.down = true;
        }
        assert_eq!(counts(Algorithm::RoundRobin, &cands, 3), [1, 1, 1]);
    }

    #[test]
    fn exclude_is_never_chosen_and_none_is_left_when_it_is_the_only_one() {
        let cands = [c(1.0), c(1.0)];
        let mut turns = Turns::default();
        for _ in 0..10 {
            assert_eq!(
                pick(Algorithm::LeastConn, &cands, &mut turns, 0, Some(0)),
                Some(1)
            );
        }
        assert_eq!(
            pick(Algorithm::RoundRobin, &cands[..1], &mut turns, 0, Some(0)),
            None
        );
        assert_eq!(pick(Algorithm::IpHash, &[], &mut turns, 0, None), None);
    }

    #[test]
    fn least_conn_takes_the_idle_one_and_rotates_ties() {
        let mut cands = [c(1.0), c(1.0), c(1.0)];
        cands[0].active = 3;
        cands[1].active = 1;
        cands[2].active = 0;
        let mut turns = Turns::default();
        assert_eq!(
            pick(Algorithm::LeastConn, &cands, &mut turns, 0, None),
            Some(2)
        );
        let ties = [c(1.0), c(1.0), c(1.0)];
        let got = counts(Algorithm::LeastConn, &ties, 30);
        assert_eq!(got, [10, 10, 10]);
        // Per weight: 4 open on weight 4 costs what 1 open on weight 1 does.
        let mut w = [c(4.0), c(1.0)];
        w[0].active = 2;
        w[1].active = 1;
        assert_eq!(pick(Algorithm::LeastConn, &w, &mut turns, 0, None), Some(0));
    }

    #[test]
    fn least_time_prefers_fast_and_unmeasured_backends() {
        let mut cands = [c(1.0), c(1.0), c(1.0)];
        cands[0].latency_us = 900.0;
        cands[1].latency_us = 100.0;
        cands[2].latency_us = 400.0;
        let mut turns = Turns::default();
        assert_eq!(
            pick(Algorithm::LeastTime, &cands, &mut turns, 0, None),
            Some(1)
        );
        cands[1].active = 9;
        assert_eq!(
            pick(Algorithm::LeastTime, &cands, &mut turns, 0, None),
            Some(2)
        );
        cands[0].latency_us = 0.0;
        assert_eq!(
            pick(Algorithm::LeastTime, &cands, &mut turns, 0, None),
            Some(0)
        );
    }

    #[test]
    fn ip_hash_keeps_a_client_and_moves_only_the_clients_of_a_leaver() {
        let cands: Vec<_> = (0..3)
            .map(|k| Candidate {
                key: hash_str(&format!("alloc-{k}")),
                ..c(1.0)
            })
            .collect();
        let mut turns = Turns::default();
        let mut spread = [0; 3];
        let mut before = Vec::new();
        for client in 0..3000u64 {
            let h = mix(client);
            let a = pick(Algorithm::IpHash, &cands, &mut turns, h, None).unwrap();
            let again = pick(Algorithm::IpHash, &cands, &mut turns, h, None).unwrap();
            assert_eq!(a, again);
            spread[a] += 1;
            before.push(a);
        }
        for s in spread {
            assert!((850..=1150).contains(&s), "{spread:?}");
        }
        // Without backend 2, clients of 0 and 1 stay put.
        for (client, was) in before.iter().enumerate() {
            let now = pick(
                Algorithm::IpHash,
                &cands[..2],
                &mut turns,
                mix(client as u64),
                None,
            )
            .unwrap();
            if *was != 2 {
                assert_eq!(now, *was);
            }
        }
    }

    #[test]
    fn slow_start_ramps_from_a_tenth() {
        let ramp = Duration::from_secs(10);
        let cases = [(0, 0.1), (5, 0.5), (10, 1.0), (60, 1.0)];
        for (age, want) in cases {
            let got = slow_start_share(Duration::from_secs(age), ramp);
            assert!((got - want).abs() < 1e-9, "{age}: {got}");
        }
        assert_eq!(slow_start_share(Duration::ZERO, Duration::ZERO), 1.0);
    }

    #[test]
    fn down_time_doubles_to_a_cap() {
        let got: Vec<u64> = (1..=8).map(|f| down_for(f).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let s = Duration::from_secs;
        let mut b = Bucket::new(10, 5, s(0));
        let first: usize = (0..20).filter(|_| b.take(s(0))).count();
        assert_eq!(first, 5);
        let later: usize = (0..20).filter(|_| b.take(s(1))).count();
        assert_eq!(later, 5, "refilled to the burst, not beyond");
        let mut b = Bucket::new(10, 10, s(0));
        let _ = (0..10).filter(|_| b.take(s(0))).count();
        assert!(b.take(Duration::from_millis(100)));
        assert!(!b.take(Duration::from_millis(100)));
    }

    #[test]
    fn breaker_opens_after_failures_and_closes_after_a_good_trial() {
        let s = Duration::from_secs;
        let mut b = Breaker::default();
        for _ in 0..2 {
            assert_eq!(b.admit(s(0)), Admit::Yes);
            b.failure(s(0), 3, s(10));
        }
        assert_eq!(b.admit(s(0)), Admit::Yes);
        b.failure(s(0), 3, s(10));
        assert_eq!(b.admit(s(5)), Admit::No);
        assert!(b.is_open(s(5)));
        assert_eq!(b.admit(s(10)), Admit::Trial);
        assert_eq!(b.admit(s(10)), Admit::No, "one trial at a time");
        b.failure(s(10), 3, s(10));
        assert_eq!(b.admit(s(15)), Admit::No, "a failed trial opens it again");
        assert_eq!(b.admit(s(20)), Admit::Trial);
        b.success();
        assert_eq!(b.admit(s(20)), Admit::Yes);
        assert!(!b.is_open(s(20)));
    }
}
