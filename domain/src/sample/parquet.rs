//! Parquet sampling from ranged reads: the footer says which row groups and column chunks hold
//! the wanted rows and columns; only those byte ranges are fetched, then decoded here.
//!
//! Flow: `footer_metadata(tail)` → `plan(metadata, columns, mode, limits)` → the caller fetches
//! `plan.ranges` → `sample(SparseFile, plan, ...)`.

use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, FileReader, Length};
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::schema::types::Type;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::{Sample, SampleError, SampleLimits, SampleMode, SampledValue, bound};
use crate::model::Field;

/// Why a Parquet sample could not be taken (besides the common [`SampleError`]s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParquetSampleError {
    /// The footer or a page cannot be decoded.
    #[error("Parquet file cannot be decoded: {reason}")]
    Malformed {
        /// What the decoder said.
        reason: String,
    },
    /// The footer is encrypted (Parquet modular encryption).
    #[error("the Parquet footer is encrypted (PARE): sampling needs the file's column keys")]
    EncryptedFooter,
    /// Even the smallest useful read exceeds the byte budget.
    #[error("reading the first row group needs {needed} bytes, over the sampling limit of {limit}")]
    TooLarge {
        /// Bytes the plan needs.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// A common sampling error.
    #[error(transparent)]
    Sample(#[from] SampleError),
}

impl ParquetSampleError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ParquetSampleError::Malformed { .. } => "FILE_MALFORMED",
            ParquetSampleError::EncryptedFooter => "PARQUET_ENCRYPTED_FOOTER",
            ParquetSampleError::TooLarge { .. } => "SAMPLE_TOO_LARGE",
            ParquetSampleError::Sample(e) => e.code(),
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> ParquetSampleError {
    ParquetSampleError::Malformed { reason: e.to_string() }
}

/// Decodes the footer from the file's tail (`tail` = the last `tail.len()` bytes). Returns the
/// metadata, or the number of tail bytes needed when `tail` is too short.
pub fn footer_metadata(tail: &[u8]) -> Result<Result<ParquetMetaData, u64>, ParquetSampleError> {
    let n = tail.len();
    if n < 8 {
        return Ok(Err(8));
    }
    match &tail[n - 4..] {
        b"PAR1" => {}
        b"PARE" => return Err(ParquetSampleError::EncryptedFooter),
        _ => return Err(malformed("no PAR1 magic at the end of the file")),
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&tail[n - 8..n - 4]);
    let metadata_len = u64::from(u32::from_le_bytes(len4));
    let needed = metadata_len + 8;
    if (n as u64) < needed {
        return Ok(Err(needed));
    }
    let start = n - needed as usize;
    ParquetMetaDataReader::decode_metadata(&tail[start..n - 8]).map(Ok).map_err(malformed)
}

/// What to fetch and decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetPlan {
    /// Row groups to read, ascending.
    pub row_groups: Vec<usize>,
    /// Top-level columns to return, in output order (indices into the file schema's fields).
    pub columns: Vec<usize>,
    /// Byte ranges `(start, length)` to fetch: the projected column chunks of those row groups.
    pub ranges: Vec<(u64, u64)>,
    /// Rows in the chosen row groups.
    pub rows_in_plan: u64,
    /// Rows in the file.
    pub rows_in_file: u64,
}

