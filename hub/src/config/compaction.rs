//! The `[compaction]` table of the hub's configuration: how long an unseen
//! device holds tombstone compaction back, and how often the running hub
//! compacts (the work is `outpost::sync::compact`; the hub's side
//! `crate::compact`).

use serde::Deserialize;

/// Longest retention and interval accepted: ten years.
pub const MAX_SECS: u64 = 10 * 365 * 86_400;

/// The `[compaction]` table. Read live: a reloaded value applies from the
/// next run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Seconds a device may stay unseen and still hold compaction back:
    /// tombstones it has not acknowledged are kept that long. A device
    /// away longer resyncs when it comes back. Default 30 days.
    pub retention_secs: u64,
    /// Seconds between two automatic compactions of each open database.
    /// 0: never automatically (`outpost-hub compact` still works). Default
    /// one hour.
    pub interval_secs: u64,
}

impl Default for CompactionConfig {
    fn default() -> CompactionConfig {
        CompactionConfig {
            retention_secs: (outpost::sync::compact::DEFAULT_RETENTION_MS / 1000) as u64,
            interval_secs: 3600,
        }
    }
}

impl CompactionConfig {
    /// The retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        retention_ms(self.retention_secs)
    }

    /// Checks the bounds (retention at least 1 s, both at most ten years);
    /// the error names the key.
    pub(super) fn validate(&self) -> Result<(), String> {
        check_retention(self.retention_secs)
            .map_err(|m| format!("compaction.retention_secs: {m}"))?;
        if self.interval_secs > MAX_SECS {
            return Err(format!(
                "compaction.interval_secs: at most {MAX_SECS} (ten years), found {}",
                self.interval_secs
            ));
        }
        Ok(())
    }
}

/// `secs` in milliseconds (bounded by [`check_retention`]).
pub fn retention_ms(secs: u64) -> i64 {
    i64::try_from(secs.min(MAX_SECS)).unwrap_or(i64::MAX) * 1000
}

/// A retention is at least 1 s (0 would count every device as gone) and at
/// most ten years.
pub fn check_retention(secs: u64) -> Result<(), String> {
    if secs == 0 {
        return Err(
            "must be at least 1 (0 would let every device not seen this very moment be resynced)"
                .into(),
        );
    }
    if secs > MAX_SECS {
        return Err(format!("at most {MAX_SECS} (ten years), found {secs}"));
    }
    Ok(())
}
