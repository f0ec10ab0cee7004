//! Inventory ORC data files held in memory (reference §1.5). Column names are snake_case, as in
//! Parquet; keys are not URL-encoded; AWS writes them ZLIB-compressed.
//!
//! Decoding is `orc-rust`'s (Arrow record batches, one stripe at a time); each batch's rows go
//! through the same `RecordBuilder` as CSV and Parquet rows, so all three formats give
//! identical records.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use orc_rust::{ArrowReader, ArrowReaderBuilder};

use super::columns::InventoryColumn;
use super::record::{InventoryRecord, InventoryRows, RecordBuilder, RowError, RowTarget, check_schema};

/// Rows decoded per batch: bounds memory per step, whatever the stripe size.
const BATCH_ROWS: usize = 8192;

/// Iterator over the rows of one ORC inventory file, one record batch decoded at a time.
///
/// Row-level errors are followed by the next rows; a stripe that cannot be decoded ends the
/// iteration with a fatal [`RowError::UnreadableFile`].
pub struct OrcRecords {
    file: String,
    reader: ArrowReader<Bytes>,
    columns: Vec<InventoryColumn>,
    row: u64,
    pending: VecDeque<Result<InventoryRecord, RowError>>,
    done: bool,
}

impl std::fmt::Debug for OrcRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrcRecords").field("file", &self.file).field("row", &self.row).finish_non_exhaustive()
    }
}

/// Opens an ORC inventory file. Fails when its tail (PostScript, Footer) cannot be read or its
/// schema has no `bucket` or `key` column.
pub fn read_orc(file: impl Into<String>, bytes: Bytes) -> Result<OrcRecords, RowError> {
    let file = file.into();
    let unreadable = |detail: String| RowError::UnreadableFile { file: file.clone(), detail };
    // Our code does not panic; this guards the decoder against corrupt input.
    let builder = catch_unwind(AssertUnwindSafe(|| ArrowReaderBuilder::try_new(bytes)))
        .map_err(|_| unreadable("decoder failed unexpectedly".into()))?
        .map_err(|e| unreadable(e.to_string()))?;
    let columns: Vec<InventoryColumn> =
        builder.schema().fields().iter().map(|f| InventoryColumn::from_name(f.name())).collect();
    check_schema(&file, &columns)?;
    let reader = builder.with_batch_size(BATCH_ROWS).build();
    Ok(OrcRecords { file, reader, columns, row: 0, pending: VecDeque::new(), done: false })
}

impl OrcRecords {
    /// The file's columns, in file order.
    pub fn columns(&self) -> &[InventoryColumn] {
        &self.columns
    }

    /// Decodes the next batch into `pending`; false when there is none left.
    fn load_batch(&mut self) -> bool {
        let next = catch_unwind(AssertUnwindSafe(|| self.reader.next()));
        let batch = match next {
            Ok(None) => return false,
            Ok(Some(Ok(batch))) => batch,
            Ok(Some(Err(e))) => return self.fail(e.to_string()),
            Err(_) => return self.fail("decoder failed unexpectedly".into()),
        };
        match catch_unwind(AssertUnwindSafe(|| decode_batch(&self.file, &self.columns, &batch, self.row))) {
            Ok(Ok(records)) => {
                self.row += batch.num_rows() as u64;
                self.pending.extend(records);
                true
            }
            Ok(Err(detail)) => self.fail(detail),
            Err(_) => self.fail("decoder failed unexpectedly".into()),
        }
    }

    fn fail(&mut self, detail: String) -> bool {
        self.pending.push_back(Err(RowError::UnreadableFile {
            file: self.file.clone(),
            detail: format!("after row {}: {detail}", self.row),
        }));
        self.done = true;
        true
    }
}

/// The records of one batch; `Err` when a column cannot be interpreted at all.
fn decode_batch(
    file: &str,
    columns: &[InventoryColumn],
    batch: &RecordBatch,
    first_row: u64,
) -> Result<Vec<Result<InventoryRecord, RowError>>, String> {
    let options = FormatOptions::default();
    let formatters: Vec<Option<ArrayFormatter<'_>>> = batch
        .columns()
        .iter()
        .map(|array| match array.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Boolean | DataType::Int64 | DataType::Int32 => {
                Ok(None)
            }
            DataType::Timestamp(..) => Ok(None),
            // Nested ACLs and anything unexpected: their text form, as for Parquet.
            _ => ArrayFormatter::try_new(array.as_ref(), &options).map(Some).map_err(|e| e.to_string()),
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let row_number = first_row + row as u64 + 1;
        let mut builder = RecordBuilder::new(file, row_number);
        let mut failed = None;
        for ((column, array), formatter) in columns.iter().zip(batch.columns()).zip(&formatters) {
            if array.is_null(row) {
                continue;
            }
            let set = match array.data_type() {
                DataType::Utf8 => builder.set_text(column, array.as_string::<i32>().value(row)),
                DataType::LargeUtf8 => builder.set_text(column, array.as_string::<i64>().value(row)),
                DataType::Boolean => builder.set_bool(column, array.as_boolean().value(row)),
                DataType::Int64 => builder.set_int(column, array.as_primitive::<Int64Type>().value(row)),
                DataType::Int32 => {
                    builder.set_int(column, i64::from(array.as_primitive::<Int32Type>().value(row)))
                }
                DataType::Timestamp(unit, _) => {
                    builder.set_int(column, timestamp_millis(array.as_ref(), *unit, row))
                }
                _ => match formatter {
                    Some(f) => builder.set_text(column, &f.value(row).to_string()),
                    None => Ok(()),
                },
            };
            if let Err(e) = set {
                failed = Some(e);
                break;
            }
        }
        out.push(match failed {
            Some(e) => Err(e),
            None => builder.finish(),
        });
    }
    Ok(out)
}

fn timestamp_millis(array: &dyn Array, unit: TimeUnit, row: usize) -> i64 {
    use arrow::datatypes::{
        TimestampMicrosecondType as Us, TimestampMillisecondType as Ms, TimestampNanosecondType as Ns,
        TimestampSecondType as S,
    };
    match unit {
        TimeUnit::Second => array.as_primitive::<S>().value(row).saturating_mul(1000),
        TimeUnit::Millisecond => array.as_primitive::<Ms>().value(row),
        TimeUnit::Microsecond => array.as_primitive::<Us>().value(row).div_euclid(1000),
        TimeUnit::Nanosecond => array.as_primitive::<Ns>().value(row).div_euclid(1_000_000),
    }
}

/// ORC rows are decoded as records first (its decoder's Arrow arrays are read row by row).
impl InventoryRows for OrcRecords {}

impl Iterator for OrcRecords {
    type Item = Result<InventoryRecord, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done || !self.load_batch() {
                self.done = true;
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncated_files_are_typed_errors() {
        let err = read_orc("inv/data/x.orc", Bytes::from_static(b"not an orc file at all")).unwrap_err();
        assert_eq!(err.code(), "INVENTORY_UNREADABLE_FILE");
        assert!(err.to_string().contains("inv/data/x.orc"), "{err}");
        let err = read_orc("inv/data/empty.orc", Bytes::new()).unwrap_err();
        assert_eq!(err.code(), "INVENTORY_UNREADABLE_FILE");
    }
}