/// Plans a sample: the row groups (first ones for `Head`, random ones for `Random`) holding at
/// least `limits.max_rows` rows, and the chunks of the projected columns, within `max_bytes`.
pub fn plan(
    metadata: &ParquetMetaData,
    schema: &[Field],
    columns: &[String],
    mode: SampleMode,
    limits: &SampleLimits,
    max_bytes: u64,
) -> Result<ParquetPlan, ParquetSampleError> {
    let picked = super::projection(schema, columns)?;
    let file_schema = metadata.file_metadata().schema_descr();
    let roots = file_schema.root_schema().get_fields();
    let picked_names: Vec<&str> = picked.iter().map(|&i| schema[i].name.as_str()).collect();
    let top: Vec<usize> = picked_names
        .iter()
        .map(|name| {
            roots.iter().position(|t| t.name() == *name).ok_or_else(|| {
                ParquetSampleError::Sample(SampleError::UnknownColumn {
                    column: name.to_string(),
                    available: roots.iter().map(|t| t.name().to_string()).collect::<Vec<_>>().join(", "),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    // Leaf columns under the picked top-level fields.
    let leaves: Vec<usize> = (0..file_schema.num_columns())
        .filter(|&c| top.contains(&file_schema.get_column_root_idx(c)))
        .collect();

    let mut order: Vec<usize> = (0..metadata.num_row_groups()).collect();
    if let SampleMode::Random { seed } = mode {
        order.shuffle(&mut StdRng::seed_from_u64(seed));
    }
    let mut row_groups = Vec::new();
    let mut rows_in_plan = 0u64;
    let mut bytes = 0u64;
    for rg in order {
        if rows_in_plan >= limits.max_rows as u64 && !row_groups.is_empty() {
            break;
        }
        let group = metadata.row_group(rg);
        let cost: u64 = leaves.iter().map(|&c| group.column(c).byte_range().1).sum();
        if bytes + cost > max_bytes {
            if row_groups.is_empty() {
                return Err(ParquetSampleError::TooLarge { needed: cost, limit: max_bytes });
            }
            break;
        }
        bytes += cost;
        rows_in_plan += u64::try_from(group.num_rows()).unwrap_or(0);
        row_groups.push(rg);
    }
    row_groups.sort_unstable();
    let ranges = row_groups
        .iter()
        .flat_map(|&rg| leaves.iter().map(move |&c| (rg, c)))
        .map(|(rg, c)| metadata.row_group(rg).column(c).byte_range())
        .collect();
    Ok(ParquetPlan {
        row_groups,
        columns: top,
        ranges,
        rows_in_plan,
        rows_in_file: u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0),
    })
}

/// Merges byte ranges `(start, length)` whose gap is at most `max_gap` bytes into spans, so
/// that the column chunks of a row group (adjacent in the file) cost one ranged GET, not one
/// per column. Returns the spans in file order; bytes in the gaps are fetched too.
pub fn coalesce(ranges: &[(u64, u64)], max_gap: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges.iter().copied().filter(|&(_, len)| len > 0).collect();
    sorted.sort_unstable();
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (start, len) in sorted {
        let end = start.saturating_add(len);
        match spans.last_mut() {
            Some((s, l)) if start <= s.saturating_add(*l).saturating_add(max_gap) => {
                *l = end.max(*s + *l) - *s;
            }
            _ => spans.push((start, len)),
        }
    }
    spans
}

/// The fetched parts of a file: reads outside them fail instead of reaching for bytes that
/// were never fetched.
#[derive(Debug, Clone)]
pub struct SparseFile {
    len: u64,
    pieces: Vec<(u64, Bytes)>,
}

impl SparseFile {
    /// A file of `len` bytes of which nothing is known yet.
    pub fn new(len: u64) -> SparseFile {
        SparseFile { len, pieces: Vec::new() }
    }

    /// Adds the bytes found at `start`.
    pub fn insert(&mut self, start: u64, bytes: Bytes) {
        self.pieces.push((start, bytes));
    }

    /// True when the bytes `start..start + length` were fetched (in one piece).
    pub fn holds(&self, start: u64, length: u64) -> bool {
        self.find(start, length).is_some()
    }

    /// The size of the whole file.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The fetched bytes from `start` to the end of the piece holding it.
    pub(crate) fn from(&self, start: u64) -> Option<Bytes> {
        let (at, bytes) = self.pieces.iter().find(|(at, b)| start >= *at && start < at + b.len() as u64)?;
        Some(bytes.slice((start - at) as usize..))
    }

    pub(crate) fn find(&self, start: u64, length: u64) -> Option<Bytes> {
        self.pieces.iter().find_map(|(at, bytes)| {
            let end = at + bytes.len() as u64;
            (start >= *at && start + length <= end).then(|| {
                let from = (start - at) as usize;
                bytes.slice(from..from + length as usize)
            })
        })
    }
}

impl Length for SparseFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SparseFile {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let piece =
            self.from(start).ok_or_else(|| ParquetError::General(format!("byte {start} was not fetched")))?;
        Ok(bytes::Buf::reader(piece))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.find(start, length as u64)
            .ok_or_else(|| ParquetError::General(format!("bytes {start}+{length} were not fetched")))
    }
}

/// Decodes the planned rows. `file` must hold the footer and every range of `plan`.
pub fn sample(
    file: SparseFile,
    plan: &ParquetPlan,
    schema: &[Field],
    mode: SampleMode,
    limits: &SampleLimits,
) -> Result<Sample, ParquetSampleError> {
    let wanted = plan.row_groups.clone();
    let options =
        ReadOptionsBuilder::new().with_predicate(Box::new(move |_, idx| wanted.contains(&idx))).build();
    let reader = SerializedFileReader::new_with_options(file, options).map_err(malformed)?;
    let root = reader.metadata().file_metadata().schema_descr().root_schema();
    let root_name = root.name().to_string();
    let roots = root.get_fields().to_vec();
    let projected: Vec<Arc<Type>> = plan.columns.iter().filter_map(|&i| roots.get(i).cloned()).collect();
    let names: Vec<String> = projected.iter().map(|t| t.name().to_string()).collect();
    let projection =
        Type::group_type_builder(&root_name).with_fields(projected).build().map_err(malformed)?;
    let rows = reader.get_row_iter(Some(projection)).map_err(malformed)?;

    let max = limits.max_rows;
    let mut chosen: Vec<(usize, parquet::record::Row)> = Vec::new();
    let mut rng = match mode {
        SampleMode::Random { seed } => Some(StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)),
        SampleMode::Head => None,
    };
    let mut seen = 0usize;
    for row in rows {
        let row = row.map_err(malformed)?;
        match rng.as_mut() {
            None if chosen.len() == max => {
                seen += 1;
                break;
            }
            None => chosen.push((seen, row)),
            Some(_) if chosen.len() < max => chosen.push((seen, row)),
            Some(rng) => {
                let j = rng.random_range(0..=seen);
                if j < max {
                    chosen[j] = (seen, row);
                }
            }
        }
        seen += 1;
    }
    chosen.sort_by_key(|(i, _)| *i);
    let columns: Vec<Field> = names
        .iter()
        .map(|n| {
            schema.iter().find(|f| &f.name == n).cloned().unwrap_or_else(|| Field {
                name: n.clone(),
                data_type: crate::model::DataType::String,
                nullable: true,
            })
        })
        .collect();
    let rows = chosen
        .into_iter()
        .map(|(_, row)| {
            let mut object = match row.to_json_value() {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            names
                .iter()
                .map(|n| {
                    let (value, truncated) =
                        bound(object.remove(n).unwrap_or(Value::Null), limits.max_value_bytes);
                    SampledValue { value, truncated }
                })
                .collect()
        })
        .collect();
    let more_rows = seen > max || plan.rows_in_file > plan.rows_in_plan;
    Ok(Sample { columns, rows, more_rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DataType;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    /// A file of `groups` row groups of `per_group` rows: id (0..), name ("n<id>").
    fn file(groups: usize, per_group: usize) -> Vec<u8> {
        let schema = Arc::new(
            parse_message_type("message m { required int64 id; required binary name (UTF8); }").unwrap(),
        );
        let mut out = Vec::new();
        let props = Arc::new(WriterProperties::builder().build());
        let mut writer = SerializedFileWriter::new(&mut out, schema, props).unwrap();
        for g in 0..groups {
            let ids: Vec<i64> = (0..per_group).map(|r| (g * per_group + r) as i64).collect();
            let names: Vec<ByteArray> =
                ids.iter().map(|i| ByteArray::from(format!("n{i}").as_str())).collect();
            let mut rg = writer.next_row_group().unwrap();
            let mut col = rg.next_column().unwrap().unwrap();
            col.typed::<Int64Type>().write_batch(&ids, None, None).unwrap();
            col.close().unwrap();
            let mut col = rg.next_column().unwrap().unwrap();
            col.typed::<ByteArrayType>().write_batch(&names, None, None).unwrap();
            col.close().unwrap();
            rg.close().unwrap();
        }
        writer.close().unwrap();
        out
    }

    fn schema() -> Vec<Field> {
        vec![
            Field { name: "id".into(), data_type: DataType::Int64, nullable: false },
            Field { name: "name".into(), data_type: DataType::String, nullable: false },
        ]
    }

    /// Fetches like the connector would: the tail, then only the planned ranges.
    fn run(bytes: &[u8], columns: &[String], mode: SampleMode, max_rows: usize) -> (ParquetPlan, Sample) {
        let tail_len = (64 * 1024).min(bytes.len());
        let tail = &bytes[bytes.len() - tail_len..];
        let metadata = footer_metadata(tail).unwrap().unwrap();
        let limits = SampleLimits { max_rows, max_value_bytes: 100 };
        let plan = plan(&metadata, &schema(), columns, mode, &limits, u64::MAX).unwrap();
        let mut sparse = SparseFile::new(bytes.len() as u64);
        sparse.insert((bytes.len() - tail_len) as u64, Bytes::copy_from_slice(tail));
        for &(start, len) in &plan.ranges {
            sparse.insert(start, Bytes::copy_from_slice(&bytes[start as usize..(start + len) as usize]));
        }
        let sample = sample(sparse, &plan, &schema(), mode, &limits).unwrap();
        (plan, sample)
    }

    #[test]
    fn head_reads_only_the_first_row_groups_and_projected_chunks() {
        let bytes = file(4, 50);
        let (plan, s) = run(&bytes, &["name".into()], SampleMode::Head, 60);
        assert_eq!(plan.row_groups, vec![0, 1], "60 rows need two groups of 50");
        assert_eq!(plan.ranges.len(), 2, "one chunk (name) per group");
        assert_eq!(s.columns.len(), 1);
        assert_eq!(s.rows.len(), 60);
        assert_eq!(s.rows[0][0].value, Value::from("n0"));
        assert_eq!(s.rows[59][0].value, Value::from("n59"));
        assert!(s.more_rows);
    }

    #[test]
    fn random_mode_reaches_other_row_groups_reproducibly() {
        let bytes = file(8, 25);
        let ids = |seed| {
            let (_, s) = run(&bytes, &[], SampleMode::Random { seed }, 20);
            s.rows.iter().map(|r| r[0].value.as_i64().unwrap()).collect::<Vec<_>>()
        };
        let a = ids(3);
        assert_eq!(a, ids(3));
        assert_eq!(a.len(), 20);
        let any_beyond_head = (0..10u64).any(|seed| ids(seed).iter().any(|&i| i >= 25));
        assert!(any_beyond_head, "random samples come from other row groups too");
    }

    #[test]
    fn adjacent_chunks_coalesce_into_one_span() {
        assert_eq!(coalesce(&[(100, 10), (0, 50), (50, 50), (300, 5), (0, 0)], 0), vec![(0, 110), (300, 5)]);
        assert_eq!(coalesce(&[(0, 10), (20, 10)], 10), vec![(0, 30)]);
        assert_eq!(coalesce(&[(0, 100), (10, 5)], 0), vec![(0, 100)], "contained ranges");
        // A head sample of one row group with every column: one span.
        let bytes = file(3, 100);
        let metadata = footer_metadata(&bytes).unwrap().unwrap();
        let plan =
            plan(&metadata, &schema(), &[], SampleMode::Head, &SampleLimits::default(), u64::MAX).unwrap();
        assert_eq!(plan.ranges.len(), 2);
        assert_eq!(coalesce(&plan.ranges, 0).len(), 1);
    }

    #[test]
    fn unfetched_bytes_are_an_error_not_garbage() {
        let bytes = file(2, 10);
        let tail = &bytes[bytes.len() - 1024.min(bytes.len())..];
        let metadata = footer_metadata(tail).unwrap().unwrap();
        let plan =
            plan(&metadata, &schema(), &[], SampleMode::Head, &SampleLimits::default(), u64::MAX).unwrap();
        let mut sparse = SparseFile::new(bytes.len() as u64);
        sparse.insert((bytes.len() - tail.len()) as u64, Bytes::copy_from_slice(tail));
        let err = sample(sparse, &plan, &schema(), SampleMode::Head, &SampleLimits::default()).unwrap_err();
        assert_eq!(err.code(), "FILE_MALFORMED");
        assert!(err.to_string().contains("not fetched"), "{err}");
    }

    #[test]
    fn budgets_short_tails_and_bad_footers() {
        let bytes = file(3, 10);
        let metadata = footer_metadata(&bytes).unwrap().unwrap();
        let err =
            plan(&metadata, &schema(), &[], SampleMode::Head, &SampleLimits::default(), 10).unwrap_err();
        assert_eq!(err.code(), "SAMPLE_TOO_LARGE");
        assert!(matches!(footer_metadata(&bytes[bytes.len() - 8..]).unwrap(), Err(n) if n > 8));
        assert_eq!(footer_metadata(b"xxxxxxxxPARE").unwrap_err().code(), "PARQUET_ENCRYPTED_FOOTER");
        assert_eq!(footer_metadata(b"not parquet at all").unwrap_err().code(), "FILE_MALFORMED");
        let err = plan(
            &metadata,
            &schema(),
            &["missing".into()],
            SampleMode::Head,
            &SampleLimits::default(),
            u64::MAX,
        )
        .unwrap_err();
        assert_eq!(err.code(), "SAMPLE_UNKNOWN_COLUMN");
    }
}
