//! Format and compression detection.
//!
//! Two sources of evidence: the object key (cheap, available from a listing) and the first bytes
//! of the object (magic numbers, then a light text sniff). [`crate::schema::infer`] combines both.

use std::io::Read;

use crate::model::{Compression, FileFormat};

/// A file format together with the whole-file compression wrapped around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DetectedFormat {
    /// The format of the (decompressed) content.
    pub format: FileFormat,
    /// The outer compression; always [`Compression::None`] for Parquet, ORC and Avro.
    pub compression: Compression,
}

impl DetectedFormat {
    /// A format without outer compression.
    pub fn plain(format: FileFormat) -> Self {
        DetectedFormat { format, compression: Compression::None }
    }
}

/// Detects the format from the key's extensions, case-insensitively.
///
/// Recognised: `.csv .tsv .tab .psv .txt (Unknown) .jsonl .ndjson .json .parquet .pq .avro .orc`,
/// each optionally followed by `.gz`/`.gzip`, `.zst`/`.zstd` or `.bz2`. Parquet, ORC and Avro
/// compress internally, so an outer compression suffix on them yields `Unknown`.
pub fn detect_from_key(key: &str) -> DetectedFormat {
    // Only the last path segment carries extensions.
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let mut parts: Vec<&str> = name.split('.').collect();
    let unknown = DetectedFormat::plain(FileFormat::Unknown);
    if parts.len() < 2 {
        return unknown;
    }
    let mut compression = Compression::None;
    if let Some(last) = parts.last() {
        let c = match *last {
            "gz" | "gzip" => Some(Compression::Gzip),
            "zst" | "zstd" => Some(Compression::Zstd),
            "bz2" => Some(Compression::Bzip2),
            _ => None,
        };
        if let Some(c) = c {
            compression = c;
            parts.pop();
        }
    }
    if parts.len() < 2 {
        return DetectedFormat { format: FileFormat::Unknown, compression };
    }
    let ext = parts.last().copied().unwrap_or("");
    let format = match ext {
        "csv" => FileFormat::Csv,
        "tsv" | "tab" => FileFormat::Tsv,
        "psv" => FileFormat::Psv,
        "jsonl" | "ndjson" => FileFormat::JsonLines,
        "json" => FileFormat::Json,
        "parquet" | "pq" => FileFormat::Parquet,
        "avro" => FileFormat::Avro,
        "orc" => FileFormat::Orc,
        _ => FileFormat::Unknown,
    };
    if matches!(format, FileFormat::Parquet | FileFormat::Orc | FileFormat::Avro)
        && compression != Compression::None
    {
        // A gzipped Parquet file is not something any reader understands.
        return DetectedFormat { format: FileFormat::Unknown, compression };
    }
    DetectedFormat { format, compression }
}

/// Compression announced by a magic number at the start of `head`, if any.
pub fn compression_from_magic(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if head.len() >= 4 && head.starts_with(b"BZh") && head[3].is_ascii_digit() {
        Some(Compression::Bzip2)
    } else {
        None
    }
}

/// Binary container format announced by a magic number at the start of `head`, if any.
pub fn container_from_magic(head: &[u8]) -> Option<FileFormat> {
    if head.starts_with(b"PAR1") || head.starts_with(b"PARE") {
        Some(FileFormat::Parquet)
    } else if head.starts_with(b"Obj\x01") {
        Some(FileFormat::Avro)
    } else if head.starts_with(b"ORC") {
        Some(FileFormat::Orc)
    } else {
        None
    }
}

/// How much decompressed text [`detect_from_content`] looks at behind a compression magic.
const SNIFF_DECODED_BYTES: u64 = 64 * 1024;

/// Detects the format from the first bytes of an object.
///
/// Magic numbers first (`PAR1`/`PARE`, `Obj\x01`, `ORC`, gzip, zstd, bzip2); behind a
/// compression magic up to 64 KiB are decoded and sniffed as text. Text is classified as JSON
/// (`[` or a single `{...}`), JSON Lines (several `{` lines) or delimited text (by a consistent
/// delimiter count). Returns `None` when nothing is recognised.
pub fn detect_from_content(head: &[u8]) -> Option<DetectedFormat> {
    if let Some(format) = container_from_magic(head) {
        return Some(DetectedFormat::plain(format));
    }
    if let Some(compression) = compression_from_magic(head) {
        let mut decoded = Vec::new();
        // Errors are expected: `head` is usually a cut stream. Sniff whatever came out.
        let _ = match compression {
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(head).take(SNIFF_DECODED_BYTES).read_to_end(&mut decoded)
            }
            Compression::Zstd => match zstd::stream::read::Decoder::new(head) {
                Ok(d) => d.take(SNIFF_DECODED_BYTES).read_to_end(&mut decoded),
                Err(e) => Err(e),
            },
            Compression::Bzip2 => {
                bzip2::read::MultiBzDecoder::new(head).take(SNIFF_DECODED_BYTES).read_to_end(&mut decoded)
            }
            Compression::None => Ok(0),
        };
        let format = sniff_text(&decoded).unwrap_or(FileFormat::Unknown);
        return Some(DetectedFormat { format, compression });
    }
    sniff_text(head).map(DetectedFormat::plain)
}

