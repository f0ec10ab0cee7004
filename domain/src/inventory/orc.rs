//! Inventory ORC data files held in memory (reference §1.5). Column names are snake_case, as in
//! Parquet; keys are not URL-encoded; AWS writes them ZLIB-compressed.
//!
//! Decoding is `orc-rust`'s (Arrow record batches, one stripe at a time); each batch's rows go
//! through the same builders as CSV and Parquet rows, so all three formats give identical
//! records and snapshot rows.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow::array::RecordBatch;
use bytes::Bytes;
use orc_rust::{ArrowReader, ArrowReaderBuilder};

use super::arrow_cells::BatchCells;
use super::columns::InventoryColumn;
use super::record::{
    InventoryRecord, InventoryRows, RecordBuilder, RowError, SnapshotRow, check_schema,
    snapshot_rows_of_records,
};

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
        self.pending.push_back(Err(self.unreadable(detail)));
        self.done = true;
        true
    }

    fn unreadable(&self, detail: String) -> RowError {
        RowError::UnreadableFile {
            file: self.file.clone(),
            detail: format!("after row {}: {detail}", self.row),
        }
    }
}

/// The records of one batch; `Err` when a column cannot be interpreted at all.
fn decode_batch(
    file: &str,
    columns: &[InventoryColumn],
    batch: &RecordBatch,
    first_row: u64,
) -> Result<Vec<Result<InventoryRecord, RowError>>, String> {
    let cells = BatchCells::new(columns, batch)?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let mut builder = RecordBuilder::new(file, first_row + row as u64 + 1);
            cells.fill(row, &mut builder).and_then(|()| builder.finish())
        })
        .collect())
}

impl InventoryRows for OrcRecords {
    /// Rows are borrowed from the decoded Arrow batches.
    fn for_each_snapshot_row<E: From<RowError>>(
        mut self,
        mut on_row: impl FnMut(&SnapshotRow<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut count = snapshot_rows_of_records(std::mem::take(&mut self.pending).into_iter(), &mut on_row)?;
        if self.done {
            return Ok(count);
        }
        loop {
            let batch = match catch_unwind(AssertUnwindSafe(|| self.reader.next())) {
                Ok(None) => return Ok(count),
                Ok(Some(Ok(batch))) => batch,
                Ok(Some(Err(e))) => return Err(self.unreadable(e.to_string()).into()),
                Err(_) => return Err(self.unreadable("decoder failed unexpectedly".into()).into()),
            };
            let cells = match catch_unwind(AssertUnwindSafe(|| BatchCells::new(&self.columns, &batch))) {
                Ok(Ok(cells)) => cells,
                Ok(Err(detail)) => return Err(self.unreadable(detail).into()),
                Err(_) => return Err(self.unreadable("decoder failed unexpectedly".into()).into()),
            };
            cells.lend_snapshot_rows(batch.num_rows(), &self.file, &mut self.row, &mut count, &mut on_row)?;
        }
    }
}

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
    use crate::inventory::record::testing;
    use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    /// An inventory ORC file of `keys`, with a size, timestamp, latest flag and encryption per row.
    fn inventory_orc(keys: &[&str], sizes: &[Option<i64>], encryption: &[Option<&str>]) -> Bytes {
        let schema = Arc::new(Schema::new(vec![
            Field::new("bucket", DataType::Utf8, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("is_latest", DataType::Boolean, true),
            Field::new("size", DataType::Int64, true),
            Field::new("last_modified_date", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("encryption_status", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["src"; keys.len()])),
            Arc::new(StringArray::from(keys.to_vec())),
            Arc::new(BooleanArray::from(
                (0..keys.len()).map(|i| (i % 2 == 0).then_some(true)).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(sizes.to_vec())),
            Arc::new(TimestampMillisecondArray::from(
                (0..keys.len() as i64).map(|i| Some(1_675_166_400_000 + i)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(encryption.to_vec())),
        ];
        let mut out = Vec::new();
        let mut writer = orc_rust::ArrowWriterBuilder::new(&mut out, schema.clone()).try_build().unwrap();
        writer.write(&RecordBatch::try_new(schema, columns).unwrap()).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    #[test]
    fn snapshot_rows_are_the_records_snapshot_columns() {
        let keys = ["a b/+%c", "\u{65e5}\u{672c}", "plain"];
        let good =
            inventory_orc(&keys, &[Some(3), None, Some(0)], &[Some("SSE-KMS"), Some("SSE-FUTURE"), None]);
        let (rows, error) = testing::snapshot_rows(read_orc("f", good.clone()).unwrap());
        assert_eq!((rows.len(), &error), (3, &None));
        assert!(rows[0].contains("size: Some(3)") && rows[0].contains("1675166400000"), "{}", rows[0]);
        assert_eq!((rows, error), testing::expected_snapshot_rows(read_orc("f", good).unwrap()));
        // The first bad row ends the read with the error its record has, the rows before it read.
        let bad = inventory_orc(&keys, &[Some(3), Some(-5), Some(0)], &[None, None, None]);
        let (rows, error) = testing::snapshot_rows(read_orc("f", bad.clone()).unwrap());
        assert_eq!(rows.len(), 1);
        let error = error.expect("a negative size");
        assert!(error.to_string().starts_with("f: row 2, column Size:"), "{error}");
        assert_eq!((rows, Some(error)), testing::expected_snapshot_rows(read_orc("f", bad).unwrap()));
    }

    #[test]
    fn garbage_and_truncated_files_are_typed_errors() {
        let err = read_orc("inv/data/x.orc", Bytes::from_static(b"not an orc file at all")).unwrap_err();
        assert_eq!(err.code(), "INVENTORY_UNREADABLE_FILE");
        assert!(err.to_string().contains("inv/data/x.orc"), "{err}");
        let err = read_orc("inv/data/empty.orc", Bytes::new()).unwrap_err();
        assert_eq!(err.code(), "INVENTORY_UNREADABLE_FILE");
    }
}
