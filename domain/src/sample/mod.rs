//! Rows of a file for dynamic sampling: typed with the inferred schema, projected to the
//! requested columns, long values truncated and marked.
//!
//! Text formats (CSV/TSV/PSV, JSON Lines, JSON arrays) are sampled from a bounded, already
//! decompressed byte window: `Head` takes the first rows, `Random` draws a uniform reservoir over
//! the rows of the window. A window that stops before the end of the file never yields its
//! trailing partial line (or array element). Avro rows come from the complete blocks of a head
//! read ([`avro`]); Parquet and ORC from planned ranged reads ([`parquet`], [`orc`]). Sample data is never logged: errors name the row and column, not the values.

pub mod avro;
pub mod orc;
pub mod parquet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Number, Value};

use crate::format::DetectedFormat;
use crate::model::{DataType, Field, FileFormat};
use crate::schema::scalar::is_null_token;
use crate::schema::{CsvDialect, Fetched, InferenceError, InferenceLimits, InferenceStep};

/// How rows are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleMode {
    /// The first rows.
    Head,
    /// A uniform random choice among the rows of the window (reservoir sampling), seeded so a
    /// request can be repeated.
    Random {
        /// RNG seed.
        seed: u64,
    },
}

/// Bounds of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleLimits {
    /// Rows returned at most.
    pub max_rows: usize,
    /// Longer string values (in bytes) are cut at a character boundary and marked.
    pub max_value_bytes: usize,
}

impl Default for SampleLimits {
    fn default() -> Self {
        SampleLimits { max_rows: 100, max_value_bytes: 1024 }
    }
}

/// One value of a sampled row.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledValue {
    /// The value, typed by the column's type where it parses as that type (JSON: numbers,
    /// booleans, strings, lists, objects; decimals, dates and timestamps stay strings so no
    /// precision is lost).
    pub value: Value,
    /// True when a string was cut at `max_value_bytes`.
    pub truncated: bool,
}

/// The rows of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The columns, in output order.
    pub columns: Vec<Field>,
    /// Rows; one value per column.
    pub rows: Vec<Vec<SampledValue>>,
    /// True when the window held more rows than were returned (or the window itself stopped
    /// before the end of the file).
    pub more_rows: bool,
}

/// Why a sample could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// A requested column is not in the schema.
    #[error("column '{column}' is not in the schema (columns: {available})")]
    UnknownColumn {
        /// The column asked for.
        column: String,
        /// The schema's columns, comma-separated.
        available: String,
    },
    /// The window is not valid UTF-8 text.
    #[error("the file is not valid UTF-8 text near byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first invalid byte in the window.
        offset: usize,
    },
    /// A row cannot be parsed.
    #[error("row {row} cannot be parsed: {reason}")]
    MalformedRow {
        /// 1-based row number in the window (after any header).
        row: usize,
        /// What is wrong (never the row's content).
        reason: String,
    },
}

impl SampleError {
    /// Stable code for records and gRPC details.
    pub fn code(&self) -> &'static str {
        match self {
            SampleError::UnknownColumn { .. } => "SAMPLE_UNKNOWN_COLUMN",
            SampleError::InvalidUtf8 { .. } => "INVALID_UTF8",
            SampleError::MalformedRow { .. } => "FILE_MALFORMED",
        }
    }
}

