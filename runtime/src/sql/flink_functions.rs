//! Flink SQL's scalar functions that DataFusion's library lacks or names
//! otherwise, with Flink's semantics, so that Flink queries (the Nexmark
//! queries among them) run unchanged: `MOD`, `HOUR`, `MINUTE`, `SECOND`,
//! `DATE_FORMAT`, `SPLIT_INDEX` and `REGEXP_EXTRACT`.

use std::fmt::Write;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringBuilder};
use datafusion_common::arrow::datatypes::{DataType, Int64Type};
use datafusion_common::arrow::temporal_conversions::timestamp_ms_to_datetime;
use datafusion_common::{exec_err, Result};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::sql::windows::millis;

/// Every Flink function weir adds to DataFusion's.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    let functions: Vec<FlinkFunction> = vec![
        FlinkFunction::new("mod", Kind::Mod),
        FlinkFunction::new("hour", Kind::Hour),
        FlinkFunction::new("minute", Kind::Minute),
        FlinkFunction::new("second", Kind::Second),
        FlinkFunction::new("date_format", Kind::DateFormat),
        FlinkFunction::new("split_index", Kind::SplitIndex),
        FlinkFunction::new("regexp_extract", Kind::RegexpExtract),
    ];
    functions
        .into_iter()
        .map(|f| Arc::new(ScalarUDF::new_from_impl(f)))
        .collect()
}

/// Which function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Mod,
    Hour,
    Minute,
    Second,
    DateFormat,
    SplitIndex,
    RegexpExtract,
}

/// One of Flink's functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FlinkFunction {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

