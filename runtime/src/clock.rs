//! Wall-clock time as UTC calendar dates, for identities and listings.

use std::fmt;

/// A moment as a UTC calendar date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    year: i64,
    month: i64,
    day: i64,
    secs_of_day: u64,
}

impl Civil {
    /// The UTC date and time `secs` seconds after the Unix epoch.
    pub fn of(secs: u64) -> Self {
        let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
        // Howard Hinnant's days-to-civil algorithm, with years starting in March.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            secs_of_day,
        }
    }

    /// The UTC date and time `ms` milliseconds after the Unix epoch.
    pub fn of_millis(ms: u64) -> Self {
        Civil::of(ms / 1000)
    }

    /// `YYYYMMDDTHHMMSSZ`, for names.
    pub fn compact(&self) -> String {
        let s = self.secs_of_day;
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year,
            self.month,
            self.day,
            s / 3_600,
            s % 3_600 / 60,
            s % 60
        )
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`, for people.
impl fmt::Display for Civil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs_of_day;
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year,
            self.month,
            self.day,
            s / 3_600,
            s % 3_600 / 60,
            s % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_utc_calendar() {
        assert_eq!(Civil::of(0).compact(), "19700101T000000Z");
        assert_eq!(Civil::of(1_796_129_567).compact(), "20261201T125247Z");
        assert_eq!(Civil::of(951_782_400).compact(), "20000229T000000Z");
        assert_eq!(
            Civil::of_millis(1_796_129_567_999).to_string(),
            "2026-12-01 12:52:47 UTC"
        );
    }
}
