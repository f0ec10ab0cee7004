//! Inventory Parquet data files held in memory (reference §1.5). Column names are snake_case
//! (`last_modified_date`, `e_tag`); keys are not URL-encoded.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::{FileReader, RowGroupReader};
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};

use super::arrow_cells::BatchCells;
use super::columns::InventoryColumn;
use super::record::{
    InventoryRecord, InventoryRows, RecordBuilder, RowError, RowTarget, SnapshotRow, SnapshotRowBuilder,
    check_schema, snapshot_rows_of_records,
};

/// Iterator over the rows of one Parquet inventory file, one row group decoded at a time.
///
/// Row-level errors are followed by the next rows; a row group that cannot be read ends the
/// iteration with a fatal [`RowError::UnreadableFile`].
pub struct ParquetRecords {
    file: String,
    /// The file's bytes, shared with `reader`, for the Arrow decoder of the snapshot path.
    bytes: Bytes,
    reader: SerializedFileReader<Bytes>,
    columns: Vec<InventoryColumn>,
    next_group: usize,
    row: u64,
    pending: VecDeque<Result<InventoryRecord, RowError>>,
    done: bool,
}

impl std::fmt::Debug for ParquetRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetRecords")
            .field("file", &self.file)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

/// Opens a Parquet inventory file. Fails when the footer cannot be read or the file's schema
/// has no `bucket` or `key` column.
pub fn read_parquet(file: impl Into<String>, bytes: Bytes) -> Result<ParquetRecords, RowError> {
    let file = file.into();
    let unreadable = |detail: String| RowError::UnreadableFile { file: file.clone(), detail };
    let reader = guarded(|| SerializedFileReader::new(bytes.clone()).map_err(|e| e.to_string()))
        .map_err(unreadable)?;
    let columns: Vec<InventoryColumn> = reader
        .metadata()
        .file_metadata()
        .schema()
        .get_fields()
        .iter()
        .map(|f| InventoryColumn::from_name(f.name()))
        .collect();
    check_schema(&file, &columns)?;
    Ok(ParquetRecords {
        file,
        bytes,
        reader,
        columns,
        next_group: 0,
        row: 0,
        pending: VecDeque::new(),
        done: false,
    })
}

impl ParquetRecords {
    /// The file's columns, in file order.
    pub fn columns(&self) -> &[InventoryColumn] {
        &self.columns
    }

    fn unreadable(&self, detail: String) -> RowError {
        RowError::UnreadableFile {
            file: self.file.clone(),
            detail: format!("row group {}: {detail}", self.next_group),
        }
    }

    /// Decodes the next row group into `pending`; false when there is none left.
    fn load_group(&mut self) -> bool {
        if self.next_group >= self.reader.num_row_groups() {
            return false;
        }
        let (file, reader, group, first_row) = (&self.file, &self.reader, self.next_group, self.row);
        let (records, rows, failure) = guarded(|| Ok(decode_group(file, reader, group, first_row)))
            .unwrap_or_else(|detail| (Vec::new(), 0, Some(detail)));
        self.row += rows;
        // `next` loads a group once `pending` is empty: then take the vector's buffer as is
        // (O(1)) instead of copying every 384-byte record into the deque.
        if self.pending.is_empty() {
            self.pending = VecDeque::from(records);
        } else {
            self.pending.extend(records);
        }
        if let Some(detail) = failure {
            let error = self.unreadable(detail);
            self.pending.push_back(Err(error));
            self.done = true;
        }
        self.next_group += 1;
        true
    }
}

