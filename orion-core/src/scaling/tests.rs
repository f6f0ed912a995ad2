//! The decision over recorded metric series: HPA's examples, tolerance,
//! cooldowns, stabilization, several policies, schedule windows, a count set
//! by hand, and loads that must not make it flap.

use super::*;

const S: u64 = 1_000;

fn spec(policies: Vec<ScalingPolicy>) -> ScalingSpec {
    ScalingSpec {
        min: 1,
        max: 10,
        policies,
        cooldown_up: Duration::from_secs(60),
        cooldown_down: Duration::from_secs(300),
        evaluation_interval: Duration::from_secs(15),
        stabilization_window: Duration::from_secs(300),
        tolerance: 0.1,
    }
}

fn cpu_target(value: f64) -> ScalingPolicy {
    ScalingPolicy::Target {
        metric: Metric::Cpu,
        value,
    }
}

fn obs(at_s: u64, current: u32, metrics: &[(Metric, f64)]) -> Observation {
    Observation {
        at_ms: 1_700_000_000_000 + at_s * S,
        current,
        metrics: metrics.iter().cloned().collect(),
    }
}

/// HPA's formula and tolerance: desired = ⌈current × metric / target⌉, and
/// a ratio within 10% of 1 holds.
#[test]
fn the_target_policy_follows_hpas_formula_and_tolerance() {
    let s = spec(vec![cpu_target(50.0)]);
    let none = ScalingMemory::default();
    for (current, cpu, want) in [
        (3, 100.0, 6),  // twice the target: twice the instances
        (2, 90.0, 4),   // ⌈3.6⌉
        (3, 54.0, 3),   // ratio 1.08: within tolerance
        (3, 56.0, 4),   // ratio 1.12: ⌈3.36⌉
        (3, 46.0, 3),   // ratio 0.92: within tolerance
        (4, 10.0, 1),   // ⌈0.8⌉, and no change yet to stabilize against
        (4, 500.0, 10), // capped at max
    ] {
        let d = decide(&s, &obs(0, current, &[(Metric::Cpu, cpu)]), &none);
        assert_eq!(d.to, want, "{current} at cpu {cpu}: {}", d.reason);
    }
    // Nothing reported: holds, and says so.
    let d = decide(&s, &obs(0, 3, &[]), &none);
    assert_eq!((d.to, d.reason.as_str()), (3, "no metric reported yet"));
}

/// A step policy adds past `above` and removes past `below`; several
/// policies: the largest wanted count wins.
#[test]
fn steps_and_several_policies() {
    let step_up = ScalingPolicy::Step {
        metric: Metric::RequestsPerSecond,
        above: Some(800.0),
        add: Some(2),
        below: None,
        remove: None,
    };
    let step_down = ScalingPolicy::Step {
        metric: Metric::Cpu,
        above: None,
        add: None,
        below: Some(20.0),
        remove: Some(1),
    };
    let s = spec(vec![cpu_target(70.0), step_up, step_down]);
    let m = ScalingMemory::default();
    let rps = Metric::RequestsPerSecond;
    // Target wants ⌈3 × 84/70⌉ = 4; the step wants 5: 5.
    let d = decide(
        &s,
        &obs(0, 3, &[(Metric::Cpu, 84.0), (rps.clone(), 900.0)]),
        &m,
    );
    assert_eq!(d.to, 5, "{}", d.reason);
    assert!(
        d.reason.contains("requests_per_second 900.0 above 800"),
        "{}",
        d.reason
    );
    // Quiet: target ⌈3 × 10/70⌉ = 1, step down 2: the larger, 2.
    let d = decide(&s, &obs(0, 3, &[(Metric::Cpu, 10.0), (rps, 100.0)]), &m);
    assert_eq!(d.to, 2, "{}", d.reason);
}

/// Runs `s` every 15 s from `from_s` to `to_s` (seconds), the total demand
/// at each time given by `demand(t)` in percent of one instance (so the
/// average cpu is demand / count): returns the count at the end and every
/// change made, (time, from, to).
fn run(
    s: &ScalingSpec,
    start: u32,
    secs: u64,
    demand: impl Fn(u64) -> f64,
) -> (u32, Vec<(u64, u32, u32)>) {
    let mut current = start;
    let mut memory = ScalingMemory::default();
    let mut changes = Vec::new();
    let mut t = 0;
    while t <= secs {
        let avg = demand(t) / f64::from(current.max(1));
        let d = decide(s, &obs(t, current, &[(Metric::Cpu, avg)]), &memory);
        if d.to != current {
            changes.push((t, current, d.to));
            current = d.to;
        }
        memory = d.memory;
        t += 15;
    }
    (current, changes)
}