/// Classifies a text prefix; `None` for binary or unrecognisable content.
pub(crate) fn sniff_text(head: &[u8]) -> Option<FileFormat> {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if head.is_empty() || head.contains(&0) {
        return None;
    }
    // The prefix may end mid-character: only the valid part counts.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return Some(FileFormat::Json);
    }
    if trimmed.starts_with('{') {
        let object_lines = trimmed.lines().filter(|l| l.trim_start().starts_with('{')).take(2).count();
        return Some(if object_lines >= 2 { FileFormat::JsonLines } else { FileFormat::Json });
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(20).collect();
    // The last line may be cut short; ignore it when there are others.
    let lines = if lines.len() > 2 { &lines[..lines.len() - 1] } else { &lines[..] };
    let mut best: Option<(char, usize)> = None;
    for delim in [',', '\t', '|', ';'] {
        let counts: Vec<usize> = lines.iter().map(|l| l.matches(delim).count()).collect();
        let Some(&first) = counts.first() else {
            continue;
        };
        if first == 0 || counts.iter().any(|&c| c != first) {
            continue;
        }
        if best.is_none_or(|(_, n)| first > n) {
            best = Some((delim, first));
        }
    }
    best.map(|(delim, _)| delimiter_format(delim))
}

/// The delimited-text format a delimiter implies.
pub(crate) fn delimiter_format(delim: char) -> FileFormat {
    match delim {
        '\t' => FileFormat::Tsv,
        '|' => FileFormat::Psv,
        _ => FileFormat::Csv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Compression as C;
    use FileFormat as F;

    #[test]
    fn keys() {
        let table: &[(&str, F, C)] = &[
            ("a/b/data.csv", F::Csv, C::None),
            ("data.CSV.GZ", F::Csv, C::Gzip),
            ("x.tsv", F::Tsv, C::None),
            ("x.tab.bz2", F::Tsv, C::Bzip2),
            ("x.psv.zst", F::Psv, C::Zstd),
            ("x.txt", F::Unknown, C::None),
            ("x.jsonl.gzip", F::JsonLines, C::Gzip),
            ("x.ndjson", F::JsonLines, C::None),
            ("x.json.zstd", F::Json, C::Zstd),
            ("part-0.snappy.parquet", F::Parquet, C::None),
            ("x.pq", F::Parquet, C::None),
            ("x.avro", F::Avro, C::None),
            ("x.orc", F::Orc, C::None),
            ("x.parquet.gz", F::Unknown, C::Gzip),
            ("noext", F::Unknown, C::None),
            ("dir.csv/noext", F::Unknown, C::None),
            ("x.gz", F::Unknown, C::Gzip),
            ("", F::Unknown, C::None),
            (".csv", F::Csv, C::None),
        ];
        for (key, format, compression) in table {
            assert_eq!(
                detect_from_key(key),
                DetectedFormat { format: *format, compression: *compression },
                "{key}"
            );
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn content() {
        let gz_csv = gz(b"a,b\n1,2\n3,4\n");
        let zst_json = zstd::encode_all(&b"{\"a\":1}\n{\"a\":2}\n"[..], 1).unwrap();
        type Row<'a> = (&'a [u8], Option<(F, C)>);
        let table: Vec<Row> = vec![
            (b"PAR1\x00\x00", Some((F::Parquet, C::None))),
            (b"PARE\x00", Some((F::Parquet, C::None))),
            (b"Obj\x01\x04", Some((F::Avro, C::None))),
            (b"ORC\x0a", Some((F::Orc, C::None))),
            (&gz_csv, Some((F::Csv, C::Gzip))),
            (&zst_json, Some((F::JsonLines, C::Zstd))),
            (b"BZh9", Some((F::Unknown, C::Bzip2))),
            (b"a\tb\n1\t2\n", Some((F::Tsv, C::None))),
            (b"a|b|c\n1|2|3\n", Some((F::Psv, C::None))),
            (b"a;b\n1;2\n", Some((F::Csv, C::None))),
            (b"  [{\"a\":1}]", Some((F::Json, C::None))),
            (b"{\"a\":1}", Some((F::Json, C::None))),
            (b"\x00\x01\x02", None),
            (b"", None),
            (b"hello\nworld\n", None),
        ];
        for (head, expected) in table {
            let got = detect_from_content(head).map(|d| (d.format, d.compression));
            assert_eq!(got, expected, "{head:?}");
        }
    }
}
