//! Classification of textual values (CSV cells, JSON strings) and per-column type accumulation.

use chrono::{NaiveDate, NaiveTime};

use crate::model::DataType;

/// Decimal precision beyond which we fall back to double (the widest common engine decimal).
pub(crate) const MAX_DECIMAL_PRECISION: u32 = 38;

/// The type of one textual value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Null,
    Bool,
    Int,
    /// Digits before and after the point (no exponent).
    Decimal {
        int_digits: u32,
        scale: u32,
    },
    Double,
    Date,
    Timestamp,
    TimestampTz,
    Str,
}

/// Tokens that mean "no value" in delimited text.
pub(crate) fn is_null_token(s: &str) -> bool {
    matches!(s, "" | "NULL" | "null" | "NA" | "\\N")
}

/// Classifies a CSV cell.
pub(crate) fn classify(raw: &str) -> Scalar {
    let s = raw.trim();
    if is_null_token(s) {
        return Scalar::Null;
    }
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return Scalar::Bool;
    }
    if let Some(n) = classify_number(s) {
        return n;
    }
    classify_temporal(s).unwrap_or(Scalar::Str)
}

fn classify_number(s: &str) -> Option<Scalar> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() {
        return None;
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        // Leading zeros mark identifiers (zip codes, account numbers): keep them as text.
        if body.len() > 1 && body.starts_with('0') {
            return None;
        }
        return Some(if s.parse::<i64>().is_ok() { Scalar::Int } else { Scalar::Double });
    }
    if let Some((int, frac)) = body.split_once('.')
        && !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let int_digits = int.trim_start_matches('0').len() as u32;
        let scale = frac.len() as u32;
        if int_digits.saturating_add(scale) <= MAX_DECIMAL_PRECISION {
            return Some(Scalar::Decimal { int_digits, scale });
        }
        return Some(Scalar::Double);
    }
    // Rust also parses "inf" and "NaN"; only digit-based spellings count as numbers here.
    let numeric_chars =
        body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if numeric_chars && body.bytes().any(|b| b.is_ascii_digit()) && s.parse::<f64>().is_ok() {
        return Some(Scalar::Double);
    }
    None
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u32, |acc, d| acc.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// Recognises `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM:SS[.f]` and the latter with `Z` or `±HH[:MM]`.
pub(crate) fn classify_temporal(s: &str) -> Option<Scalar> {
    let b = s.as_bytes();
    if b.len() < 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = digits(b.get(0..4)?)?;
    let month = digits(b.get(5..7)?)?;
    let day = digits(b.get(8..10)?)?;
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    if b.len() == 10 {
        return Some(Scalar::Date);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.len() < 19 {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let hour = digits(b.get(11..13)?)?;
    let minute = digits(b.get(14..16)?)?;
    let second = digits(b.get(17..19)?)?;
    // Accept a leap second the way most engines do.
    NaiveTime::from_hms_opt(hour, minute, second.min(59))?;
    let mut rest = b.get(19..)?;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        rest = frac.get(n..)?;
    }
    match rest {
        [] => Some(Scalar::Timestamp),
        [b'Z' | b'z'] => Some(Scalar::TimestampTz),
        [b'+' | b'-', tz @ ..] => {
            let ok = match tz {
                [h1, h2] => digits(&[*h1, *h2]).is_some_and(|h| h <= 23),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    digits(&[*h1, *h2]).is_some_and(|h| h <= 23)
                        && digits(&[*m1, *m2]).is_some_and(|m| m <= 59)
                }
                _ => false,
            };
            ok.then_some(Scalar::TimestampTz)
        }
        _ => None,
    }
}

/// Folds the values of one column into a type.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ColumnAcc {
    kind: Option<Scalar>,
    /// True when a null (or a missing value) was seen.
    pub nullable: bool,
}

impl ColumnAcc {
    /// Adds one value.
    pub(crate) fn add(&mut self, value: Scalar) {
        if value == Scalar::Null {
            self.nullable = true;
            return;
        }
        self.kind = Some(match self.kind {
            None => value,
            Some(current) => combine(current, value),
        });
    }

