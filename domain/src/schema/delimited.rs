//! Delimited text (CSV, TSV, PSV): dialect sniffing, header detection, column types.

use std::collections::{HashMap, HashSet};

use csv::StringRecord;

use super::scalar::{ColumnAcc, Scalar, classify, is_null_token};
use super::{CsvDialect, InferenceError, InferenceLimits, InferredFile};
use crate::format::delimiter_format;
use crate::model::{Compression, Field, FileFormat, Schema};

const DELIMITERS: [u8; 4] = [b',', b'\t', b'|', b';'];
/// Lines looked at to choose the dialect.
const SNIFF_LINES: usize = 50;

/// Infers the schema of delimited text. `format` (from the key) is only a delimiter hint.
pub(crate) fn infer(
    format: FileFormat,
    text: &str,
    truncated: bool,
    limits: &InferenceLimits,
) -> Result<InferredFile, InferenceError> {
    let hint = match format {
        FileFormat::Tsv => b'\t',
        FileFormat::Psv => b'|',
        _ => b',',
    };
    let sniff_end = text.match_indices('\n').nth(SNIFF_LINES).map_or(text.len(), |(i, _)| i + 1);
    let sniff = text.get(..sniff_end).unwrap_or(text);
    let (delimiter, quote) = sniff_dialect(sniff, hint);
    let format = delimiter_format(char::from(delimiter));

    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows: Vec<StringRecord> = Vec::new();
    let mut sample_truncated = truncated;
    // One extra row: the first may turn out to be a header.
    let wanted = limits.max_records.saturating_add(1);
    for result in reader.records() {
        if rows.len() >= wanted {
            sample_truncated = true;
            break;
        }
        match result {
            Ok(record) => rows.push(record),
            Err(e) => {
                let offset = e.position().map_or(0, |p| p.byte());
                return Err(InferenceError::malformed(format, offset, e.to_string()));
            }
        }
    }
    if rows.is_empty() {
        return Err(InferenceError::EmptyFile { format });
    }
    let width = modal_width(&rows);
    // The last row of a cut sample may be a quoted field cut short.
    if truncated && rows.len() > 1 && rows.last().is_some_and(|r| r.len() != width) {
        rows.pop();
    }
    let ragged = rows.iter().filter(|r| r.len() != width).count();
    if ragged * 2 > rows.len() {
        return Err(InferenceError::malformed(
            format,
            0,
            format!("{ragged} of {} rows do not have the usual {width} fields", rows.len()),
        ));
    }
    let has_header = detect_header(&rows, width);
    let (names, data) = if has_header {
        let names = column_names(rows.first(), width);
        (names, rows.get(1..).unwrap_or(&[]))
    } else {
        (column_names(None, width), &rows[..])
    };
    let data = data.get(..limits.max_records.min(data.len())).unwrap_or(data);
    let mut columns = vec![ColumnAcc::default(); width];
    for row in data {
        for (i, acc) in columns.iter_mut().enumerate() {
            match row.get(i) {
                Some(cell) => acc.add(classify(cell)),
                None => acc.nullable = true,
            }
        }
    }
    let fields = names
        .into_iter()
        .zip(&columns)
        .map(|(name, acc)| Field {
            name,
            data_type: acc.data_type(),
            // A column without a single value (header-only file) can only be null.
            nullable: acc.nullable || acc.kind().is_none(),
        })
        .collect();
    Ok(InferredFile {
        format,
        compression: Compression::None,
        schema: Schema { fields },
        dialect: Some(CsvDialect { delimiter, quote, has_header }),
        records_sampled: data.len() as u64,
        row_count: None,
        sample_truncated,
    })
}

/// Field counts of `text` parsed with a dialect.
fn field_counts(text: &str, delimiter: u8, quote: u8) -> Vec<usize> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    reader.records().map_while(Result::ok).map(|r| r.len()).collect()
}

/// The most common field count (ties: the larger count).
fn modal_width(rows: &[StringRecord]) -> usize {
    modal(rows.iter().map(StringRecord::len)).0
}