/// A load that steps up scales up at the first evaluation; when it goes,
/// the count holds through the stabilization window and the down cooldown,
/// then comes down once.
#[test]
fn up_at_once_down_after_the_window_and_the_cooldown() {
    let s = spec(vec![cpu_target(70.0)]);
    // 2 instances at 70% (demand 140); at 60 s the demand triples; at 600 s
    // it is back.
    let (end, changes) = run(&s, 2, 1_800, |t| {
        if (60..600).contains(&t) {
            420.0
        } else {
            140.0
        }
    });
    assert_eq!(end, 2);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        changes[0],
        (60, 2, 6),
        "up at the first evaluation of the load"
    );
    let (down_at, from, to) = changes[1];
    assert_eq!((from, to), (6, 2));
    // The last high recommendation was at 585 s: down once the window
    // (300 s) has passed it.
    assert!(
        (885..=900).contains(&down_at),
        "down at {down_at}: {changes:?}"
    );
}

/// Cooldowns: a second step up waits `cooldown_up` after the first change;
/// a scale-down waits `cooldown_down` after any change.
#[test]
fn cooldowns_hold_the_next_change() {
    let mut s = spec(vec![cpu_target(50.0)]);
    s.stabilization_window = Duration::ZERO;
    let mut m = ScalingMemory::default();
    let d = decide(&s, &obs(0, 2, &[(Metric::Cpu, 100.0)]), &m);
    assert_eq!(d.to, 4);
    m = d.memory;
    let d = decide(&s, &obs(30, 4, &[(Metric::Cpu, 100.0)]), &m);
    assert_eq!(d.to, 4, "{}", d.reason);
    assert!(d.reason.contains("cooling down"), "{}", d.reason);
    let d = decide(&s, &obs(60, 4, &[(Metric::Cpu, 100.0)]), &d.memory);
    assert_eq!(d.to, 8, "{}", d.reason);
    m = d.memory;
    let d = decide(&s, &obs(120, 8, &[(Metric::Cpu, 5.0)]), &m);
    assert_eq!(
        d.to, 8,
        "no scale-down within 300 s of the last change: {}",
        d.reason
    );
    let d = decide(&s, &obs(360, 8, &[(Metric::Cpu, 5.0)]), &d.memory);
    assert_eq!(d.to, 1, "{}", d.reason);
}

/// A load that swings around the target within the tolerance changes
/// nothing; one that swings hard every minute for an hour scales up once and
/// never flaps down (the stabilization window always holds a high one).
#[test]
fn an_oscillating_load_does_not_flap() {
    let s = spec(vec![cpu_target(70.0)]);
    let (_, changes) = run(&s, 4, 3_600, |t| {
        280.0 + if (t / 30) % 2 == 0 { 20.0 } else { -20.0 }
    });
    assert!(changes.is_empty(), "within tolerance: {changes:?}");
    let (end, changes) = run(
        &s,
        2,
        3_600,
        |t| if (t / 60) % 2 == 0 { 140.0 } else { 420.0 },
    );
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(end, 6);
    // Without stabilization or cooldowns it would flap: the counter-check.
    let mut loose = s.clone();
    loose.stabilization_window = Duration::ZERO;
    loose.cooldown_down = Duration::ZERO;
    loose.cooldown_up = Duration::ZERO;
    let (_, flaps) = run(&loose, 2, 3_600, |t| {
        if (t / 60) % 2 == 0 {
            140.0
        } else {
            420.0
        }
    });
    assert!(flaps.len() > 50, "{} changes", flaps.len());
}