impl InventoryRows for ParquetRecords {
    /// Rows of a flat schema (AWS's) are borrowed from the decoded column values.
    fn for_each_snapshot_row<E: From<RowError>>(
        mut self,
        mut on_row: impl FnMut(&SnapshotRow<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        // Rows already decoded as records, then the rest of a schema the column path cannot
        // take, go through records.
        let mut count = snapshot_rows_of_records(std::mem::take(&mut self.pending).into_iter(), &mut on_row)?;
        let kinds = match flat_columns(&self.reader) {
            Some(kinds) if !self.done => kinds,
            _ => return Ok(count + snapshot_rows_of_records(self, on_row)?),
        };
        // Arrow's decoder first (whole runs of values into flat buffers); a row group it cannot
        // decode is read again by our column reader, which names the row and column at fault.
        let arrow = guarded(|| {
            let metadata = Arc::new(self.reader.metadata().clone());
            // Types from the Parquet schema, not from an Arrow schema a writer embedded: that
            // could ask for types the cells take only in text form (a dictionary of other keys).
            let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
            let plain =
                ArrowReaderMetadata::try_new(metadata.clone(), options.clone()).map_err(|e| e.to_string())?;
            // Few-valued text columns as dictionaries: their values are parsed once a batch,
            // not copied out and parsed for every row; keys and ETags as views. Where the
            // decoder refuses these types, the Parquet schema's.
            let Some(schema) = snapshot_read_types(plain.schema(), &self.columns) else { return Ok(plain) };
            Ok(ArrowReaderMetadata::try_new(metadata, options.with_schema(schema)).unwrap_or(plain))
        })
        .ok();
        while self.next_group < self.reader.num_row_groups() {
            let delivered = match &arrow {
                Some(metadata) => match self.arrow_group(metadata, &mut on_row, &mut count)? {
                    ArrowGroup::Read => {
                        self.next_group += 1;
                        continue;
                    }
                    ArrowGroup::Undecodable { delivered } => delivered,
                },
                None => 0,
            };
            let (reader, group) = (&self.reader, self.next_group);
            let mut columns =
                guarded(|| GroupColumns::open(reader, &kinds, group)).map_err(|d| self.unreadable(d))?;
            let mut skip = delivered;
            loop {
                let rows = guarded(|| columns.next_batch()).map_err(|d| self.unreadable(d))?;
                if rows == 0 {
                    break;
                }
                let mut cursor = columns.cursor(rows);
                loop {
                    let mut builder = SnapshotRowBuilder::new(&self.file, self.row + 1);
                    let Some(filled) = cursor.fill(&mut builder) else { break };
                    // Rows Arrow's decoder already delivered (they read without error).
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    self.row += 1;
                    filled?;
                    count += 1;
                    on_row(builder.finished()?)?;
                }
            }
            self.next_group += 1;
        }
        Ok(count)
    }
}

/// `schema` (a flat file's, whose fields are `columns`) with the text fields of few-valued
/// columns read as dictionaries, and keys and ETags as views into the decoded pages (not
/// copied into one buffer: 6-8% of a reading thread); `None` if no field changes.
fn snapshot_read_types(schema: &SchemaRef, columns: &[InventoryColumn]) -> Option<SchemaRef> {
    use InventoryColumn as C;
    let few_valued = |column: &InventoryColumn| {
        matches!(
            column,
            C::Bucket
                | C::StorageClass
                | C::EncryptionStatus
                | C::BucketKeyStatus
                | C::ReplicationStatus
                | C::ObjectLockMode
                | C::ObjectLockLegalHoldStatus
                | C::IntelligentTieringAccessTier
                | C::ChecksumAlgorithm
                | C::ObjectLockEventHoldStatus
        )
    };
    if schema.fields().len() != columns.len() {
        return None;
    }
    let mut changed = false;
    let fields: Vec<ArrowField> = schema
        .fields()
        .iter()
        .zip(columns)
        .map(|(field, column)| {
            if few_valued(column) && field.data_type() == &DataType::Utf8 {
                changed = true;
                let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                field.as_ref().clone().with_data_type(dictionary)
            } else if matches!(column, C::Key | C::ETag) && field.data_type() == &DataType::Utf8 {
                changed = true;
                field.as_ref().clone().with_data_type(DataType::Utf8View)
            } else {
                field.as_ref().clone()
            }
        })
        .collect();
    changed.then(|| Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

/// How far Arrow's decoder read a row group.
enum ArrowGroup {
    Read,
    /// It failed after delivering this many rows (invalid UTF-8 in a text column, a corrupt
    /// page, an unexpected type).
    Undecodable {
        delivered: u64,
    },
}

impl ParquetRecords {
    /// Reads row group `next_group` with Arrow's decoder, a batch at a time, lending each row to
    /// `on_row`.
    fn arrow_group<E: From<RowError>>(
        &mut self,
        metadata: &ArrowReaderMetadata,
        on_row: &mut impl FnMut(&SnapshotRow<'_>) -> Result<(), E>,
        count: &mut u64,
    ) -> Result<ArrowGroup, E> {
        let group = self.next_group;
        let bytes = self.bytes.clone();
        let reader = guarded(|| {
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata.clone())
                .with_row_groups(vec![group])
                .with_batch_size(COLUMN_BATCH)
                .build()
                .map_err(|e| e.to_string())
        });
        let Ok(mut reader) = reader else { return Ok(ArrowGroup::Undecodable { delivered: 0 }) };
        let first_row = self.row;
        loop {
            let delivered = self.row - first_row;
            let batch = match guarded(|| reader.next().transpose().map_err(|e| e.to_string())) {
                Ok(Some(batch)) => batch,
                Ok(None) => return Ok(ArrowGroup::Read),
                Err(_) => return Ok(ArrowGroup::Undecodable { delivered }),
            };
            let Ok(cells) = guarded(|| BatchCells::new(&self.columns, &batch)) else {
                return Ok(ArrowGroup::Undecodable { delivered });
            };
            cells.lend_snapshot_rows(batch.num_rows(), &self.file, &mut self.row, count, on_row)?;
        }
    }
}

/// Runs a step of the Parquet decoder. Our own code is written not to panic; this guards the
/// decoder on corrupt pages.
fn guarded<T>(decode: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|_| Err("decoder failed unexpectedly".to_string()))
}

/// One row group's records, the number of rows decoded, and why decoding stopped early.
type Decoded = (Vec<Result<InventoryRecord, RowError>>, u64, Option<String>);

fn decode_group(file: &str, reader: &SerializedFileReader<Bytes>, group: usize, first_row: u64) -> Decoded {
    match flat_columns(reader) {
        Some(kinds) => decode_group_by_column(file, reader, &kinds, group, first_row),
        None => decode_group_by_row(file, reader, group, first_row),
    }
}

/// One row group through the generic row API: any schema.
fn decode_group_by_row(
    file: &str,
    reader: &SerializedFileReader<Bytes>,
    group: usize,
    first_row: u64,
) -> Decoded {
    let group = match reader.get_row_group(group) {
        Ok(group) => group,
        Err(e) => return (Vec::new(), 0, Some(e.to_string())),
    };
    let rows = match RowIter::from_row_group(None, group.as_ref() as &dyn RowGroupReader) {
        Ok(rows) => rows,
        Err(e) => return (Vec::new(), 0, Some(e.to_string())),
    };
    let mut out = Vec::new();
    let mut count = 0u64;
    for row in rows {
        match row {
            Ok(row) => {
                count += 1;
                out.push(to_record(file, first_row + count, &row));
            }
            Err(e) => return (out, count, Some(e.to_string())),
        }
    }
    (out, count, None)
}

/// How a leaf column's values reach the [`RecordBuilder`] on the by-column path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafKind {
    Text,
    Bool,
    Int32,
    Int64,
    /// Microseconds, stored as milliseconds like the row path does.
    Int64Micros,
}

/// The leaf kinds when every field is a non-repeated primitive the by-column path handles
/// (AWS's inventory schema is); `None` sends the file through the row path, which handles
/// anything (nested ACL structures, other timestamp units) at a tenth of the speed.
fn flat_columns(reader: &SerializedFileReader<Bytes>) -> Option<Vec<LeafKind>> {
    use parquet::basic::{ConvertedType, LogicalType, Type as Physical};
    let schema = reader.metadata().file_metadata().schema_descr();
    if schema.root_schema().get_fields().len() != schema.num_columns() {
        return None;
    }
    (0..schema.num_columns())
        .map(|i| {
            let column = schema.column(i);
            if column.max_rep_level() > 0 || column.max_def_level() > 1 {
                return None;
            }
            // The converted type is derived from the logical type where both exist.
            let text = matches!(column.logical_type_ref(), None | Some(LogicalType::String));
            match (column.physical_type(), column.converted_type()) {
                (Physical::BYTE_ARRAY, _) if text => Some(LeafKind::Text),
                (Physical::BOOLEAN, ConvertedType::NONE) => Some(LeafKind::Bool),
                (Physical::INT32, ConvertedType::NONE) => Some(LeafKind::Int32),
                // A nanosecond timestamp also has no converted type: the row path handles it.
                (Physical::INT64, ConvertedType::NONE) if column.logical_type_ref().is_none() => {
                    Some(LeafKind::Int64)
                }
                (Physical::INT64, ConvertedType::TIMESTAMP_MILLIS) => Some(LeafKind::Int64),
                (Physical::INT64, ConvertedType::TIMESTAMP_MICROS) => Some(LeafKind::Int64Micros),
                _ => None,
            }
        })
        .collect()
}

/// Rows decoded from every column before they are read across: a batch of all columns stays
/// in the CPU caches, where a whole row group's columns (megabytes each) would be read back
/// from memory.
const COLUMN_BATCH: usize = 4096;

/// A leaf column's typed reader.
enum TypedReader {
    Text(parquet::column::reader::ColumnReaderImpl<parquet::data_type::ByteArrayType>),
    Bool(parquet::column::reader::ColumnReaderImpl<parquet::data_type::BoolType>),
    Int32(parquet::column::reader::ColumnReaderImpl<parquet::data_type::Int32Type>, Vec<i32>),
    /// `true`: microseconds, stored as milliseconds like the row path does.
    Int64(parquet::column::reader::ColumnReaderImpl<parquet::data_type::Int64Type>, bool),
}

/// One leaf column of a row group: its reader and its current batch of values.
struct ColumnBatch {
    column: InventoryColumn,
    optional: bool,
    reader: TypedReader,
    /// Definition levels, one per row of the batch; empty for a required column (every row has
    /// a value).
    defs: Vec<i16>,
    values: Values,
}

/// A batch's non-null values of one column.
enum Values {
    Text(Vec<parquet::data_type::ByteArray>),
    Bool(Vec<bool>),
    /// Timestamps already in milliseconds.
    Int(Vec<i64>),
}

impl ColumnBatch {
    /// Replaces the batch with the column's next `rows` rows; the rows read.
    fn read(&mut self, rows: usize) -> parquet::errors::Result<usize> {
        self.defs.clear();
        let defs = self.optional.then_some(&mut self.defs);
        let (read, present) = match (&mut self.reader, &mut self.values) {
            (TypedReader::Text(r), Values::Text(v)) => {
                v.clear();
                let (read, _, _) = r.read_records(rows, defs, None, v)?;
                (read, v.len())
            }
            (TypedReader::Bool(r), Values::Bool(v)) => {
                v.clear();
                let (read, _, _) = r.read_records(rows, defs, None, v)?;
                (read, v.len())
            }
            (TypedReader::Int32(r, scratch), Values::Int(v)) => {
                scratch.clear();
                let (read, _, _) = r.read_records(rows, defs, None, scratch)?;
                v.clear();
                v.extend(scratch.iter().map(|n| i64::from(*n)));
                (read, v.len())
            }
            (TypedReader::Int64(r, micros), Values::Int(v)) => {
                v.clear();
                let (read, _, _) = r.read_records(rows, defs, None, v)?;
                if *micros {
                    v.iter_mut().for_each(|us| *us = us.div_euclid(1000));
                }
                (read, v.len())
            }
            _ => return Err(parquet::errors::ParquetError::General("reader and values differ".into())),
        };
        // Checked once here, so reading rows across the columns cannot run out of values.
        let expected = if self.optional { self.defs.iter().filter(|d| **d > 0).count() } else { read };
        if (self.optional && self.defs.len() != read) || present != expected {
            return Err(parquet::errors::ParquetError::General(format!("{present} values for {read} rows")));
        }
        Ok(read)
    }
}

/// One row group read column by column, a batch of rows at a time: each column chunk is
/// decoded in runs of values rather than as per-row field objects, and the batch is then read
/// across the columns with a [`RowCursor`].
struct GroupColumns {
    rows: usize,
    read: usize,
    columns: Vec<ColumnBatch>,
}

impl GroupColumns {
    /// Opens row group `group`'s columns; the error names the column at fault.
    fn open(reader: &SerializedFileReader<Bytes>, kinds: &[LeafKind], group: usize) -> Result<Self, String> {
        use parquet::column::reader::ColumnReader;
        let group = reader.get_row_group(group).map_err(|e| e.to_string())?;
        let metadata = group.metadata();
        let rows = usize::try_from(metadata.num_rows()).map_err(|_| "negative row count".to_string())?;
        let schema = metadata.schema_descr();
        let mut columns = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let column = InventoryColumn::from_name(schema.column(i).name());
            let optional = schema.column(i).max_def_level() > 0;
            let typed = match (group.get_column_reader(i), kind) {
                (Err(e), _) => Err(e.to_string()),
                (Ok(ColumnReader::ByteArrayColumnReader(r)), LeafKind::Text) => {
                    Ok((TypedReader::Text(r), Values::Text(Vec::new())))
                }
                (Ok(ColumnReader::BoolColumnReader(r)), LeafKind::Bool) => {
                    Ok((TypedReader::Bool(r), Values::Bool(Vec::new())))
                }
                (Ok(ColumnReader::Int32ColumnReader(r)), LeafKind::Int32) => {
                    Ok((TypedReader::Int32(r, Vec::new()), Values::Int(Vec::new())))
                }
                (Ok(ColumnReader::Int64ColumnReader(r)), LeafKind::Int64 | LeafKind::Int64Micros) => {
                    Ok((TypedReader::Int64(r, *kind == LeafKind::Int64Micros), Values::Int(Vec::new())))
                }
                (Ok(_), _) => Err("unexpected physical type".to_string()),
            };
            let (reader, values) = typed.map_err(|detail| format!("column {column}: {detail}"))?;
            columns.push(ColumnBatch { column, optional, reader, defs: Vec::new(), values });
        }
        Ok(GroupColumns { rows, read: 0, columns })
    }

