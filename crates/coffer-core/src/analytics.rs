//! Decryption analytics: rules over a stream of decrypt events that flag
//! unusual access per identity. Pure: the caller supplies the time, so the
//! rules are tested with any clock.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Which rules run, and their thresholds. Every rule can be turned off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Length of the counting window, seconds.
    pub window_secs: i64,
    /// Alert when a window's decrypts exceed `rate_factor` × the identity's
    /// baseline (0 disables)...
    pub rate_factor: f64,
    /// ...and at least this many (so a quiet identity's burst of 3 is not news).
    pub rate_min: u64,
    /// Windows an identity needs before its baseline counts.
    pub baseline_windows: u32,
    /// Allowed UTC hours `[start, end)`; decrypts outside alert. None disables.
    pub allowed_hours: Option<(u8, u8)>,
    /// Alert on a source address never seen for the identity.
    pub new_source: bool,
    /// Alert when this many decrypts fail within a window (0 disables).
    pub failed_burst: u64,
    /// Identities tracked at most; the least recently seen are forgotten.
    pub max_identities: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            window_secs: 60,
            rate_factor: 10.0,
            rate_min: 100,
            baseline_windows: 5,
            allowed_hours: None,
            new_source: true,
            failed_burst: 20,
            max_identities: 100_000,
        }
    }
}

/// One decrypt attempt.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub time: i64,
    pub identity: &'a str,
    pub source: &'a str,
    pub failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub identity: String,
    pub source: String,
    pub time: i64,
    pub detail: String,
}

#[derive(Debug, Default)]
struct Identity {
    window: i64,
    count: u64,
    failed: u64,
    windows_seen: u32,
    baseline: f64,
    sources: HashSet<String>,
    sources_full: bool,
    rate_alerted: bool,
    burst_alerted: bool,
    hours_alerted_at: Option<i64>,
    last_seen: i64,
}

/// Sources remembered per identity; beyond this, new ones are not news.
const MAX_SOURCES: usize = 256;

#[derive(Debug, Default)]
pub struct Analyzer {
    rules: Rules,
    identities: HashMap<String, Identity>,
}

impl Analyzer {
    pub fn new(rules: Rules) -> Self {
        Analyzer {
            rules,
            identities: HashMap::new(),
        }
    }

    pub fn observe(&mut self, e: &Event<'_>) -> Vec<Alert> {
        // Look up by &str first: a known identity (the usual case, once per
        // decrypted item) costs no allocation.
        if !self.identities.contains_key(e.identity) {
            if self.identities.len() >= self.rules.max_identities {
                self.forget_oldest();
            }
            self.identities.insert(e.identity.to_owned(), Identity::default());
        }
        let r = &self.rules;
        let window = e.time.div_euclid(r.window_secs.max(1));
        let Some(id) = self.identities.get_mut(e.identity) else {
            return Vec::new();
        };
        let mut alerts = Vec::new();
        let mut alert = |rule: &str, detail: String| {
            alerts.push(Alert {
                rule: rule.to_owned(),
                identity: e.identity.to_owned(),
                source: e.source.to_owned(),
                time: e.time,
                detail,
            })
        };
        if id.last_seen == 0 {
            id.window = window;
        }
        if window != id.window {
            // Close the finished window into the baseline; empty windows in between count as zero.
            let gap = (window - id.window).clamp(1, 1000) as u32;
            for w in 0..gap {
                let c = if w == 0 { id.count as f64 } else { 0.0 };
                id.baseline = if id.windows_seen == 0 {
                    c
                } else {
                    0.8 * id.baseline + 0.2 * c
                };
                id.windows_seen += 1;
            }
            id.window = window;
            id.count = 0;
            id.failed = 0;
            id.rate_alerted = false;
            id.burst_alerted = false;
        }
        id.last_seen = e.time;
        id.count += 1;
        if e.failed {
            id.failed += 1;
        }
        if r.rate_factor > 0.0 && id.windows_seen >= r.baseline_windows && !id.rate_alerted {
            let limit = (id.baseline * r.rate_factor).max(r.rate_min as f64);
            if id.count as f64 > limit {
                id.rate_alerted = true;
                alert(
                    "rate",
                    format!(
                        "{} decrypts this window; baseline {:.1} per window",
                        id.count, id.baseline
                    ),
                );
            }
        }
        if r.failed_burst > 0 && id.failed >= r.failed_burst && !id.burst_alerted {
            id.burst_alerted = true;
            alert(
                "failed_burst",
                format!("{} failed decrypts within {} s", id.failed, r.window_secs),
            );
        }
        if let Some((start, end)) = r.allowed_hours {
            let hour = (e.time.div_euclid(3600).rem_euclid(24)) as u8;
            let inside = if start <= end {
                hour >= start && hour < end
            } else {
                hour >= start || hour < end
            };
            let this_hour = e.time.div_euclid(3600);
            if !inside && id.hours_alerted_at != Some(this_hour) {
                id.hours_alerted_at = Some(this_hour);
                alert(
                    "after_hours",
                    format!("decrypt at {hour:02}:00 UTC, allowed {start:02}:00-{end:02}:00"),
                );
            }
        }
        // Once an identity has MAX_SOURCES, unseen ones are no longer news: one alert says so.
        if r.new_source && !id.sources.contains(e.source) && !id.sources_full {
            let known = !id.sources.is_empty();
            if id.sources.len() < MAX_SOURCES {
                id.sources.insert(e.source.to_owned());
                if known {
                    alert("new_source", format!("first decrypt from {}", e.source));
                }
            } else {
                id.sources_full = true;
                alert(
                    "new_source",
                    format!("more than {MAX_SOURCES} sources; new ones are no longer reported"),
                );
            }
        }
        alerts
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .identities
            .iter()
            .min_by_key(|(_, v)| v.last_seen)
            .map(|(k, _)| k.clone())
        {
            self.identities.remove(&oldest);
        }
    }