/// Indices of the requested columns in `schema` (all when `columns` is empty).
pub fn projection(schema: &[Field], columns: &[String]) -> Result<Vec<usize>, SampleError> {
    if columns.is_empty() {
        return Ok((0..schema.len()).collect());
    }
    columns
        .iter()
        .map(|c| {
            schema.iter().position(|f| &f.name == c).ok_or_else(|| SampleError::UnknownColumn {
                column: c.clone(),
                available: schema.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// Cuts a string at `max` bytes on a character boundary.
fn truncate(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    (s, true)
}

/// Truncates every string inside a value; true when any was cut.
fn bound(value: Value, max: usize) -> (Value, bool) {
    match value {
        Value::String(s) => {
            let (s, cut) = truncate(s, max);
            (Value::String(s), cut)
        }
        Value::Array(items) => {
            let mut any = false;
            let items = items
                .into_iter()
                .map(|v| {
                    let (v, cut) = bound(v, max);
                    any |= cut;
                    v
                })
                .collect();
            (Value::Array(items), any)
        }
        Value::Object(map) => {
            let mut any = false;
            let map = map
                .into_iter()
                .map(|(k, v)| {
                    let (v, cut) = bound(v, max);
                    any |= cut;
                    (k, v)
                })
                .collect::<Map<String, Value>>();
            (Value::Object(map), any)
        }
        other => (other, false),
    }
}

/// A delimited cell as a typed value.
fn typed_cell(raw: &str, data_type: &DataType) -> Value {
    let s = raw.trim();
    if is_null_token(s) {
        return Value::Null;
    }
    let typed = match data_type {
        DataType::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        DataType::Int32 | DataType::Int64 => s.parse::<i64>().ok().map(|n| Value::Number(n.into())),
        DataType::Float | DataType::Double => {
            s.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
        }
        _ => None,
    };
    // Anything else, and cells that do not parse as their column's type, stay text.
    typed.unwrap_or_else(|| Value::String(raw.to_string()))
}

/// The projected, size-bounded values of rows decoded as JSON objects (JSON Lines, JSON
/// documents, Avro): a missing field is null.
fn object_rows(
    rows: Vec<Map<String, Value>>,
    picked: &[usize],
    schema: &[Field],
    limits: &SampleLimits,
) -> Vec<Vec<SampledValue>> {
    rows.into_iter()
        .map(|mut object| {
            picked
                .iter()
                .map(|&c| {
                    let raw = object.remove(&schema[c].name).unwrap_or(Value::Null);
                    let (value, truncated) = bound(raw, limits.max_value_bytes);
                    SampledValue { value, truncated }
                })
                .collect()
        })
        .collect()
}

/// Chooses rows from an iterator: the first `max` (Head) or a uniform reservoir (Random).
/// Returns the rows in file order and whether more rows existed.
fn choose<T, E>(
    rows: impl Iterator<Item = Result<T, E>>,
    mode: SampleMode,
    max: usize,
) -> Result<(Vec<T>, bool), E> {
    match mode {
        SampleMode::Head => {
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                if out.len() == max {
                    return Ok((out, true));
                }
                out.push(row);
            }
            Ok((out, false))
        }
        SampleMode::Random { seed } => {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut reservoir: Vec<(usize, T)> = Vec::new();
            let mut seen = 0usize;
            for row in rows {
                let row = row?;
                if reservoir.len() < max {
                    reservoir.push((seen, row));
                } else if max > 0 {
                    let j = rng.random_range(0..=seen);
                    if j < max {
                        reservoir[j] = (seen, row);
                    }
                }
                seen += 1;
            }
            reservoir.sort_by_key(|(i, _)| *i);
            Ok((reservoir.into_iter().map(|(_, r)| r).collect(), seen > max))
        }
    }
}

/// Drops the trailing partial line of a window that stops before the end of the file.
fn complete_lines(text: &str, window_truncated: bool) -> &str {
    if !window_truncated {
        return text;
    }
    match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    }
}

fn utf8(window: &[u8]) -> Result<&str, SampleError> {
    let window = window.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(window);
    match std::str::from_utf8(window) {
        Ok(s) => Ok(s),
        // A multi-byte character cut by the window's end is not an error.
        Err(e) if e.error_len().is_none() => {
            Ok(std::str::from_utf8(&window[..e.valid_up_to()]).unwrap_or(""))
        }
        Err(e) => Err(SampleError::InvalidUtf8 { offset: e.valid_up_to() }),
    }
}

/// Samples a delimited (CSV/TSV/PSV) window.
pub fn sample_delimited(
    window: &[u8],
    window_truncated: bool,
    dialect: &CsvDialect,
    schema: &[Field],
    columns: &[String],
    mode: SampleMode,
    limits: &SampleLimits,
) -> Result<Sample, SampleError> {
    let picked = projection(schema, columns)?;
    let text = complete_lines(utf8(window)?, window_truncated);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(dialect.delimiter)
        .quote(dialect.quote)
        .has_headers(dialect.has_header)
        .flexible(true)
        .from_reader(text.as_bytes());
    let records = reader
        .records()
        .enumerate()
        .map(|(i, r)| r.map_err(|e| SampleError::MalformedRow { row: i + 1, reason: csv_reason(&e) }));
    let (rows, more) = choose(records, mode, limits.max_rows)?;
    let rows = rows
        .into_iter()
        .map(|record| {
            picked
                .iter()
                .map(|&c| {
                    let raw = record.get(c).unwrap_or("");
                    let (value, truncated) =
                        bound(typed_cell(raw, &schema[c].data_type), limits.max_value_bytes);
                    SampledValue { value, truncated }
                })
                .collect()
        })
        .collect();
    Ok(Sample {
        columns: picked.iter().map(|&c| schema[c].clone()).collect(),
        rows,
        more_rows: more || window_truncated,
    })
}

/// The csv error without the offending bytes.
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where {expected_len} were expected")
        }
        _ => "malformed delimited text".into(),
    }
}

