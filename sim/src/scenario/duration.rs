//! Durations as scenario files write them: `"100ms"`, `"2s"`, `"1m 30s"`, and ranges
//! `"1ms..20ms"`. Both read and write exactly (a written value parses back to the same
//! nanosecond), so scenarios built in Rust round-trip through their TOML text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// A duration written as text (`"100ms"`, `"2s"`, `"1m 30s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(self.0))
    }
}

/// A duration as text the parser reads back exactly (`"1s 250ms 3ns"`).
pub(crate) fn text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("bad duration {s:?}: {e} (write e.g. \"100ms\", \"2s\")"))
}

/// A range of durations (`"1ms..20ms"`), or one duration (`"5ms"`, meaning `5ms..5ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurRange {
    /// Lowest value.
    pub lo: Duration,
    /// Highest value (inclusive).
    pub hi: Duration,
}

impl DurRange {
    /// A range from `lo` to `hi`.
    pub fn new(lo: Duration, hi: Duration) -> Self {
        DurRange { lo, hi }
    }
}

impl<'de> Deserialize<'de> for DurRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (lo, hi) = match s.split_once("..") {
            Some((a, b)) => (parse_duration(a), parse_duration(b)),
            None => (parse_duration(&s), parse_duration(&s)),
        };
        let (lo, hi) = (
            lo.map_err(serde::de::Error::custom)?,
            hi.map_err(serde::de::Error::custom)?,
        );
        if lo > hi {
            return Err(serde::de::Error::custom(format!("range {s:?} ends before it starts")));
        }
        Ok(DurRange { lo, hi })
    }
}

impl Serialize for DurRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}..{}", text(self.lo), text(self.hi)))
    }
}

/// Seconds with nanosecond precision, as reports and traces write a true or local time.
pub fn secs(ns: u128) -> String {
    format!("{}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000)
}
