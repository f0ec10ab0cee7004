//! The rows of an Arrow record batch, fed cell by cell to a [`RowTarget`]: how ORC files and
//! the snapshot path of Parquet files reach the same builders as CSV rows.

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::columns::InventoryColumn;
use super::record::{CellResult, PreparedCell, RowError, RowTarget, SnapshotRow, SnapshotRowBuilder};

/// A batch's columns, each typed once so that reading a cell is an index.
pub(crate) struct BatchCells<'b> {
    columns: Vec<ColumnCells<'b>>,
}

struct ColumnCells<'b> {
    column: &'b InventoryColumn,
    nulls: Option<&'b NullBuffer>,
    values: CellValues<'b>,
}

enum CellValues<'b> {
    /// Validated as UTF-8 by the decoder.
    Text(&'b StringArray),
    LargeText(&'b LargeStringArray),
    /// Text read as views into the decoded pages (no copy into one buffer).
    TextView(&'b StringViewArray),
    /// Not annotated as text: checked per cell, so a bad value is its row's error.
    Bytes(&'b BinaryArray),
    Bool(&'b BooleanArray),
    Int32(&'b [i32]),
    Int64(&'b [i64]),
    Timestamp(&'b [i64], TimeUnit),
    /// Text read as a dictionary (a few-valued column): the values once, and each row's index.
    Dictionary {
        keys: &'b [i32],
        values: &'b StringArray,
    },
    /// Anything else (nested ACL structures, unexpected types): the text form of each cell,
    /// as the Parquet row path gives it.
    Formatted(Vec<String>),
}

impl<'b> BatchCells<'b> {
    /// Types `batch`'s columns, named `columns` in batch order. `Err` when the batch has another
    /// number of columns or a column has no text form.
    pub(crate) fn new(columns: &'b [InventoryColumn], batch: &'b RecordBatch) -> Result<Self, String> {
        if batch.num_columns() != columns.len() {
            return Err(format!(
                "{} columns in a batch of a {}-column file",
                batch.num_columns(),
                columns.len()
            ));
        }
        let columns = columns
            .iter()
            .zip(batch.columns())
            .map(|(column, array)| {
                let values = match array.data_type() {
                    DataType::Utf8 => CellValues::Text(array.as_string::<i32>()),
                    DataType::LargeUtf8 => CellValues::LargeText(array.as_string::<i64>()),
                    DataType::Utf8View => CellValues::TextView(array.as_string_view()),
                    DataType::Binary => CellValues::Bytes(array.as_binary::<i32>()),
                    DataType::Boolean => CellValues::Bool(array.as_boolean()),
                    DataType::Int32 => CellValues::Int32(array.as_primitive::<Int32Type>().values()),
                    DataType::Int64 => CellValues::Int64(array.as_primitive::<Int64Type>().values()),
                    DataType::Timestamp(unit, _) => {
                        CellValues::Timestamp(timestamp_values(array.as_ref(), *unit), *unit)
                    }
                    DataType::Dictionary(key, value)
                        if key.as_ref() == &DataType::Int32 && value.as_ref() == &DataType::Utf8 =>
                    {
                        let dictionary = array.as_dictionary::<Int32Type>();
                        CellValues::Dictionary {
                            keys: dictionary.keys().values(),
                            values: dictionary.values().as_string::<i32>(),
                        }
                    }
                    _ => CellValues::Formatted(formatted(array.as_ref())?),
                };
                Ok(ColumnCells { column, nulls: array.nulls(), values })
            })
            .collect::<Result<_, String>>()?;
        Ok(BatchCells { columns })
    }

    /// Feeds row `row`'s cells, in column order, to `target`; nulls are skipped. The first bad
    /// cell is the row's error and the cells after it are not read, as a row of text is read.
    pub(crate) fn fill<'s, T: RowTarget<'s>>(&'s self, row: usize, target: &mut T) -> Result<(), RowError> {
        for cells in &self.columns {
            if !cells.is_null(row) {
                cells.feed(row, target)?;
            }
        }
        Ok(())
    }

    /// Lends rows `0..rows` to `on_row` as snapshot rows of `file`. `row` is the number of
    /// the file's rows read before (it numbers rows in errors) and is advanced past every row
    /// read, the failing one included; `count` is advanced past every row lent.
    ///
    /// A dictionary column's values are parsed once here ([`SnapshotRowBuilder::prepare`]);
    /// its rows then set the parsed value, and only a value that did not parse is read again
    /// for each row that holds it (so that its error names the row).
    pub(crate) fn lend_snapshot_rows<E: From<RowError>>(
        &self,
        rows: usize,
        file: &str,
        row: &mut u64,
        count: &mut u64,
        on_row: &mut impl FnMut(&SnapshotRow<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let prepared: Vec<Option<Vec<Option<PreparedCell<'_>>>>> =
            self.columns.iter().map(|cells| cells.prepared(rows)).collect();
        for i in 0..rows {
            let mut builder = SnapshotRowBuilder::new(file, *row + 1);
            let filled = self.fill_snapshot(i, &mut builder, &prepared);
            *row += 1;
            filled?;
            *count += 1;
            on_row(builder.finished()?)?;
        }
        Ok(())
    }

    /// [`Self::fill`] for a snapshot row, with the dictionary values `prepared` (per column).
    fn fill_snapshot<'s>(
        &'s self,
        row: usize,
        builder: &mut SnapshotRowBuilder<'s>,
        prepared: &[Option<Vec<Option<PreparedCell<'s>>>>],
    ) -> Result<(), RowError> {
        for (cells, prepared) in self.columns.iter().zip(prepared) {
            if cells.is_null(row) {
                continue;
            }
            let cell = match (&cells.values, prepared) {
                (CellValues::Dictionary { keys, .. }, Some(prepared)) => {
                    usize::try_from(keys[row]).ok().and_then(|k| prepared.get(k)).and_then(Option::as_ref)
                }
                _ => None,
            };
            match cell {
                Some(cell) => builder.set_prepared(cell),
                None => cells.feed(row, builder)?,
            }
        }
        Ok(())
    }
}

impl<'b> ColumnCells<'b> {
    #[inline]
    fn is_null(&self, row: usize) -> bool {
        self.nulls.is_some_and(|nulls| nulls.is_null(row))
    }

    /// Feeds row `row`'s cell, not null, to `target`.
    #[inline]
    fn feed<'s, T: RowTarget<'s>>(&'s self, row: usize, target: &mut T) -> CellResult<()> {
        let column = self.column;
        match &self.values {
            CellValues::Text(values) => target.set_text(column, values.value(row)),
            CellValues::LargeText(values) => target.set_text(column, values.value(row)),
            CellValues::TextView(values) => target.set_text(column, values.value(row)),
            CellValues::Bytes(values) => match std::str::from_utf8(values.value(row)) {
                Ok(text) => target.set_text(column, text),
                Err(e) => Err(Box::new(target.ctx().invalid(column, format!("not UTF-8: {e}")))),
            },
            CellValues::Bool(values) => target.set_bool(column, values.value(row)),
            CellValues::Int32(values) => target.set_int(column, i64::from(values[row])),
            CellValues::Int64(values) => target.set_int(column, values[row]),
            CellValues::Timestamp(values, unit) => target.set_int(column, millis(values[row], *unit)),
            CellValues::Formatted(values) => target.set_text(column, &values[row]),
            CellValues::Dictionary { keys, values } => {
                let key = keys[row];
                match usize::try_from(key).ok().filter(|&k| k < values.len()) {
                    Some(k) if values.is_valid(k) => target.set_text(column, values.value(k)),
                    Some(_) => Ok(()),
                    None => Err(Box::new(
                        target.ctx().invalid(column, format!("dictionary index {key} out of range")),
                    )),
                }
            }
        }
    }

    /// Each dictionary value as its rows would set it, for a dictionary column of no more
    /// distinct values than `rows` (a larger one, from pages that were not dictionary-encoded,
    /// is read row by row).
    fn prepared(&self, rows: usize) -> Option<Vec<Option<PreparedCell<'b>>>> {
        let CellValues::Dictionary { values, .. } = &self.values else { return None };
        (values.len() <= rows).then(|| {
            values
                .iter()
                .map(|value| value.and_then(|value| SnapshotRowBuilder::prepare(self.column, value)))
                .collect()
        })
    }
}

fn timestamp_values(array: &dyn Array, unit: TimeUnit) -> &[i64] {
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
    }
}

/// A timestamp in milliseconds, rounded down as the Parquet row path does.
fn millis(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => value.saturating_mul(1000),
        TimeUnit::Millisecond => value,
        TimeUnit::Microsecond => value.div_euclid(1000),
        TimeUnit::Nanosecond => value.div_euclid(1_000_000),
    }
}

/// Every cell's text form (an empty string for a null, which [`BatchCells::fill`] skips).
fn formatted(array: &dyn Array) -> Result<Vec<String>, String> {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default()).map_err(|e| e.to_string())?;
    Ok((0..array.len())
        .map(|row| if array.is_null(row) { String::new() } else { formatter.value(row).to_string() })
        .collect())
}