    /// The type seen so far, if any value was not null.
    pub(crate) fn kind(&self) -> Option<Scalar> {
        self.kind
    }

    /// The column type.
    pub(crate) fn data_type(&self) -> DataType {
        match self.kind {
            None | Some(Scalar::Null) => DataType::Null,
            Some(Scalar::Bool) => DataType::Boolean,
            Some(Scalar::Int) => DataType::Int64,
            Some(Scalar::Decimal { int_digits, scale }) => {
                DataType::Decimal { precision: (int_digits + scale).max(1), scale }
            }
            Some(Scalar::Double) => DataType::Double,
            Some(Scalar::Date) => DataType::Date,
            Some(Scalar::Timestamp) => DataType::Timestamp { with_time_zone: false },
            Some(Scalar::TimestampTz) => DataType::Timestamp { with_time_zone: true },
            Some(Scalar::Str) => DataType::String,
        }
    }
}

fn combine(a: Scalar, b: Scalar) -> Scalar {
    use Scalar::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Decimal { int_digits: i1, scale: s1 }, Decimal { int_digits: i2, scale: s2 }) if s1 == s2 => {
            Decimal { int_digits: i1.max(i2), scale: s1 }
        }
        // Mixed precision numbers: the decimal rule needs a uniform scale, so fall back to double.
        (Int | Decimal { .. } | Double, Int | Decimal { .. } | Double) => Double,
        (Date, Timestamp) | (Timestamp, Date) => Timestamp,
        (Date | Timestamp | TimestampTz, Date | Timestamp | TimestampTz) => TimestampTz,
        _ => Str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_cells() {
        let table: &[(&str, Scalar)] = &[
            ("", Scalar::Null),
            ("NULL", Scalar::Null),
            ("\\N", Scalar::Null),
            ("NA", Scalar::Null),
            ("TRUE", Scalar::Bool),
            ("false", Scalar::Bool),
            ("42", Scalar::Int),
            ("-7", Scalar::Int),
            ("007", Scalar::Str),
            ("99999999999999999999", Scalar::Double),
            ("12.50", Scalar::Decimal { int_digits: 2, scale: 2 }),
            ("0.5", Scalar::Decimal { int_digits: 0, scale: 1 }),
            ("1e5", Scalar::Double),
            (".5", Scalar::Double),
            ("inf", Scalar::Str),
            ("NaN", Scalar::Str),
            ("2024-02-29", Scalar::Date),
            ("2023-02-29", Scalar::Str),
            ("2024-01-02T03:04:05", Scalar::Timestamp),
            ("2024-01-02 03:04:05.123456", Scalar::Timestamp),
            ("2024-01-02T03:04:05Z", Scalar::TimestampTz),
            ("2024-01-02T03:04:05.1+02:00", Scalar::TimestampTz),
            ("2024-01-02T03:04:05-0530", Scalar::TimestampTz),
            ("2024-01-02T25:04:05", Scalar::Str),
            ("2024-01-02T03:04", Scalar::Str),
            ("hello", Scalar::Str),
            ("-", Scalar::Str),
        ];
        for (cell, expected) in table {
            assert_eq!(classify(cell), *expected, "{cell:?}");
        }
    }

    #[test]
    fn accumulate() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["1", "2"], "int64", false),
            (&["12.50", "3.10"], "decimal(4,2)", false),
            (&["12.5", "3.10"], "double", false),
            (&["1", "2.5"], "double", false),
            (&["1", "", "3"], "int64", true),
            (&["", "NULL"], "null", true),
            (&["2024-01-01", "2024-01-01 10:00:00"], "timestamp", false),
            (&["2024-01-01", "2024-01-01T10:00:00Z"], "timestamp_tz", false),
            (&["true", "1"], "string", false),
            (&["x", "1"], "string", false),
        ];
        for (values, expected, nullable) in table {
            let mut acc = ColumnAcc::default();
            for v in *values {
                acc.add(classify(v));
            }
            assert_eq!(acc.data_type().to_string(), *expected, "{values:?}");
            assert_eq!(acc.nullable, *nullable, "{values:?}");
        }
    }
}