/// Samples a JSON Lines window. Fields absent from a line are null; values keep their JSON
/// types (nested objects and lists included).
pub fn sample_json_lines(
    window: &[u8],
    window_truncated: bool,
    schema: &[Field],
    columns: &[String],
    mode: SampleMode,
    limits: &SampleLimits,
) -> Result<Sample, SampleError> {
    let picked = projection(schema, columns)?;
    let text = complete_lines(utf8(window)?, window_truncated);
    let lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, line)| {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(SampleError::MalformedRow { row: i + 1, reason: "not a JSON object".into() }),
            Err(e) => Err(SampleError::MalformedRow {
                row: i + 1,
                reason: format!("invalid JSON at column {}", e.column()),
            }),
        }
    });
    let (rows, more) = choose(lines, mode, limits.max_rows)?;
    let rows = object_rows(rows, &picked, schema, limits);
    Ok(Sample {
        columns: picked.iter().map(|&c| schema[c].clone()).collect(),
        rows,
        more_rows: more || window_truncated,
    })
}

/// Samples a JSON document window: a top-level array of objects (elements are streamed; the
/// element cut by a window that stops early is not a row) or a sequence of top-level objects.
pub fn sample_json_document(
    window: &[u8],
    window_truncated: bool,
    schema: &[Field],
    columns: &[String],
    mode: SampleMode,
    limits: &SampleLimits,
) -> Result<Sample, SampleError> {
    let picked = projection(schema, columns)?;
    let text = utf8(window)?;
    let body = text.trim_start();
    let in_array = body.starts_with('[');
    let mut elements = JsonElements {
        text: if in_array { &body[1..] } else { body },
        in_array,
        truncated: window_truncated,
        row: 0,
        done: false,
        cut: false,
    };
    let (rows, more) = choose(&mut elements, mode, limits.max_rows)?;
    let rows = object_rows(rows, &picked, schema, limits);
    Ok(Sample {
        columns: picked.iter().map(|&c| schema[c].clone()).collect(),
        rows,
        more_rows: more || elements.cut || window_truncated,
    })
}

/// The objects of a JSON document, one at a time.
struct JsonElements<'a> {
    /// What is left to read (after the opening `[` of an array).
    text: &'a str,
    in_array: bool,
    truncated: bool,
    row: usize,
    done: bool,
    /// The window ended inside an element.
    cut: bool,
}

impl JsonElements<'_> {
    fn next_object(&mut self) -> Result<Option<Map<String, Value>>, SampleError> {
        let rest = self.text.trim_start();
        let closing = if self.in_array { rest.starts_with(']') } else { false };
        if closing || rest.is_empty() {
            if rest.is_empty() && self.in_array && !self.truncated {
                return Err(SampleError::MalformedRow {
                    row: self.row + 1,
                    reason: "array is not closed".into(),
                });
            }
            self.cut = rest.is_empty() && self.truncated;
            return Ok(None);
        }
        self.row += 1;
        let row = self.row;
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(value)) => value,
            Some(Err(e)) if self.truncated && e.is_eof() => {
                self.cut = true;
                return Ok(None);
            }
            Some(Err(e)) => {
                return Err(SampleError::MalformedRow {
                    row,
                    reason: format!("invalid JSON at line {} column {}", e.line(), e.column()),
                });
            }
            None => return Ok(None),
        };
        let mut after = rest[stream.byte_offset()..].trim_start();
        if self.in_array {
            if let Some(next) = after.strip_prefix(',') {
                after = next;
            } else if !(after.starts_with(']') || (after.is_empty() && self.truncated)) {
                let reason = if after.is_empty() { "array is not closed" } else { "expected ',' or ']'" };
                return Err(SampleError::MalformedRow { row, reason: reason.into() });
            }
        }
        self.text = after;
        match value {
            Value::Object(map) => Ok(Some(map)),
            _ => Err(SampleError::MalformedRow { row, reason: "not a JSON object".into() }),
        }
    }
}

