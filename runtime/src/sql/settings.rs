//! A script's job settings: `SET 'key' = 'value'` statements, by Flink's
//! names. `table.exec.state.ttl` is the one a weir job takes: how long a
//! regular join keeps a row it has not been able to forget otherwise.

use std::time::Duration;

use crate::error::{Error, Result};

/// The settings of one SQL job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// How long state is kept after it was written (none: forever, Flink's
    /// default `0 ms`).
    pub state_ttl: Option<Duration>,
}

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
            other => Err(Error::Sql(format!(
                "SET '{other}': not a setting of a weir SQL job (it takes 'table.exec.state.ttl')"
            ))),
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
}