/// A schedule window moves the bounds while open: the count rises to its
/// `min` at once (cooldowns do not hold bounds back) and may fall back
/// when it closes.
#[test]
fn a_schedule_window_moves_the_bounds() {
    let mut s = spec(vec![
        cpu_target(70.0),
        ScalingPolicy::Schedule {
            cron: "0 9 * * *".into(),
            time_zone: Some("UTC".into()),
            duration: Duration::from_secs(8 * 3600),
            min: Some(4),
            max: None,
        },
    ]);
    s.min = 2;
    // 2023-11-14 09:30 UTC is 1_699_954_200.
    let nine_thirty = 1_699_954_200_000;
    let at = |ms: u64, current| Observation {
        at_ms: ms,
        current,
        metrics: [(Metric::Cpu, 70.0)].into(),
    };
    let recent_change = ScalingMemory {
        last_change_ms: nine_thirty - 10 * S,
        ..ScalingMemory::default()
    };
    assert_eq!(bounds(&s, nine_thirty), (4, 10, Some(1)));
    let d = decide(&s, &at(nine_thirty, 2), &recent_change);
    assert_eq!(d.to, 4, "{}", d.reason);
    assert!(d.reason.contains("schedule (policy 1)"), "{}", d.reason);
    // 08:30 (before) and 17:30 (after): the policy's own bounds.
    assert_eq!(bounds(&s, nine_thirty - 3_600_000).0, 2);
    assert_eq!(bounds(&s, nine_thirty + 8 * 3_600_000).0, 2);
}

/// A count set by hand suspends the policy until `manual_until_ms`; bounds
/// still hold.
#[test]
fn a_count_set_by_hand_suspends_the_policy() {
    let s = spec(vec![cpu_target(50.0)]);
    let o = obs(0, 3, &[(Metric::Cpu, 100.0)]);
    let m = ScalingMemory {
        manual_until_ms: o.at_ms + 60 * S,
        ..ScalingMemory::default()
    };
    let d = decide(&s, &o, &m);
    assert_eq!(
        (d.to, d.reason.as_str()),
        (3, "suspended: the count was set by hand")
    );
    let d = decide(&s, &obs(61, 3, &[(Metric::Cpu, 100.0)]), &m);
    assert_eq!(d.to, 6);
    let d = decide(&s, &obs(0, 12, &[]), &m);
    assert_eq!(d.to, 10, "above max: back in bounds even while suspended");
}

/// Bad policies name the field.
#[test]
fn bad_policies_name_the_field() {
    let ok = spec(vec![cpu_target(70.0)]);
    assert!(ok.problems("scaling", 1_000).is_empty());
    let with = |f: &dyn Fn(&mut ScalingSpec)| {
        let mut s = ok.clone();
        f(&mut s);
        s.problems("scaling", 1_000)
    };
    type Problems = Vec<(String, String)>;
    let cases: Vec<(Problems, &str, &str)> = vec![
        (with(&|s| s.min = 11), "scaling.min", "above max"),
        (with(&|s| s.max = 2_000), "scaling.max", "cap of 1000"),
        (
            with(&|s| s.policies.clear()),
            "scaling.policies",
            "at least one",
        ),
        (
            with(&|s| s.policies = vec![cpu_target(0.0)]),
            "scaling.policies[0].target.value",
            "above 0",
        ),
        (
            with(&|s| s.policies = vec![cpu_target(120.0)]),
            "scaling.policies[0].target.value",
            "above 100",
        ),
        (
            with(&|s| {
                s.policies = vec![ScalingPolicy::Step {
                    metric: Metric::Cpu,
                    above: Some(80.0),
                    add: None,
                    below: None,
                    remove: None,
                }]
            }),
            "scaling.policies[0].step",
            "above with add",
        ),
        (
            with(&|s| {
                s.policies = vec![ScalingPolicy::Schedule {
                    cron: "0 25 * * *".into(),
                    time_zone: Some("Mars/Base".into()),
                    duration: Duration::ZERO,
                    min: None,
                    max: None,
                }]
            }),
            "scaling.policies[0].schedule.cron",
            "hour",
        ),
        (
            with(&|s| s.tolerance = 1.5),
            "scaling.tolerance",
            "between 0 and 1",
        ),
    ];
    for (problems, field, says) in cases {
        assert!(
            problems.iter().any(|(f, p)| f == field && p.contains(says)),
            "{field}: {problems:?}"
        );
    }
    // Unknown metrics and unparsable cooldowns fail to parse, naming them.
    let e = serde_json::from_str::<ScalingSpec>(
        r#"{"min":1,"max":2,"policies":[{"target":{"metric":"gpu","value":50}}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("\"gpu\" is not a metric"), "{e}");
    let e = serde_json::from_str::<ScalingSpec>(
        r#"{"min":1,"max":2,"policies":[],"cooldown_up":"soon"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("soon") || e.contains("duration"), "{e}");
    let m: Metric = "custom:queue_depth".parse().unwrap();
    assert_eq!(m.to_string(), "custom:queue_depth");
}