impl Iterator for JsonElements<'_> {
    type Item = Result<Map<String, Value>, SampleError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_object().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

/// Why a file's head could not be sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleFileError {
    /// The file cannot be read as its format (truncated, malformed, bad compression, ...).
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// Rows cannot be taken.
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// Sampling does not read this format from a head read.
    #[error("sampling {format} files from their first bytes is not supported")]
    Unsupported {
        /// The format.
        format: &'static str,
    },
}

impl SampleFileError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            SampleFileError::Inference(e) => e.code(),
            SampleFileError::Sample(e) => e.code(),
            SampleFileError::Unsupported { .. } => "SAMPLE_UNSUPPORTED_FORMAT",
        }
    }
}

/// Samples a file from its first bytes: text formats (CSV/TSV/PSV, JSON Lines, JSON arrays;
/// gzip/zstd/bzip2 or plain) and Avro. The schema (and dialect) is inferred from the same bytes
/// as extraction does, then the rows are taken from the decompressed window (for Avro: the
/// complete blocks of the head read).
pub fn sample_text_head(
    detected: DetectedFormat,
    head: &[u8],
    object_size: u64,
    columns: &[String],
    mode: SampleMode,
    limits: &SampleLimits,
    inference: &InferenceLimits,
) -> Result<Sample, SampleFileError> {
    let fetched = Fetched { bytes: head, start: 0, object_size };
    let file = match crate::schema::infer(detected, fetched, inference)? {
        InferenceStep::Done(file) => file,
        InferenceStep::NeedSuffix { .. } => {
            return Err(SampleFileError::Unsupported { format: detected.format.as_str() });
        }
    };
    if file.format == FileFormat::Avro {
        return avro::sample(head, object_size, &file.schema.fields, columns, mode, limits, inference);
    }
    let decoded = DetectedFormat { format: file.format, compression: file.compression };
    let window = crate::schema::decode::decode_sample(decoded, head, object_size, inference)?;
    let fields = &file.schema.fields;
    match (file.format, file.dialect) {
        (FileFormat::Csv | FileFormat::Tsv | FileFormat::Psv, Some(dialect)) => {
            Ok(sample_delimited(&window.data, window.truncated, &dialect, fields, columns, mode, limits)?)
        }
        (FileFormat::JsonLines, _) => {
            Ok(sample_json_lines(&window.data, window.truncated, fields, columns, mode, limits)?)
        }
        (FileFormat::Json, _) => {
            Ok(sample_json_document(&window.data, window.truncated, fields, columns, mode, limits)?)
        }
        (format, _) => Err(SampleFileError::Unsupported { format: format.as_str() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gzipped_csv_head_is_inferred_and_sampled() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"id,amount,when\n1,2.50,2024-01-01\n2,3.75,2024-01-02\n").unwrap();
        let bytes = gz.finish().unwrap();
        let detected = crate::format::detect_from_key("sales/part-0.csv.gz");
        let s = sample_text_head(
            detected,
            &bytes,
            bytes.len() as u64,
            &[],
            SampleMode::Head,
            &SampleLimits::default(),
            &InferenceLimits::default(),
        )
        .unwrap();
        assert_eq!(s.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "amount", "when"]);
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[1][0].value, Value::from(2));
        assert_eq!(s.rows[1][1].value, Value::from("3.75"), "decimals stay exact strings");
        let parquet = crate::format::detect_from_key("t/part-0.avro");
        let err = sample_text_head(
            parquet,
            b"Obj\x01",
            4,
            &[],
            SampleMode::Head,
            &SampleLimits::default(),
            &InferenceLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err.code(), "SAMPLE_UNSUPPORTED_FORMAT" | "FILE_TRUNCATED" | "FILE_MALFORMED"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    fn field(name: &str, data_type: DataType) -> Field {
        Field { name: name.into(), data_type, nullable: true }
    }

    fn schema() -> Vec<Field> {
        vec![field("id", DataType::Int64), field("name", DataType::String), field("score", DataType::Double)]
    }

    const CSV: CsvDialect = CsvDialect { delimiter: b',', quote: b'"', has_header: true };

    fn values(sample: &Sample) -> Vec<Vec<Value>> {
        sample.rows.iter().map(|r| r.iter().map(|v| v.value.clone()).collect()).collect()
    }

    #[test]
    fn head_rows_are_typed_and_projected() {
        let text = b"id,name,score\n1,ann,0.5\n2,bob,NA\n3,\"c, d\",2\n";
        let limits = SampleLimits { max_rows: 2, max_value_bytes: 100 };
        let s = sample_delimited(text, false, &CSV, &schema(), &[], SampleMode::Head, &limits).unwrap();
        assert_eq!(
            values(&s),
            vec![vec![1.into(), "ann".into(), 0.5.into()], vec![2.into(), "bob".into(), Value::Null]]
        );
        assert!(s.more_rows);
        let cols = ["score".to_string(), "name".to_string()];
        let s =
            sample_delimited(text, false, &CSV, &schema(), &cols, SampleMode::Head, &SampleLimits::default())
                .unwrap();
        assert_eq!(s.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["score", "name"]);
        assert_eq!(values(&s)[2], vec![Value::from(2.0), "c, d".into()]);
        assert!(!s.more_rows);
    }

    #[test]
    fn unknown_columns_are_named() {
        let err = sample_delimited(
            b"id\n1\n",
            false,
            &CSV,
            &schema(),
            &["nope".into()],
            SampleMode::Head,
            &SampleLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "SAMPLE_UNKNOWN_COLUMN");
        assert!(err.to_string().contains("'nope'") && err.to_string().contains("id, name, score"));
    }

    #[test]
    fn a_truncated_window_never_yields_its_partial_last_line() {
        let text = b"id,name,score\n1,ann,0.5\n2,bo";
        let s =
            sample_delimited(text, true, &CSV, &schema(), &[], SampleMode::Head, &SampleLimits::default())
                .unwrap();
        assert_eq!(s.rows.len(), 1);
        assert!(s.more_rows);
        let lines = b"{\"id\":1}\n{\"id\":2,\"na";
        let s = sample_json_lines(lines, true, &schema(), &[], SampleMode::Head, &SampleLimits::default())
            .unwrap();
        assert_eq!(s.rows.len(), 1);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary_and_marked() {
        let text = "id,name,score\n1,ééééé,1\n".as_bytes();
        let limits = SampleLimits { max_rows: 10, max_value_bytes: 5 };
        let s = sample_delimited(text, false, &CSV, &schema(), &[], SampleMode::Head, &limits).unwrap();
        assert_eq!(s.rows[0][1].value, Value::from("éé"));
        assert!(s.rows[0][1].truncated);
        assert!(!s.rows[0][0].truncated);
        let nested = br#"{"id":1,"name":{"inner":["abcdefgh"]}}"#;
        let s = sample_json_lines(nested, false, &schema(), &[], SampleMode::Head, &limits).unwrap();
        assert_eq!(s.rows[0][1].value, serde_json::json!({"inner": ["abcde"]}));
        assert!(s.rows[0][1].truncated);
    }

    #[test]
    fn random_samples_are_uniform_reproducible_and_in_file_order() {
        let mut text = String::from("id,name,score\n");
        for i in 0..1000 {
            text.push_str(&format!("{i},n{i},{i}.5\n"));
        }
        let limits = SampleLimits { max_rows: 50, max_value_bytes: 100 };
        let take = |seed| {
            let s = sample_delimited(
                text.as_bytes(),
                false,
                &CSV,
                &schema(),
                &["id".into()],
                SampleMode::Random { seed },
                &limits,
            )
            .unwrap();
            s.rows.iter().map(|r| r[0].value.as_i64().unwrap()).collect::<Vec<_>>()
        };
        let a = take(7);
        assert_eq!(a, take(7), "same seed, same rows");
        assert_ne!(a, take(8), "another seed, other rows");
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "file order");
        // Not just the head: a uniform draw of 50 from 1000 reaches past the first 100.
        assert!(a.iter().any(|&i| i >= 100), "{a:?}");
        // Over many seeds, the mean position is near the middle.
        let mean: f64 = (0..40u64).flat_map(take).map(|i| i as f64).sum::<f64>() / (40.0 * 50.0);
        assert!((400.0..600.0).contains(&mean), "mean position {mean}");
    }

    #[test]
    fn malformed_rows_and_bad_utf8_are_typed_errors_without_content() {
        let err = sample_json_lines(
            b"{\"id\":1}\n[1,2]\n",
            false,
            &schema(),
            &[],
            SampleMode::Head,
            &SampleLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err, SampleError::MalformedRow { row: 2, reason: "not a JSON object".into() });
        let err = sample_json_lines(
            b"{\"id\":1}\n{\"secret-value\n",
            false,
            &schema(),
            &[],
            SampleMode::Head,
            &SampleLimits::default(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret-value"), "{err}");
        let err = sample_delimited(
            b"id\n\xff\xfe\n1\n",
            false,
            &CSV,
            &schema(),
            &[],
            SampleMode::Head,
            &SampleLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "INVALID_UTF8");
    }

    #[test]
    fn json_arrays_are_streamed_element_by_element() {
        let doc = br#"[ {"id": 1, "name": "a"},
  {"id": 2, "name": {"deep": "x"}}, {"id": 3} ]"#;
        let limits = SampleLimits { max_rows: 2, max_value_bytes: 100 };
        let s = sample_json_document(doc, false, &schema(), &[], SampleMode::Head, &limits).unwrap();
        assert_eq!(
            values(&s),
            vec![
                vec![1.into(), "a".into(), Value::Null],
                vec![2.into(), serde_json::json!({"deep": "x"}), Value::Null]
            ]
        );
        assert!(s.more_rows);
        let all = sample_json_document(
            doc,
            false,
            &schema(),
            &["id".into()],
            SampleMode::Head,
            &SampleLimits::default(),
        )
        .unwrap();
        assert_eq!(values(&all), vec![vec![Value::from(1)], vec![2.into()], vec![3.into()]]);
        assert!(!all.more_rows);
        // A window cut inside the third element: two rows, and more behind.
        let cut = &doc[..doc.len() - 8];
        let s = sample_json_document(cut, true, &schema(), &[], SampleMode::Head, &SampleLimits::default())
            .unwrap();
        assert_eq!(s.rows.len(), 2);
        assert!(s.more_rows);
        // Objects one after another (no array) are rows too.
        let seq = b"{\"id\": 7}\n{\"id\": 8}";
        let s = sample_json_document(
            seq,
            false,
            &schema(),
            &["id".into()],
            SampleMode::Head,
            &SampleLimits::default(),
        )
        .unwrap();
        assert_eq!(values(&s), vec![vec![Value::from(7)], vec![8.into()]]);
        // Random draws over the window's elements, in file order.
        let many = format!("[{}]", (0..500).map(|i| format!("{{\"id\":{i}}}")).collect::<Vec<_>>().join(","));
        let limits = SampleLimits { max_rows: 20, max_value_bytes: 100 };
        let ids = |seed| {
            let s = sample_json_document(
                many.as_bytes(),
                false,
                &schema(),
                &["id".into()],
                SampleMode::Random { seed },
                &limits,
            )
            .unwrap();
            s.rows.iter().map(|r| r[0].value.as_i64().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(ids(1), ids(1));
        assert!(ids(1).windows(2).all(|w| w[0] < w[1]));
        assert!(ids(1).iter().any(|&i| i >= 20));
    }

    #[test]
    fn broken_json_documents_are_typed_errors_without_content() {
        let run = |doc: &[u8], truncated| {
            sample_json_document(doc, truncated, &schema(), &[], SampleMode::Head, &SampleLimits::default())
        };
        assert_eq!(
            run(b"[{\"id\":1}, 5]", false).unwrap_err(),
            SampleError::MalformedRow { row: 2, reason: "not a JSON object".into() }
        );
        assert_eq!(
            run(b"[{\"id\":1}", false).unwrap_err(),
            SampleError::MalformedRow { row: 1, reason: "array is not closed".into() }
        );
        assert_eq!(
            run(b"[{\"id\":1} {\"id\":2}]", false).unwrap_err(),
            SampleError::MalformedRow { row: 1, reason: "expected ',' or ']'".into() }
        );
        let err = run(b"[{\"id\":1}, {\"secret-value: 1}]", false).unwrap_err();
        assert_eq!(err.code(), "FILE_MALFORMED");
        assert!(!err.to_string().contains("secret-value"), "{err}");
        assert_eq!(run(b"[{\"id\":\"\xff\"}]", false).unwrap_err().code(), "INVALID_UTF8");
    }
}
