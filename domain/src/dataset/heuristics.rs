//! The naming heuristics: where a dataset's root is and which segments are partitions.

use super::{DatasetKey, PartitionStyle, Placement};
use crate::model::{Compression, FileFormat};

/// Format and compression from a key's file-name extensions.
///
/// Private stand-in for the shared `format::detect_from_key`; swapped for it at merge, which is
/// why every caller goes through this one function.
pub(crate) fn format_from_key(key: &str) -> (FileFormat, Compression) {
    format_from_file(key.rsplit('/').next().unwrap_or(key))
}

/// [`format_from_key`] for a key's file name (after its last `/`).
pub(crate) fn format_from_file(file: &str) -> (FileFormat, Compression) {
    // Every listed key comes through here: the extensions are split off by a byte search and
    // compared in place, by length first.
    let is = |ext: &[u8], name: &str| ext.eq_ignore_ascii_case(name.as_bytes());
    let (stem, compression) = match split_extension(file) {
        Some((stem, ext)) if is(ext, "gz") || is(ext, "gzip") => (stem, Compression::Gzip),
        Some((stem, ext)) if is(ext, "zst") || is(ext, "zstd") => (stem, Compression::Zstd),
        Some((stem, ext)) if is(ext, "bz2") => (stem, Compression::Bzip2),
        _ => (file, Compression::None),
    };
    let format = match split_extension(stem) {
        Some((_, ext)) if is(ext, "csv") => FileFormat::Csv,
        Some((_, ext)) if is(ext, "tsv") || is(ext, "tab") => FileFormat::Tsv,
        Some((_, ext)) if is(ext, "psv") => FileFormat::Psv,
        Some((_, ext)) if is(ext, "jsonl") || is(ext, "ndjson") => FileFormat::JsonLines,
        Some((_, ext)) if is(ext, "json") => FileFormat::Json,
        Some((_, ext)) if is(ext, "parquet") || is(ext, "parq") || is(ext, "pq") => FileFormat::Parquet,
        Some((_, ext)) if is(ext, "avro") => FileFormat::Avro,
        Some((_, ext)) if is(ext, "orc") => FileFormat::Orc,
        _ => FileFormat::Unknown,
    };
    (format, compression)
}

/// The text before a name's last `.` and the bytes after it.
fn split_extension(name: &str) -> Option<(&str, &[u8])> {
    let dot = name.as_bytes().iter().rposition(|&b| b == b'.')?;
    // A `.` is one byte and never inside a multi-byte character: both sides are whole.
    Some((&name[..dot], &name.as_bytes()[dot + 1..]))
}

/// Percent-decode a partition value as UTF-8; `+` stays literal (S3 keys are not form-encoded)
/// and text that does not decode to UTF-8 is kept raw rather than mangled.
pub(crate) fn decode_value(raw: &str) -> String {
    match percent_encoding::percent_decode_str(raw).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => raw.to_string(),
    }
}

/// A Hive segment `k=v` as `(decoded k, decoded v)`; the key must be non-empty.
pub(crate) fn hive_pair(segment: &str) -> Option<(String, String)> {
    let (k, v) = segment.split_once('=')?;
    if k.is_empty() {
        return None;
    }
    Some((decode_value(k), decode_value(v)))
}

fn all_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

fn in_range(s: &str, len: usize, lo: u32, hi: u32) -> bool {
    all_digits(s, len) && s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
}

// Plausible years only, so that a folder named `0042` or `9000` is not taken for a date.
fn is_year(s: &str) -> bool {
    in_range(s, 4, 1900, 2199)
}

/// `YYYY-MM-DD` as one segment.
fn is_iso_date(s: &str) -> bool {
    let mut parts = s.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(y), Some(m), Some(d), None)
            if is_year(y) && in_range(m, 2, 1, 12) && in_range(d, 2, 1, 31)
    )
}

/// The date-folder run starting at `dirs[i]`: `YYYY/MM`, `YYYY/MM/DD` or `YYYY/MM/DD/HH`
/// (a lone `YYYY` folder is too ambiguous to count), or a single `YYYY-MM-DD` segment.
fn date_run(dirs: &[&str], i: usize) -> Option<Vec<(String, String)>> {
    let first = *dirs.get(i)?;
    if is_iso_date(first) {
        return Some(vec![("date".to_string(), first.to_string())]);
    }
    if !is_year(first) || !dirs.get(i + 1).is_some_and(|m| in_range(m, 2, 1, 12)) {
        return None;
    }
    let mut run =
        vec![("year".to_string(), first.to_string()), ("month".to_string(), dirs[i + 1].to_string())];
    if let Some(day) = dirs.get(i + 2).filter(|d| in_range(d, 2, 1, 31)) {
        run.push(("day".to_string(), day.to_string()));
        if let Some(hour) = dirs.get(i + 3).filter(|h| in_range(h, 2, 0, 23)) {
            run.push(("hour".to_string(), hour.to_string()));
        }
    }
    Some(run)
}

/// Index of the first partition segment and the style it was recognised by.
pub(crate) type FirstPartition = (usize, PartitionStyle);

/// Partitions found in `dirs` (directory segments, file name excluded) in path order, and the
/// index of the first partition segment with its style.
pub(crate) fn scan_partitions(dirs: &[&str]) -> (Vec<(String, String)>, Option<FirstPartition>) {
    let mut partitions = Vec::new();
    let mut first = None;
    let mut i = 0;
    while i < dirs.len() {
        if let Some(pair) = hive_pair(dirs[i]) {
            first.get_or_insert((i, PartitionStyle::Hive));
            partitions.push(pair);
            i += 1;
        } else if let Some(run) = date_run(dirs, i) {
            first.get_or_insert((i, PartitionStyle::DateFolders));
            i += run.len();
            partitions.extend(run);
        } else {
            i += 1;
        }
    }
    (partitions, first)
}

/// Place a (non-junk) key by the heuristics.
pub(crate) fn place(key: &str) -> Placement {
    let (format, compression) = format_from_key(key);
    let dir = key.rfind('/').map_or("", |i| &key[..=i]);
    let dirs: Vec<&str> = if dir.is_empty() { Vec::new() } else { dir[..dir.len() - 1].split('/').collect() };
    let (partitions, first) = scan_partitions(&dirs);
    let (prefix, style) = match first {
        // The root is everything before the first partition segment, with its trailing slash.
        Some((i, style)) => {
            let len: usize = dirs[..i].iter().map(|s| s.len() + 1).sum();
            (dir[..len].to_string(), style)
        }
        None => (dir.to_string(), PartitionStyle::None),
    };
    Placement { dataset: DatasetKey { prefix, format }, compression, partitions, style }
}
