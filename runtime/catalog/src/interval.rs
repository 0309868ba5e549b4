//! SQL interval literals (`INTERVAL '5' SECOND`, `INTERVAL '1.5' MINUTES`,
//! `INTERVAL '10 seconds'`) as milliseconds: watermark delays and window sizes.

use sqlparser::ast::{DateTimeField, Expr, Interval, Value};

/// The length of an interval literal in milliseconds, or why it has none: a
/// negative, non-literal or calendar (month, year) interval is refused,
/// because a stream's windows and delays are fixed lengths of time.
pub fn interval_ms(interval: &Interval) -> Result<u64, String> {
    let text = match interval.value.as_ref() {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.trim().to_string(),
            other => return Err(format!("an interval of {other} is not a length of time")),
        },
        other => return Err(format!("an interval must be a literal, not `{other}`")),
    };
    let (number, unit) = match &interval.leading_field {
        Some(field) => (text.as_str(), unit_ms(field)?),
        None => {
            let (number, unit) = text
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("interval '{text}' has no unit"))?;
            (number, unit_name_ms(unit.trim())?)
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("interval value '{number}' is not a number"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("interval value '{number}' must not be negative"));
    }
    Ok((value * unit as f64).round() as u64)
}

/// Milliseconds in one `field`.
fn unit_ms(field: &DateTimeField) -> Result<u64, String> {
    Ok(match field {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1,
        DateTimeField::Second | DateTimeField::Seconds => 1_000,
        DateTimeField::Minute | DateTimeField::Minutes => 60_000,
        DateTimeField::Hour | DateTimeField::Hours => 3_600_000,
        DateTimeField::Day | DateTimeField::Days => 86_400_000,
        other => {
            return Err(format!(
                "an interval in {other} is not a fixed length of time"
            ))
        }
    })
}

/// Milliseconds in the unit named in an interval's string (`'10 seconds'`).
fn unit_name_ms(unit: &str) -> Result<u64, String> {
    Ok(match unit.to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "second" | "seconds" => 1_000,
        "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => {
            return Err(format!(
                "interval unit '{unit}' is not a fixed length of time"
            ))
        }
    })
}

/// The interval literal Flink prints for `ms` milliseconds: whole seconds as
/// `INTERVAL '5' SECOND`, anything else in milliseconds.
pub fn render_ms(ms: u64) -> String {
    if ms.is_multiple_of(1_000) {
        format!("INTERVAL '{}' SECOND", ms / 1_000)
    } else {
        format!("INTERVAL '{ms}' MILLISECOND")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    fn ms(text: &str) -> Result<u64, String> {
        let expr = Parser::new(&GenericDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| e.to_string())?;
        let Expr::Interval(interval) = expr else {
            return Err(format!("not an interval: {expr}"));
        };
        interval_ms(&interval)
    }

    #[test]
    fn fixed_lengths_become_milliseconds() {
        assert_eq!(ms("INTERVAL '5' SECOND"), Ok(5_000));
        assert_eq!(ms("INTERVAL '1.5' MINUTES"), Ok(90_000));
        assert_eq!(ms("INTERVAL '10 seconds'"), Ok(10_000));
        assert_eq!(ms("INTERVAL '250' MILLISECOND"), Ok(250));
        assert_eq!(ms("INTERVAL '2' HOUR"), Ok(7_200_000));
    }

    #[test]
    fn calendar_and_negative_intervals_are_refused() {
        assert!(ms("INTERVAL '1' MONTH")
            .unwrap_err()
            .contains("not a fixed length"));
        assert!(ms("INTERVAL '-1' SECOND").unwrap_err().contains("negative"));
        assert!(ms("INTERVAL 'x' SECOND")
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn rendered_intervals_read_back() {
        for value in [0, 5_000, 250, 90_000] {
            assert_eq!(ms(&render_ms(value)), Ok(value));
        }
    }
}