impl FlinkFunction {
    fn new(name: &'static str, kind: Kind) -> Self {
        let text = || DataType::Utf8;
        let signature = match kind {
            Kind::Mod => Signature::exact(
                vec![DataType::Int64, DataType::Int64],
                Volatility::Immutable,
            ),
            Kind::Hour | Kind::Minute | Kind::Second => Signature::any(1, Volatility::Immutable),
            Kind::DateFormat => {
                Signature::one_of(vec![TypeSignature::Any(2)], Volatility::Immutable)
            }
            Kind::SplitIndex => {
                Signature::exact(vec![text(), text(), DataType::Int64], Volatility::Immutable)
            }
            Kind::RegexpExtract => Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![text(), text()]),
                    TypeSignature::Exact(vec![text(), text(), DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
        };
        FlinkFunction {
            name,
            kind,
            signature,
        }
    }
}

impl ScalarUDFImpl for FlinkFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::Mod | Kind::Hour | Kind::Minute | Kind::Second => DataType::Int64,
            Kind::DateFormat | Kind::SplitIndex | Kind::RegexpExtract => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let result: ArrayRef = match self.kind {
            Kind::Mod => modulo(&arrays[0], &arrays[1])?,
            Kind::Hour => time_part(&arrays[0], 3_600_000, 24)?,
            Kind::Minute => time_part(&arrays[0], 60_000, 60)?,
            Kind::Second => time_part(&arrays[0], 1000, 60)?,
            Kind::DateFormat => date_format(&arrays[0], &arrays[1])?,
            Kind::SplitIndex => split_index(&arrays[0], &arrays[1], &arrays[2])?,
            Kind::RegexpExtract => regexp_extract(&arrays[0], &arrays[1], arrays.get(2))?,
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// `MOD(a, b)`: the remainder of `a / b`, of `a`'s sign (as Java's `%`).
fn modulo(dividends: &ArrayRef, divisors: &ArrayRef) -> Result<ArrayRef> {
    let (a, b) = (
        dividends.as_primitive::<Int64Type>(),
        divisors.as_primitive::<Int64Type>(),
    );
    let mut out = Vec::with_capacity(a.len());
    for row in 0..a.len() {
        if a.is_null(row) || b.is_null(row) {
            out.push(None);
            continue;
        }
        match a.value(row).checked_rem(b.value(row)) {
            Some(r) => out.push(Some(r)),
            None => return exec_err!("MOD({}, {}): division by zero", a.value(row), b.value(row)),
        }
    }
    Ok(Arc::new(Int64Array::from(out)))
}

/// `(ms / unit) mod modulo` of each timestamp: its hour, minute or second.
fn time_part(times: &ArrayRef, unit: i64, modulo: i64) -> Result<ArrayRef> {
    let Ok(ms) = millis(times) else {
        return exec_err!(
            "HOUR, MINUTE and SECOND take a timestamp, not {}",
            times.data_type()
        );
    };
    Ok(Arc::new(ms.unary::<_, Int64Type>(|t| {
        t.div_euclid(unit).rem_euclid(modulo)
    })))
}

/// Java's date pattern letters as chrono's.
fn chrono_pattern(java: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = java.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        let piece = match (c, run) {
            ('y', 4) => "%Y".to_string(),
            ('y', 2) => "%y".to_string(),
            ('M', 2) => "%m".to_string(),
            ('d', 2) => "%d".to_string(),
            ('H', 2) => "%H".to_string(),
            ('m', 2) => "%M".to_string(),
            ('s', 2) => "%S".to_string(),
            ('S', 3) => "%3f".to_string(),
            ('%', _) => "%%".repeat(run),
            _ => std::iter::repeat_n(c, run).collect(),
        };
        out.push_str(&piece);
        i += run;
    }
    out
}

/// The span of time in which a Java date pattern's text does not change, ms:
/// a day for one of years, months and days, down to a millisecond for `S`.
fn pattern_unit_ms(java: &str) -> i64 {
    [('S', 1), ('s', 1_000), ('m', 60_000), ('H', 3_600_000)]
        .into_iter()
        .find(|(letter, _)| java.contains(*letter))
        .map_or(86_400_000, |(_, unit)| unit)
}

/// `DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')`, in UTC. A pattern is parsed
/// once per batch in which it does not change, not per row, and a row in the
/// same span of the pattern's finest field as the row before (the same day
/// for `yyyy-MM-dd`) takes that row's text without formatting it again.
fn date_format(times: &ArrayRef, patterns: &ArrayRef) -> Result<ArrayRef> {
    let Ok(ms) = millis(times) else {
        return exec_err!("DATE_FORMAT takes a timestamp, not {}", times.data_type());
    };
    let Some(patterns) = patterns.as_string_opt::<i32>() else {
        return exec_err!(
            "DATE_FORMAT's pattern is a string, not {}",
            patterns.data_type()
        );
    };
    let mut parsed: Option<(String, Vec<Item<'static>>, i64)> = None;
    let mut out = StringBuilder::with_capacity(ms.len(), ms.len() * 16);
    let mut text = String::new();
    // The span (in the pattern's unit) that `text` was formatted for.
    let mut formatted: Option<i64> = None;
    for row in 0..ms.len() {
        if ms.is_null(row) || patterns.is_null(row) {
            out.append_null();
            continue;
        }
        let java = patterns.value(row);
        if parsed.as_ref().is_none_or(|(j, _, _)| j != java) {
            let items = StrftimeItems::new(&chrono_pattern(java))
                .parse_to_owned()
                .or_else(|e| exec_err!("DATE_FORMAT: {java:?} is not a pattern: {e}"))?;
            parsed = Some((java.to_string(), items, pattern_unit_ms(java)));
            formatted = None;
        }
        let (items, unit) = parsed
            .as_ref()
            .map_or((&[][..], 1), |(_, i, unit)| (i.as_slice(), *unit));
        let span = ms.value(row).div_euclid(unit);
        if formatted == Some(span) {
            out.append_value(&text);
            continue;
        }
        match timestamp_ms_to_datetime(ms.value(row)) {
            Some(time) => {
                text.clear();
                write!(text, "{}", time.format_with_items(items.iter()))
                    .or_else(|e| exec_err!("DATE_FORMAT: {e}"))?;
                out.append_value(&text);
                formatted = Some(span);
            }
            None => {
                out.append_null();
                formatted = None;
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `SPLIT_INDEX(text, separator, index)`: the zero-based `index`-th part, or
/// null when there is none.
fn split_index(texts: &ArrayRef, separators: &ArrayRef, indices: &ArrayRef) -> Result<ArrayRef> {
    let (texts, separators) = (texts.as_string::<i32>(), separators.as_string::<i32>());
    let indices = indices.as_primitive::<Int64Type>();
    let mut out = StringBuilder::with_capacity(texts.len(), texts.len() * 8);
    for row in 0..texts.len() {
        if texts.is_null(row) || separators.is_null(row) || indices.is_null(row) {
            out.append_null();
            continue;
        }
        let (text, separator) = (texts.value(row), separators.value(row));
        let part = usize::try_from(indices.value(row))
            .ok()
            .and_then(|index| nth_part(text, separator, index));
        out.append_option(part);
    }
    Ok(Arc::new(out.finish()))
}

/// The zero-based `index`-th part of `text` split at `separator`. A one-byte
/// ASCII separator (the usual `/`, `,`) is found with `memchr` rather than
/// a substring search, which was half of Nexmark q22's time.
fn nth_part<'a>(text: &'a str, separator: &str, index: usize) -> Option<&'a str> {
    match *separator.as_bytes() {
        [] => (index == 0).then_some(text),
        [byte] if byte.is_ascii() => {
            let mut ends = memchr::memchr_iter(byte, text.as_bytes());
            let mut start = 0;
            for _ in 0..index {
                start = ends.next()? + 1;
            }
            text.get(start..ends.next().unwrap_or(text.len()))
        }
        _ => text.split(separator).nth(index),
    }
}

/// `REGEXP_EXTRACT(text, regex[, group])`: the group (0: the whole match) of
/// the first match, or null when there is none.
fn regexp_extract(
    texts: &ArrayRef,
    patterns: &ArrayRef,
    groups: Option<&ArrayRef>,
) -> Result<ArrayRef> {
    let (texts, patterns) = (texts.as_string::<i32>(), patterns.as_string::<i32>());
    let groups = groups.map(|g| g.as_primitive::<Int64Type>().clone());
    let mut compiled: Option<(String, regex::Regex)> = None;
    let mut out = StringBuilder::with_capacity(texts.len(), texts.len() * 4);
    for row in 0..texts.len() {
        let null_group = groups.as_ref().is_some_and(|g| g.is_null(row));
        if texts.is_null(row) || patterns.is_null(row) || null_group {
            out.append_null();
            continue;
        }
        let pattern = patterns.value(row);
        if compiled.as_ref().is_none_or(|(p, _)| p != pattern) {
            match regex::Regex::new(pattern) {
                Ok(re) => compiled = Some((pattern.to_string(), re)),
                Err(e) => {
                    return exec_err!(
                        "REGEXP_EXTRACT: {pattern:?} is not a regular expression: {e}"
                    )
                }
            }
        }
        let group = groups.as_ref().map_or(0, |g| g.value(row));
        let value = compiled.as_ref().and_then(|(_, re)| {
            let captures = re.captures(texts.value(row))?;
            captures
                .get(usize::try_from(group).ok()?)
                .map(|m| m.as_str())
        });
        out.append_option(value);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use datafusion_common::arrow::array::{StringArray, TimestampMillisecondArray};

    use super::*;

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn rows_of_one_day_share_its_text_and_the_next_day_or_pattern_gets_its_own() {
        // 2020-01-01 23:59:59.999, 2020-01-02 00:00:00.000 and 23:00, 1969-12-31 23:00.
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            Some(1_577_923_199_999),
            Some(1_577_923_199_000),
            Some(1_577_923_200_000),
            None,
            Some(1_578_006_000_000),
            Some(1_578_006_000_000),
            Some(-3_600_000),
        ]));
        let day = Some("yyyy-MM-dd");
        let hour = Some("yyyy-MM-dd HH");
        let patterns = strings(&[day, day, day, day, day, hour, day]);
        let formatted = date_format(&times, &patterns).unwrap();
        let texts: Vec<Option<&str>> = formatted.as_string::<i32>().iter().collect();
        assert_eq!(
            texts,
            [
                Some("2020-01-01"),
                Some("2020-01-01"),
                Some("2020-01-02"),
                None,
                Some("2020-01-02"),
                Some("2020-01-02 23"),
                Some("1969-12-31"),
            ]
        );
    }

    #[test]
    fn flinks_functions_give_flinks_results() {
        // 2020-01-01 13:45:30.250 UTC
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![1_577_886_330_250]));
        let remainders = modulo(
            &(Arc::new(Int64Array::from(vec![-7, 7])) as ArrayRef),
            &(Arc::new(Int64Array::from(vec![3, 3])) as ArrayRef),
        )
        .unwrap();
        assert_eq!(remainders.as_primitive::<Int64Type>().values(), &[-1, 1]);
        let hour = time_part(&times, 3_600_000, 24).unwrap();
        assert_eq!(hour.as_primitive::<Int64Type>().value(0), 13);
        let day = date_format(&times, &strings(&[Some("yyyy-MM-dd HH:mm:ss.SSS")])).unwrap();
        assert_eq!(day.as_string::<i32>().value(0), "2020-01-01 13:45:30.250");
        let url = strings(&[
            Some("https://www.nexmark.com/abc/item.htm?query=1&channel_id=7"),
            Some("a/b"),
        ]);
        let parts = split_index(
            &url,
            &strings(&[Some("/"), Some("/")]),
            &(Arc::new(Int64Array::from(vec![3, 5])) as ArrayRef),
        )
        .unwrap();
        assert_eq!(parts.as_string::<i32>().value(0), "abc");
        assert!(parts.is_null(1));
        for (text, separator) in [
            ("a/b//c/", "/"),
            ("ä/ß/", "/"),
            ("a::b::", "::"),
            ("abc", ""),
        ] {
            for index in 0..6 {
                let expected = match separator {
                    "" => (index == 0).then_some(text),
                    _ => text.split(separator).nth(index),
                };
                assert_eq!(
                    nth_part(text, separator, index),
                    expected,
                    "{text:?} {index}"
                );
            }
        }
        let pattern = strings(&[
            Some("(&|^)channel_id=([^&]*)"),
            Some("(&|^)channel_id=([^&]*)"),
        ]);
        let group: ArrayRef = Arc::new(Int64Array::from(vec![2, 2]));
        let ids = regexp_extract(&url, &pattern, Some(&group)).unwrap();
        assert_eq!(ids.as_string::<i32>().value(0), "7");
        assert!(ids.is_null(1));
    }
}
