//! A script's job settings: `SET 'key' = 'value'` statements, by Flink's
//! names: `table.exec.state.ttl` (how long a regular join or an unbounded
//! `GROUP BY` keeps a key it has not been able to forget otherwise) and the
//! early firing of windows (`table.exec.emit.early-fire.*`: Flink's
//! `enabled` and `delay`, and weir's `count`, a count trigger Flink SQL lacks).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::sql::early_fire::EarlyFire;

/// The settings of one SQL job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// How long state is kept after it was written (none: forever, Flink's
    /// default `0 ms`).
    pub state_ttl: Option<Duration>,
    /// `table.exec.emit.early-fire.enabled`.
    pub early_fire_enabled: bool,
    /// `table.exec.emit.early-fire.delay`: fire a window's changed groups this often.
    pub early_fire_delay: Option<Duration>,
    /// `table.exec.emit.early-fire.count`: fire a window's group every this many of its rows.
    pub early_fire_count: Option<u64>,
}

/// What `SET` takes.
const KEYS: &str = "'table.exec.state.ttl', 'table.exec.emit.early-fire.enabled', 'table.exec.emit.early-fire.delay' and 'table.exec.emit.early-fire.count'";

impl Settings {
    /// Takes `SET 'key' = 'value'`; an unknown key or a bad value is refused by name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "table.exec.state.ttl" => {
                let ttl = flink_duration(value)
                    .map_err(|why| Error::Sql(format!("SET '{key}' = '{value}': {why}")))?;
                self.state_ttl = Some(ttl).filter(|t| !t.is_zero());
                Ok(())
            }
            "table.exec.emit.early-fire.enabled" => {
                self.early_fire_enabled = match value.trim().to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::Sql(format!(
                            "SET '{key}' = '{value}': expected 'true' or 'false'"
                        )))
                    }
                };
                Ok(())
            }
            "table.exec.emit.early-fire.delay" => {
                let delay = flink_duration(value)
                    .map_err(|why| Error::Sql(format!("SET '{key}' = '{value}': {why}")))?;
                if delay.is_zero() {
                    return Err(Error::Sql(format!(
                        "SET '{key}' = '{value}': the delay must be longer than 0 ms"
                    )));
                }
                self.early_fire_delay = Some(delay);
                Ok(())
            }
            "table.exec.emit.early-fire.count" => {
                let count = value.trim().parse::<u64>().ok().filter(|&n| n > 0);
                self.early_fire_count = Some(count.ok_or_else(|| {
                    Error::Sql(format!(
                        "SET '{key}' = '{value}': expected a number of rows, at least 1"
                    ))
                })?);
                Ok(())
            }
            other => Err(Error::Sql(format!(
                "SET '{other}': not a setting of a weir SQL job (it takes {KEYS})"
            ))),
        }
    }

    /// How windows fire early: `None` unless enabled, and refused when
    /// enabled without a delay or a count, or given one without being enabled.
    pub fn early_fire(&self) -> Result<Option<EarlyFire>> {
        let given = self.early_fire_delay.is_some() || self.early_fire_count.is_some();
        match (self.early_fire_enabled, given) {
            (true, true) => Ok(Some(EarlyFire {
                every_rows: self.early_fire_count,
                every: self.early_fire_delay,
            })),
            (false, false) => Ok(None),
            (true, false) => Err(Error::Sql(
                "SET 'table.exec.emit.early-fire.enabled' = 'true' needs 'table.exec.emit.early-fire.delay' (fire every T) or 'table.exec.emit.early-fire.count' (fire every N rows)".to_string(),
            )),
            (false, true) => Err(Error::Sql(
                "'table.exec.emit.early-fire.delay' and 'table.exec.emit.early-fire.count' apply only with SET 'table.exec.emit.early-fire.enabled' = 'true' (as in Flink)".to_string(),
            )),
        }
    }
}

/// A duration as Flink writes one: a number and a unit (`d`, `h`, `min`,
/// `s`, `ms`), with or without a space (`1 h`, `30min`); a bare number is
/// milliseconds.
pub fn flink_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as '1 h' or '30 min'"))?;
    let ms_per_unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "min" | "m" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        other => {
            return Err(format!(
                "`{other}` is not a unit of time (d, h, min, s, ms)"
            ))
        }
    };
    number
        .checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flinks_durations_read_with_or_without_a_space() {
        assert_eq!(flink_duration("1 h"), Ok(Duration::from_secs(3600)));
        assert_eq!(flink_duration("30min"), Ok(Duration::from_secs(1800)));
        assert_eq!(flink_duration("250"), Ok(Duration::from_millis(250)));
        assert!(flink_duration("1 fortnight")
            .unwrap_err()
            .contains("fortnight"));
        assert!(flink_duration("soon").is_err());
    }

    #[test]
    fn the_state_ttl_is_taken_and_other_settings_refused_by_name() {
        let mut settings = Settings::default();
        settings.set("table.exec.state.ttl", "2 d").unwrap();
        assert_eq!(settings.state_ttl, Some(Duration::from_secs(2 * 86_400)));
        settings.set("table.exec.state.ttl", "0 ms").unwrap();
        assert_eq!(settings.state_ttl, None);
        let error = settings.set("pipeline.name", "x").unwrap_err();
        assert!(error.to_string().contains("SET 'pipeline.name'"), "{error}");
    }

    #[test]
    fn early_firing_needs_enabling_and_a_delay_or_a_count() {
        let mut settings = Settings::default();
        assert_eq!(settings.early_fire().unwrap(), None);
        settings
            .set("table.exec.emit.early-fire.count", "100")
            .unwrap();
        let error = settings.early_fire().unwrap_err().to_string();
        assert!(error.contains("early-fire.enabled' = 'true'"), "{error}");
        settings
            .set("table.exec.emit.early-fire.enabled", "true")
            .unwrap();
        settings
            .set("table.exec.emit.early-fire.delay", "5 s")
            .unwrap();
        let fire = settings.early_fire().unwrap().unwrap();
        assert_eq!(fire.every_rows, Some(100));
        assert_eq!(fire.every, Some(Duration::from_secs(5)));
        let mut enabled_only = Settings::default();
        enabled_only
            .set("table.exec.emit.early-fire.enabled", "TRUE")
            .unwrap();
        let error = enabled_only.early_fire().unwrap_err().to_string();
        assert!(error.contains("needs"), "{error}");
        for (key, value) in [
            ("table.exec.emit.early-fire.count", "0"),
            ("table.exec.emit.early-fire.count", "many"),
            ("table.exec.emit.early-fire.delay", "0 s"),
            ("table.exec.emit.early-fire.enabled", "yes"),
        ] {
            let error = settings.set(key, value).unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