    /// Decodes the next batch of every column; its rows, 0 after the last batch.
    fn next_batch(&mut self) -> Result<usize, String> {
        let rows = (self.rows - self.read).min(COLUMN_BATCH);
        if rows == 0 {
            return Ok(0);
        }
        for batch in &mut self.columns {
            match batch.read(rows) {
                Ok(read) if read == rows => {}
                Ok(read) => {
                    return Err(format!("column {}: {read} rows where {rows} were due", batch.column));
                }
                Err(e) => return Err(format!("column {}: {e}", batch.column)),
            }
        }
        self.read += rows;
        Ok(rows)
    }

    /// A cursor over the current batch's `rows` rows.
    fn cursor(&self, rows: usize) -> RowCursor<'_> {
        RowCursor { group: self, rows, row: 0, next_value: vec![0; self.columns.len()] }
    }
}

/// Reads a decoded batch one row at a time, across its columns.
struct RowCursor<'g> {
    group: &'g GroupColumns,
    rows: usize,
    row: usize,
    /// Per column, the index of its next non-null value.
    next_value: Vec<usize>,
}

impl<'g> RowCursor<'g> {
    /// Feeds the next row's cells, in column order, to `target`; `None` after the last row.
    /// The first bad cell is the row's error, and the cells after it are skipped, as a row of
    /// text is read.
    fn fill<T: RowTarget<'g>>(&mut self, target: &mut T) -> Option<Result<(), RowError>> {
        if self.row >= self.rows {
            return None;
        }
        let mut outcome = Ok(());
        for (c, decoded) in self.group.columns.iter().enumerate() {
            let present = decoded.defs.get(self.row).is_none_or(|d| *d > 0);
            if !present {
                continue;
            }
            let at = self.next_value[c];
            self.next_value[c] += 1;
            if outcome.is_err() {
                continue;
            }
            let column = &decoded.column;
            outcome = match &decoded.values {
                Values::Text(values) => match std::str::from_utf8(values[at].data()) {
                    Ok(text) => target.set_text(column, text),
                    Err(e) => Err(Box::new(target.ctx().invalid(column, format!("not UTF-8: {e}")))),
                },
                Values::Bool(values) => target.set_bool(column, values[at]),
                Values::Int(values) => target.set_int(column, values[at]),
            };
        }
        self.row += 1;
        Some(outcome.map_err(|e| *e))
    }
}