    pub fn tracked(&self) -> usize {
        self.identities.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(time: i64, source: &str, failed: bool) -> Event<'_> {
        Event {
            time,
            identity: "svc",
            source,
            failed,
        }
    }

    fn rules() -> Rules {
        Rules {
            rate_min: 10,
            baseline_windows: 3,
            failed_burst: 5,
            ..Rules::default()
        }
    }

    #[test]
    fn rate_far_above_baseline_alerts_once_per_window() {
        let mut a = Analyzer::new(rules());
        let mut t = 1_000_020;
        // Five quiet windows of 2 decrypts each.
        for _ in 0..5 {
            for _ in 0..2 {
                assert!(a.observe(&ev(t, "10.0.0.1", false)).is_empty());
            }
            t += 60;
        }
        let mut alerts = Vec::new();
        for i in 0..40 {
            alerts.extend(a.observe(&ev(t + i % 50, "10.0.0.1", false)));
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].rule, "rate");
    }

    #[test]
    fn no_rate_alert_before_a_baseline_exists() {
        let mut a = Analyzer::new(rules());
        let alerts: Vec<_> = (0..500)
            .flat_map(|i| a.observe(&ev(5_000 + i % 60, "10.0.0.1", false)))
            .collect();
        assert!(alerts.iter().all(|x| x.rule != "rate"), "{alerts:?}");
    }

    #[test]
    fn failed_bursts_alert() {
        let mut a = Analyzer::new(rules());
        let alerts: Vec<_> = (0..6)
            .flat_map(|i| a.observe(&ev(7_200 + i, "10.0.0.1", true)))
            .collect();
        assert_eq!(alerts.iter().filter(|x| x.rule == "failed_burst").count(), 1);
    }

    #[test]
    fn after_hours_and_new_sources() {
        let mut a = Analyzer::new(Rules {
            allowed_hours: Some((8, 18)),
            ..rules()
        });
        let noon = 12 * 3600;
        assert!(a.observe(&ev(noon, "10.0.0.1", false)).is_empty());
        let night = 86_400 + 2 * 3600;
        let alerts = a.observe(&ev(night, "10.0.0.1", false));
        assert_eq!(
            alerts.iter().map(|x| x.rule.as_str()).collect::<Vec<_>>(),
            vec!["after_hours"]
        );
        assert!(
            a.observe(&ev(night + 10, "10.0.0.1", false)).is_empty(),
            "once per hour"
        );
        let alerts = a.observe(&ev(noon + 86_400 * 2, "192.0.2.7", false));
        assert_eq!(
            alerts.iter().map(|x| x.rule.as_str()).collect::<Vec<_>>(),
            vec!["new_source"]
        );
    }

    #[test]
    fn a_full_source_list_alerts_once_not_on_every_decrypt() {
        let mut a = Analyzer::new(rules());
        let mut new_source = 0;
        for i in 0..MAX_SOURCES + 100 {
            let src = format!("10.1.{}.{}", i / 256, i % 256);
            new_source += a
                .observe(&ev(i as i64, &src, false))
                .iter()
                .filter(|x| x.rule == "new_source")
                .count();
        }
        // The first source is the baseline; then one per new source, and one saying the list is full.
        assert_eq!(new_source, MAX_SOURCES - 1 + 1);
        let later = a.observe(&ev(10_000, "203.0.113.9", false));
        assert!(later.iter().all(|x| x.rule != "new_source"), "{later:?}");
    }

    #[test]
    fn memory_is_bounded() {
        let mut a = Analyzer::new(Rules {
            max_identities: 100,
            ..rules()
        });
        for i in 0..1000 {
            let id = format!("id-{i}");
            a.observe(&Event {
                time: i,
                identity: &id,
                source: "s",
                failed: false,
            });
        }
        assert_eq!(a.tracked(), 100);
    }
}
