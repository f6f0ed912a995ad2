//! A periodic batch job's `schedule`: a cron pattern (croner; 5 fields, or 6
//! with seconds first) in a time zone (chrono-tz), what to do when a run is
//! still going at the next tick, how late a tick may still start, and how
//! many finished runs to keep.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// When and how a periodic job launches its runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// `*/5 * * * *` (minute hour day month weekday), or with a seconds field
    /// first (`*/2 * * * * *`).
    pub cron: String,
    /// An IANA time zone (`Europe/Paris`). Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// What a tick does while an earlier run is still going. Default allow.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// A tick not launched within this long (no leader at the time, say) is
    /// recorded as missed instead. Default 60 s.
    #[serde(default = "defaults::starting_deadline", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub starting_deadline: Duration,
    /// Finished runs kept. Default 3 successful, 1 failed.
    #[serde(default)]
    pub history: History,
}

/// What a tick does while an earlier run is still going.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Launch another run beside it.
    #[default]
    Allow,
    /// Skip the tick, and record the skip.
    Forbid,
    /// Stop the running one and launch.
    Replace,
}

/// How many finished runs a periodic job keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// Runs that completed. Default 3.
    #[serde(default = "defaults::successful")]
    pub successful: u32,
    /// Runs that failed. Default 1.
    #[serde(default = "defaults::failed")]
    pub failed: u32,
}

impl Default for History {
    fn default() -> Self {
        History {
            successful: defaults::successful(),
            failed: defaults::failed(),
        }
    }
}

mod defaults {
    use std::time::Duration;
    pub fn starting_deadline() -> Duration {
        Duration::from_secs(60)
    }
    pub fn successful() -> u32 {
        3
    }
    pub fn failed() -> u32 {
        1
    }
}

/// The names of a cron pattern's fields, by count of fields.
fn field_names(n: usize) -> &'static [&'static str] {
    match n {
        6 => &[
            "second",
            "minute",
            "hour",
            "day of month",
            "month",
            "day of week",
        ],
        _ => &["minute", "hour", "day of month", "month", "day of week"],
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses a pattern, or says what is wrong and where (`field 2 (hour) "25"`).
pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    if !(5..=6).contains(&fields.len()) && !pattern.trim_start().starts_with('@') {
        return Err(format!(
            "{pattern:?} has {} fields: give 5 (minute hour day month weekday) or 6 (seconds first)",
            fields.len()
        ));
    }
    parser().parse(pattern).map_err(|e| {
        // Find the first field that fails on its own, the others being `*`.
        let names = field_names(fields.len());
        let culprit = (0..fields.len()).find(|&i| {
            let probe: Vec<&str> = (0..fields.len())
                .map(|j| if j == i { fields[j] } else { "*" })
                .collect();
            parser().parse(&probe.join(" ")).is_err()
        });
        match culprit {
            Some(i) => format!(
                "{pattern:?}: field {} ({}) {:?} is not valid: {e}",
                i + 1,
                names.get(i).copied().unwrap_or("?"),
                fields[i]
            ),
            None => format!("{pattern:?}: {e}"),
        }
    })
}

/// Parses a time zone name (`Europe/Paris`, `UTC`).
pub fn parse_time_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("{name:?} is not a known time zone (IANA names, like Europe/Paris)"))
}

impl ScheduleSpec {
    /// What is wrong with it, each with the field under `at`.
    pub fn problems(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(p) = parse_cron(&self.cron) {
            out.push((format!("{at}.cron"), p));
        }
        if let Some(tz) = &self.time_zone {
            if let Err(p) = parse_time_zone(tz) {
                out.push((format!("{at}.time_zone"), p));
            }
        }
        if self.starting_deadline.is_zero() {
            out.push((
                format!("{at}.starting_deadline"),
                "must be more than zero".into(),
            ));
        }
        out
    }

    fn tz(&self) -> chrono_tz::Tz {
        self.time_zone
            .as_deref()
            .and_then(|t| parse_time_zone(t).ok())
            .unwrap_or(chrono_tz::UTC)
    }

    /// Up to `limit` ticks strictly after `after_ms` and at or before
    /// `until_ms` (Unix ms), in order. Empty for a pattern that does not parse.
    pub fn ticks(&self, after_ms: u64, until_ms: u64, limit: usize) -> Vec<u64> {
        let Ok(cron) = parse_cron(&self.cron) else {
            return Vec::new();
        };
        let tz = self.tz();
        // Whole seconds: cron ticks fall on them, and croner keeps a start's
        // fraction of a second in what it yields.
        let Some(start) = Utc.timestamp_opt((after_ms / 1000) as i64, 0).single() else {
            return Vec::new();
        };
        let start: DateTime<chrono_tz::Tz> = start.with_timezone(&tz);
        cron.iter_after(start)
            .map(|t| t.timestamp().max(0) as u64 * 1000)
            .take_while(|t| *t <= until_ms)
            .take(limit)
            .collect()
    }

    /// The next `n` ticks after `after_ms`.
    pub fn next(&self, after_ms: u64, n: usize) -> Vec<u64> {
        self.ticks(after_ms, u64::MAX, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cron: &str, tz: Option<&str>) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.into(),
            time_zone: tz.map(Into::into),
            concurrency: Concurrency::Allow,
            starting_deadline: Duration::from_secs(60),
            history: History::default(),
        }
    }

    #[test]
    fn patterns_parse_or_name_the_field() {
        for ok in ["*/5 * * * *", "*/2 * * * * *", "0 9 * * MON-FRI", "@hourly"] {
            assert!(parse_cron(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("* * *", "has 3 fields"),
            ("* 25 * * *", "field 2 (hour) \"25\""),
            ("61 * * * * *", "field 1 (second) \"61\""),
            ("* * * 13 *", "field 4 (month) \"13\""),
            ("* * * * * * 2030", "has 7 fields"),
        ];
        for (bad, want) in cases {
            let e = parse_cron(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(parse_time_zone("Europe/Paris").is_ok());
        assert!(parse_time_zone("Mars/Olympus")
            .unwrap_err()
            .contains("not a known time zone"));
    }

    #[test]
    fn ticks_follow_the_pattern_and_the_zone() {
        // 2026-01-05 08:00:00 UTC, a Monday.
        let t0 = 1_767_600_000_000u64;
        let every2 = spec("*/2 * * * * *", None);
        assert_eq!(
            every2.ticks(t0, t0 + 6_000, 10),
            [t0 + 2_000, t0 + 4_000, t0 + 6_000]
        );
        assert_eq!(every2.ticks(t0, t0 + 6_000, 2).len(), 2, "limited");
        // 9 am in Paris is 8 am UTC in winter.
        let paris = spec("0 9 * * *", Some("Europe/Paris"));
        assert_eq!(paris.next(t0 - 1, 1), [t0]);
        let utc = spec("0 9 * * *", None);
        assert_eq!(utc.next(t0 - 1, 1), [t0 + 3_600_000]);
    }
}