/// Most common value and its frequency.
fn modal(counts: impl Iterator<Item = usize>) -> (usize, usize) {
    let mut freq: HashMap<usize, usize> = HashMap::new();
    for c in counts {
        *freq.entry(c).or_default() += 1;
    }
    freq.into_iter().map(|(c, n)| (n, c)).max().map_or((0, 0), |(n, c)| (c, n))
}

/// How often `q` opens a field (at a line start or after the delimiter).
fn quote_openings(text: &str, delimiter: u8, q: u8) -> usize {
    let b = text.as_bytes();
    b.iter()
        .enumerate()
        .filter(|&(i, &c)| {
            c == q && (i == 0 || matches!(b.get(i - 1), Some(&p) if p == delimiter || p == b'\n'))
        })
        .count()
}

/// Chooses the delimiter whose field count is most consistent (more fields break ties, the
/// hint wins exact ties), then the quote character that opens fields more often.
fn sniff_dialect(sniff: &str, hint: u8) -> (u8, u8) {
    let mut best: Option<(f64, usize, bool, u8, u8)> = None;
    for delimiter in DELIMITERS {
        let quote = if quote_openings(sniff, delimiter, b'\'') > quote_openings(sniff, delimiter, b'"') {
            b'\''
        } else {
            b'"'
        };
        let counts = field_counts(sniff, delimiter, quote);
        if counts.is_empty() {
            continue;
        }
        let (width, freq) = modal(counts.iter().copied());
        if width < 2 {
            continue;
        }
        let consistency = freq as f64 / counts.len() as f64;
        let candidate = (consistency, width, delimiter == hint, delimiter, quote);
        let better = match best {
            None => true,
            Some((c, w, h, _, _)) => {
                if (consistency - c).abs() > 1e-9 {
                    consistency > c
                } else if delimiter == hint || h {
                    delimiter == hint
                } else {
                    width > w
                }
            }
        };
        if better {
            best = Some(candidate);
        }
    }
    match best {
        Some((_, _, _, delimiter, quote)) => (delimiter, quote),
        None => (hint, b'"'),
    }
}

/// Like Python's `csv.Sniffer.has_header`: the first row is a header when its cells are all
/// non-empty text and, column by column, they differ from the data below (another type, or a
/// length unlike fixed-length data). Undecided votes lean to "header" when the first row's
/// cells are distinct and never repeated below, as most files in a data lake have headers.
fn detect_header(rows: &[StringRecord], width: usize) -> bool {
    let Some(first) = rows.first() else {
        return false;
    };
    let header: Vec<&str> = (0..width).map(|i| first.get(i).unwrap_or("").trim()).collect();
    if header.iter().any(|cell| is_null_token(cell) || classify(cell) != Scalar::Str) {
        return false;
    }
    let data = rows.get(1..).unwrap_or(&[]);
    if data.is_empty() {
        return true;
    }
    let mut votes = 0i64;
    let mut repeated = false;
    for (i, head) in header.iter().enumerate() {
        let mut acc = ColumnAcc::default();
        let mut lengths = HashSet::new();
        let mut equal = false;
        for row in data {
            let cell = row.get(i).unwrap_or("").trim();
            acc.add(classify(cell));
            if !is_null_token(cell) {
                lengths.insert(cell.chars().count());
            }
            equal |= cell == *head;
        }
        repeated |= equal;
        match acc.kind() {
            None => {}
            Some(Scalar::Str) => {
                if equal {
                    votes -= 1;
                } else if lengths.len() == 1 && !lengths.contains(&head.chars().count()) {
                    votes += 1;
                }
            }
            Some(_) => votes += 1,
        }
    }
    let distinct = header.iter().collect::<HashSet<_>>().len() == header.len();
    votes > 0 || (votes == 0 && distinct && !repeated)
}

/// Column names from a header row (blank → `column_i`, duplicates suffixed), or `column_1..n`.
fn column_names(header: Option<&StringRecord>, width: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    (0..width)
        .map(|i| {
            let raw = header.and_then(|h| h.get(i)).map(str::trim).unwrap_or("");
            let base = if raw.is_empty() { format!("column_{}", i + 1) } else { raw.to_string() };
            let mut name = base.clone();
            let mut k = 2;
            while !seen.insert(name.clone()) {
                name = format!("{base}_{k}");
                k += 1;
            }
            name
        })
        .collect()
}