/// One row group's records through the by-column path.
fn decode_group_by_column(
    file: &str,
    reader: &SerializedFileReader<Bytes>,
    kinds: &[LeafKind],
    group: usize,
    first_row: u64,
) -> Decoded {
    let mut columns = match GroupColumns::open(reader, kinds, group) {
        Ok(columns) => columns,
        Err(detail) => return (Vec::new(), 0, Some(detail)),
    };
    let mut records = Vec::with_capacity(columns.rows);
    let mut row = first_row;
    loop {
        let rows = match columns.next_batch() {
            Ok(0) => return (records, row - first_row, None),
            Ok(rows) => rows,
            Err(detail) => return (records, row - first_row, Some(detail)),
        };
        let mut cursor = columns.cursor(rows);
        loop {
            let mut builder = RecordBuilder::new(file, row + 1);
            let Some(filled) = cursor.fill(&mut builder) else { break };
            row += 1;
            records.push(filled.and_then(|()| builder.finish()));
        }
    }
}

fn to_record(file: &str, row_number: u64, row: &Row) -> Result<InventoryRecord, RowError> {
    let mut builder = RecordBuilder::new(file, row_number);
    for (name, field) in row.get_column_iter() {
        let column = InventoryColumn::from_name(name);
        match field {
            Field::Null => {}
            Field::Str(s) => builder.set_text(&column, s)?,
            Field::Bytes(b) => match std::str::from_utf8(b.data()) {
                Ok(s) => builder.set_text(&column, s)?,
                Err(e) => {
                    return Err(RowError::InvalidValue {
                        file: file.to_string(),
                        row: row_number,
                        column: column.to_string(),
                        detail: format!("not UTF-8: {e}"),
                    });
                }
            },
            Field::Bool(b) => builder.set_bool(&column, *b)?,
            Field::Long(v) | Field::TimestampMillis(v) => builder.set_int(&column, *v)?,
            Field::Int(v) => builder.set_int(&column, i64::from(*v))?,
            Field::TimestampMicros(us) => builder.set_int(&column, us.div_euclid(1000))?,
            // Anything else (nested ACL structures, unexpected types): its text form.
            other => builder.set_text(&column, &other.to_string())?,
        }
    }
    builder.finish()
}

impl Iterator for ParquetRecords {
    type Item = Result<InventoryRecord, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done || !self.load_group() {
                self.done = true;
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::{EncryptionStatus, testing};
    use parquet::basic::Compression;
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    /// The Parquet schema AWS documents for inventory files (all columns optional but bucket/key).
    const AWS_SCHEMA: &str = "message s3.inventory {
        required binary bucket (UTF8);
        required binary key (UTF8);
        optional binary version_id (UTF8);
        optional boolean is_latest;
        optional boolean is_delete_marker;
        optional int64 size;
        optional int64 last_modified_date (TIMESTAMP_MILLIS);
        optional binary e_tag (UTF8);
        optional binary storage_class (UTF8);
        optional boolean is_multipart_uploaded;
        optional binary replication_status (UTF8);
        optional binary encryption_status (UTF8);
        optional int64 object_lock_retain_until_date (TIMESTAMP_MILLIS);
        optional binary object_lock_mode (UTF8);
        optional binary object_lock_legal_hold_status (UTF8);
        optional binary intelligent_tiering_access_tier (UTF8);
        optional binary bucket_key_status (UTF8);
        optional binary checksum_algorithm (UTF8);
    }";

    /// One fixture row: `None` is a null.
    #[derive(Clone)]
    struct Row<'a> {
        key: &'a str,
        version: Option<&'a str>,
        latest: Option<bool>,
        delete_marker: Option<bool>,
        size: Option<i64>,
        modified: Option<i64>,
        encryption: Option<&'a str>,
        bucket_key: Option<&'a str>,
        etag: Option<&'a str>,
        /// Read and checked, not kept by snapshots.
        legal_hold: Option<&'a str>,
    }

    fn strings(values: Vec<Option<&str>>) -> (Vec<ByteArray>, Vec<i16>) {
        let defs = values.iter().map(|v| i16::from(v.is_some())).collect();
        (values.into_iter().flatten().map(ByteArray::from).collect(), defs)
    }

    /// Writes `rows` with the AWS schema, Snappy as AWS does, `group_size` rows per row group.
    fn write(rows: &[Row], group_size: usize) -> Bytes {
        write_encoded(rows, group_size, true)
    }

    /// [`write`], with dictionary-encoded pages or (`dictionaries` false) plain ones only.
    fn write_encoded(rows: &[Row], group_size: usize, dictionaries: bool) -> Bytes {
        let schema = Arc::new(parquet::schema::parser::parse_message_type(AWS_SCHEMA).unwrap());
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY);
        let props = Arc::new(props.set_dictionary_enabled(dictionaries).build());
        let mut buf = Vec::new();
        let mut writer = SerializedFileWriter::new(&mut buf, schema, props).unwrap();
        for group in rows.chunks(group_size) {
            let mut rg = writer.next_row_group().unwrap();
            let mut index = 0;
            while let Some(mut col) = rg.next_column().unwrap() {
                let name = col_name(index);
                index += 1;
                let pick_str = |f: fn(&Row<'_>, &str) -> Option<String>| {
                    let owned: Vec<Option<String>> = group.iter().map(|r| f(r, name)).collect();
                    strings(owned.iter().map(|o| o.as_deref()).collect())
                };
                match name {
                    "bucket" => {
                        let (v, _) = pick_str(|_, _| Some("src".into()));
                        col.typed::<ByteArrayType>().write_batch(&v, None, None).unwrap();
                    }
                    "key" => {
                        let (v, _) = pick_str(|r, _| Some(r.key.into()));
                        col.typed::<ByteArrayType>().write_batch(&v, None, None).unwrap();
                    }
                    "is_latest" | "is_delete_marker" => {
                        let vals: Vec<Option<bool>> = group
                            .iter()
                            .map(|r| if name == "is_latest" { r.latest } else { r.delete_marker })
                            .collect();
                        let defs: Vec<i16> = vals.iter().map(|v| i16::from(v.is_some())).collect();
                        let v: Vec<bool> = vals.into_iter().flatten().collect();
                        col.typed::<BoolType>().write_batch(&v, Some(&defs), None).unwrap();
                    }
                    "size" | "last_modified_date" | "object_lock_retain_until_date" => {
                        let vals: Vec<Option<i64>> = group
                            .iter()
                            .map(|r| match name {
                                "size" => r.size,
                                "last_modified_date" => r.modified,
                                _ => None,
                            })
                            .collect();
                        let defs: Vec<i16> = vals.iter().map(|v| i16::from(v.is_some())).collect();
                        let v: Vec<i64> = vals.into_iter().flatten().collect();
                        col.typed::<Int64Type>().write_batch(&v, Some(&defs), None).unwrap();
                    }
                    "is_multipart_uploaded" => {
                        let defs = vec![0i16; group.len()];
                        col.typed::<BoolType>().write_batch(&[], Some(&defs), None).unwrap();
                    }
                    other => {
                        let _ = other;
                        let (v, defs) = pick_str(|r, name| {
                            match name {
                                "version_id" => r.version,
                                "encryption_status" => r.encryption,
                                "bucket_key_status" => r.bucket_key,
                                "object_lock_legal_hold_status" => r.legal_hold,
                                "e_tag" => r.etag,
                                "storage_class" => Some("STANDARD"),
                                _ => None,
                            }
                            .map(str::to_string)
                        });
                        col.typed::<ByteArrayType>().write_batch(&v, Some(&defs), None).unwrap();
                    }
                }
                col.close().unwrap();
            }
            rg.close().unwrap();
        }
        writer.close().unwrap();
        Bytes::from(buf)
    }

    fn col_name(index: usize) -> &'static str {
        const NAMES: &[&str] = &[
            "bucket",
            "key",
            "version_id",
            "is_latest",
            "is_delete_marker",
            "size",
            "last_modified_date",
            "e_tag",
            "storage_class",
            "is_multipart_uploaded",
            "replication_status",
            "encryption_status",
            "object_lock_retain_until_date",
            "object_lock_mode",
            "object_lock_legal_hold_status",
            "intelligent_tiering_access_tier",
            "bucket_key_status",
            "checksum_algorithm",
        ];
        NAMES[index]
    }

    fn row(key: &str) -> Row<'_> {
        Row {
            key,
            version: None,
            latest: None,
            delete_marker: None,
            size: None,
            modified: None,
            encryption: None,
            bucket_key: None,
            etag: None,
            legal_hold: None,
        }
    }

    #[test]
    fn reads_aws_schema_file() {
        let rows = [
            Row {
                version: Some("v1"),
                latest: Some(true),
                delete_marker: Some(false),
                size: Some(1024),
                modified: Some(1_675_166_400_000),
                encryption: Some("SSE-KMS"),
                bucket_key: Some("ENABLED"),
                ..row("dir/my file+1%.csv")
            },
            Row {
                latest: Some(false),
                delete_marker: Some(true),
                encryption: Some("DSSE-KMS"),
                ..row("caf\u{e9}/\"q\"")
            },
            row("plain"),
        ];
        let bytes = write(&rows, 2);
        let reader = read_parquet("data/f.parquet", bytes).unwrap();
        assert_eq!(reader.columns().len(), 18);
        assert_eq!(reader.columns()[7], InventoryColumn::ETag);
        let records: Vec<InventoryRecord> = reader.map(Result::unwrap).collect();
        assert_eq!(records.len(), 3);
        let r = &records[0];
        assert_eq!((r.bucket.as_str(), r.key.as_str()), ("src", "dir/my file+1%.csv"));
        assert_eq!(r.version_id.as_deref(), Some("v1"));
        assert_eq!((r.is_latest, r.is_delete_marker, r.size), (Some(true), Some(false), Some(1024)));
        assert_eq!(r.last_modified_ms, Some(1_675_166_400_000));
        assert_eq!(r.encryption_status, Some(EncryptionStatus::SseKms));
        assert_eq!(r.bucket_key_enabled, Some(true));
        assert_eq!(r.storage_class.as_deref(), Some("STANDARD"));
        assert_eq!(r.is_multipart_uploaded, None);
        let r = &records[1];
        assert_eq!(r.key, "caf\u{e9}/\"q\"");
        assert_eq!((r.is_latest, r.is_delete_marker), (Some(false), Some(true)));
        assert_eq!(r.encryption_status, Some(EncryptionStatus::DsseKms));
        let r = &records[2];
        assert_eq!((r.key.as_str(), r.size, r.version_id.clone()), ("plain", None, None));
    }

    #[test]
    fn column_and_row_paths_agree() {
        let rows = [
            Row { size: Some(-5), ..row("neg") },
            Row { version: Some("v1"), latest: Some(true), modified: Some(-1), ..row("a b") },
            Row { bucket_key: Some("MAYBE"), ..row("bk") },
            Row { encryption: Some("SSE-C"), delete_marker: Some(true), ..row("\u{65e5}") },
            row("ok"),
        ];
        let bytes = write(&rows, 2);
        let reader = SerializedFileReader::new(bytes).unwrap();
        let kinds = flat_columns(&reader).expect("the AWS schema takes the column path");
        let render = |d: Decoded| {
            let (records, count, failure) = d;
            let records: Vec<String> = records.into_iter().map(|r| format!("{r:?}")).collect();
            (records, count, failure)
        };
        for group in 0..reader.num_row_groups() {
            let first = group as u64 * 2;
            assert_eq!(
                render(decode_group_by_column("f", &reader, &kinds, group, first)),
                render(decode_group_by_row("f", &reader, group, first))
            );
        }
    }

    fn snapshot_rows(bytes: Bytes) -> (Vec<String>, Option<RowError>) {
        testing::snapshot_rows(read_parquet("f", bytes).unwrap())
    }

    fn expected_snapshot_rows(bytes: Bytes) -> (Vec<String>, Option<RowError>) {
        testing::expected_snapshot_rows(read_parquet("f", bytes).unwrap())
    }

    #[test]
    fn snapshot_rows_are_the_records_snapshot_columns() {
        let good = [
            Row {
                version: Some("v2"),
                latest: Some(false),
                delete_marker: Some(true),
                size: Some(3),
                modified: Some(-1),
                encryption: Some("sse-kms"),
                bucket_key: Some("Enabled"),
                etag: Some("\"d41d8cd98f00b204e9800998ecf8427e\""),
                legal_hold: Some("ON"),
                ..row("a b/+%c")
            },
            Row { encryption: Some("SSE-FUTURE"), etag: Some("abc-2"), ..row("\u{65e5}\u{672c}") },
            row("plain"),
        ];
        for group_size in [1, 2, 10] {
            let (rows, error) = snapshot_rows(write(&good, group_size));
            assert_eq!((rows.len(), &error), (3, &None));
            assert!(rows[0].contains(r#"etag: Some("d41d8cd98f00b204e9800998ecf8427e")"#), "{}", rows[0]);
            assert_eq!((rows, error), expected_snapshot_rows(write(&good, group_size)));
        }
        // The first bad row ends the read with the error a record would have, rows before it
        // read; a bad value in a column snapshots do not keep counts too. Bucket-key and
        // legal-hold statuses are read as dictionaries, whose values are parsed once: a bad
        // one is still the error of the row that holds it.
        let bad_rows = [
            Row { size: Some(-5), ..row("neg") },
            Row { bucket_key: Some("MAYBE"), ..row("bk") },
            Row { legal_hold: Some("MAYBE"), ..row("hold") },
        ];
        for (bad, dictionaries) in bad_rows.into_iter().flat_map(|bad| [(bad.clone(), true), (bad, false)]) {
            let rows = [row("first"), bad, row("never")];
            let (read, error) = snapshot_rows(write_encoded(&rows, 2, dictionaries));
            assert_eq!(read.len(), 1);
            assert_eq!(error.as_ref().map(RowError::code), Some("INVENTORY_INVALID_VALUE"));
            assert_eq!((read, error), expected_snapshot_rows(write_encoded(&rows, 2, dictionaries)));
        }
        // Pages written without dictionaries (a writer's choice, or its fallback for a column
        // of many values) read the same.
        for group_size in [1, 2, 10] {
            let (rows, error) = snapshot_rows(write_encoded(&good, group_size, false));
            assert_eq!((rows, error), expected_snapshot_rows(write(&good, group_size)));
        }
    }

    #[test]
    fn snapshot_rows_of_a_schema_the_column_path_cannot_take() {
        // A JSON logical type is not plain text: the file is read through records.
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message m { required binary bucket (UTF8); required binary key (UTF8);
                 optional binary object_owner (JSON); optional int64 size; }",
            )
            .unwrap(),
        );
        let mut buf = Vec::new();
        let mut writer =
            SerializedFileWriter::new(&mut buf, schema, Arc::new(WriterProperties::builder().build()))
                .unwrap();
        let mut rg = writer.next_row_group().unwrap();
        let text = |values: &[&str]| values.iter().map(|v| ByteArray::from(*v)).collect::<Vec<_>>();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>().write_batch(&text(&["src", "src"]), None, None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>().write_batch(&text(&["k1", "k2"]), None, None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>().write_batch(&text(&["{}"]), Some(&[1, 0]), None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>().write_batch(&[7], Some(&[0, 1]), None).unwrap();
        col.close().unwrap();
        rg.close().unwrap();
        writer.close().unwrap();
        let bytes = Bytes::from(buf);
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        assert!(flat_columns(&reader).is_none());
        let (rows, error) = snapshot_rows(bytes.clone());
        assert_eq!((rows.len(), &error), (2, &None));
        assert!(rows[1].contains("size: Some(7)"), "{}", rows[1]);
        assert_eq!((rows, error), expected_snapshot_rows(bytes));
    }

    #[test]
    fn row_groups_longer_than_a_batch_read_the_same_by_column_and_by_row() {
        // Nulls in different places per column, so each column's values run out of step with
        // the rows across batch boundaries.
        let keys: Vec<String> = (0..2 * COLUMN_BATCH + 7).map(|i| format!("k/{i:06}")).collect();
        let rows: Vec<Row<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| Row {
                size: (i % 3 != 0).then_some(i as i64),
                modified: (i % 5 != 0).then_some(1_675_166_400_000 + i as i64),
                encryption: (i % 7 != 0).then_some("SSE-S3"),
                bucket_key: (i % 2 == 0).then_some("DISABLED"),
                latest: (i % 11 != 0).then_some(true),
                ..row(key)
            })
            .collect();
        let bytes = write(&rows, rows.len());
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let kinds = flat_columns(&reader).unwrap();
        let render = |d: Decoded| {
            let (records, count, failure) = d;
            (records.into_iter().map(|r| format!("{r:?}")).collect::<Vec<_>>(), count, failure)
        };
        let by_column = render(decode_group_by_column("f", &reader, &kinds, 0, 0));
        assert_eq!(by_column.0.len(), rows.len());
        assert_eq!(by_column, render(decode_group_by_row("f", &reader, 0, 0)));
        let (snapshot, error) = snapshot_rows(bytes.clone());
        assert_eq!((snapshot.len(), error.clone()), (rows.len(), None));
        assert_eq!((snapshot, error), expected_snapshot_rows(bytes));
    }

    /// A file of one row group with `schema`'s columns `bucket` (text) and `key` (binary,
    /// annotated or not), then the columns `write_extra` writes.
    fn write_raw_keys(
        schema: &str,
        keys: &[Vec<u8>],
        write_extra: impl Fn(&mut parquet::file::writer::SerializedColumnWriter<'_>),
    ) -> Bytes {
        let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        let mut buf = Vec::new();
        // Plain pages, so a bad value fails the batch it is in, not the dictionary up front.
        let props =
            WriterProperties::builder().set_compression(Compression::SNAPPY).set_dictionary_enabled(false);
        let mut writer = SerializedFileWriter::new(&mut buf, schema, Arc::new(props.build())).unwrap();
        let mut rg = writer.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        let buckets = vec![ByteArray::from("src"); keys.len()];
        col.typed::<ByteArrayType>().write_batch(&buckets, None, None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        let keys: Vec<ByteArray> = keys.iter().map(|k| ByteArray::from(k.clone())).collect();
        col.typed::<ByteArrayType>().write_batch(&keys, None, None).unwrap();
        col.close().unwrap();
        while let Some(mut col) = rg.next_column().unwrap() {
            write_extra(&mut col);
            col.close().unwrap();
        }
        rg.close().unwrap();
        writer.close().unwrap();
        Bytes::from(buf)
    }

    #[test]
    fn a_batch_arrow_cannot_decode_is_read_again_without_repeating_rows() {
        // Invalid UTF-8 in a column annotated as a string fails Arrow's whole batch (the second
        // one here); the row group is read again by our column reader, which names the row.
        let mut keys: Vec<Vec<u8>> =
            (0..COLUMN_BATCH + 10).map(|i| format!("k/{i:06}").into_bytes()).collect();
        let bad = COLUMN_BATCH + 3;
        keys[bad] = b"k/\xff\xfe".to_vec();
        let schema = "message m { required binary bucket (UTF8); required binary key (UTF8); }";
        let bytes = write_raw_keys(schema, &keys, |_| unreachable!("two columns"));
        let (rows, error) = snapshot_rows(bytes.clone());
        assert_eq!(rows.len(), bad, "every row before the bad one, each once");
        assert!(rows[bad - 1].contains(&format!("k/{:06}", bad - 1)), "{}", rows[bad - 1]);
        let error = error.expect("the bad key is an error");
        assert_eq!(error.code(), "INVENTORY_INVALID_VALUE");
        assert!(
            error.to_string().starts_with(&format!("f: row {}, column Key: not UTF-8", bad + 1)),
            "{error}"
        );
        assert_eq!((rows, Some(error)), expected_snapshot_rows(bytes));
    }

    #[test]
    fn unannotated_text_int32_and_microsecond_columns_read_as_records_do() {
        let schema = "message m { required binary bucket (UTF8); required binary key;
            optional int32 size; optional int64 last_modified_date (TIMESTAMP_MICROS); }";
        let keys = [b"a b".to_vec(), "\u{65e5}".as_bytes().to_vec(), b"\xc3".to_vec(), b"never".to_vec()];
        let bytes = write_raw_keys(schema, &keys, |col| match col.untyped() {
            parquet::column::writer::ColumnWriter::Int32ColumnWriter(w) => {
                w.write_batch(&[7, 8, 9], Some(&[1, 1, 0, 1]), None).unwrap();
            }
            parquet::column::writer::ColumnWriter::Int64ColumnWriter(w) => {
                w.write_batch(&[1_675_166_400_123_456, -1, 5, 6], Some(&[1, 1, 1, 1]), None).unwrap();
            }
            _ => unreachable!("int32 and int64 columns"),
        });
        let (rows, error) = snapshot_rows(bytes.clone());
        assert_eq!(rows.len(), 2);
        assert!(rows[0].contains("size: Some(7)") && rows[0].contains("1675166400123"), "{}", rows[0]);
        // -1 µs is in the millisecond before the epoch, as the row path rounds it.
        assert!(rows[1].contains("last_modified_ms: Some(-1)"), "{}", rows[1]);
        let error = error.expect("the third key is not UTF-8");
        assert!(error.to_string().starts_with("f: row 3, column Key: not UTF-8"), "{error}");
        assert_eq!((rows, Some(error)), expected_snapshot_rows(bytes));
    }

    #[test]
    fn a_file_written_from_arrow_with_a_dictionary_key_column_reads_as_records_do() {
        // Writers such as pyarrow embed their Arrow schema (here a dictionary of keys).
        use arrow::array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};
        use arrow::datatypes::Int32Type;
        let keys: DictionaryArray<Int32Type> =
            vec!["a/1", "a/2", "a/1 copy", "\u{65e5}"].into_iter().collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("bucket", Arc::new(StringArray::from(vec!["src"; 4]))),
            ("key", Arc::new(keys)),
            ("size", Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)]))),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut buf = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let bytes = Bytes::from(buf);
        let (rows, error) = snapshot_rows(bytes.clone());
        assert_eq!((rows.len(), &error), (4, &None));
        assert!(rows[3].contains("\u{65e5}") && rows[3].contains("size: Some(4)"), "{}", rows[3]);
        assert_eq!((rows, error), expected_snapshot_rows(bytes));
    }

    #[test]
    fn bad_values_are_row_errors() {
        let rows =
            [Row { size: Some(-5), ..row("neg") }, Row { bucket_key: Some("MAYBE"), ..row("bk") }, row("ok")];
        let results: Vec<_> = read_parquet("f.parquet", write(&rows, 10)).unwrap().collect();
        assert_eq!(results.len(), 3);
        let codes: Vec<&str> =
            results.iter().map(|r| r.as_ref().map(|_| "OK").unwrap_or_else(|e| e.code())).collect();
        assert_eq!(codes, ["INVENTORY_INVALID_VALUE", "INVENTORY_INVALID_VALUE", "OK"]);
        assert!(results[0].as_ref().unwrap_err().to_string().starts_with("f.parquet: row 1, column Size:"));
        assert!(
            results[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .starts_with("f.parquet: row 2, column BucketKeyStatus:")
        );
    }

    #[test]
    fn unreadable_and_schema_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "INVENTORY_UNREADABLE_FILE"),
            (b"PAR1 not really parquet PAR1", "INVENTORY_UNREADABLE_FILE"),
            (b"a,b,c\n", "INVENTORY_UNREADABLE_FILE"),
        ];
        for (bytes, code) in cases {
            let err = read_parquet("f", Bytes::copy_from_slice(bytes)).unwrap_err();
            assert_eq!(err.code(), *code);
        }
        // A Parquet file without a key column.
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type("message m { required binary bucket (UTF8); }")
                .unwrap(),
        );
        let mut buf = Vec::new();
        let writer =
            SerializedFileWriter::new(&mut buf, schema, Arc::new(WriterProperties::builder().build()))
                .unwrap();
        writer.close().unwrap();
        let err = read_parquet("f", Bytes::from(buf)).unwrap_err();
        assert_eq!(err.code(), "INVENTORY_MISSING_COLUMN");
        // Truncated file: the footer is gone.
        let bytes = write(&[row("a")], 1);
        let err = read_parquet("f", bytes.slice(..bytes.len() - 10)).unwrap_err();
        assert_eq!(err.code(), "INVENTORY_UNREADABLE_FILE");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn corrupt_files_never_panic(flips in proptest::collection::vec((0usize..4096, 0u8..=255), 1..8), cut in 0usize..4096) {
            let rows: Vec<Row<'_>> = (0..20).map(|_| Row { size: Some(7), latest: Some(true), ..row("k") }).collect();
            let good = write(&rows, 7).to_vec();
            let mut bad = good.clone();
            for (at, byte) in flips {
                let len = bad.len();
                if let Some(b) = bad.get_mut(at % len) {
                    *b ^= byte;
                }
            }
            for bytes in [bad, good.get(..cut % good.len()).unwrap_or_default().to_vec()] {
                if let Ok(records) = read_parquet("f", Bytes::from(bytes)) {
                    for r in records {
                        let _ = r;
                    }
                }
            }
        }
    }

    #[test]
    fn empty_file_has_no_rows() {
        assert_eq!(read_parquet("f", write(&[], 1)).unwrap().count(), 0);
    }
}
