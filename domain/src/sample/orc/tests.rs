use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType as ArrowType, Field as ArrowField, Schema as ArrowSchema};
use orc_rust::ArrowWriterBuilder;
use orc_rust::compression::CompressionType;
use serde_json::json;

use super::*;
use crate::schema::{Fetched, InferenceLimits, InferenceStep};

/// ORC files written by pyarrow (see `schema/tests.rs`, `REAL_ORC`): 3 rows of id, name,
/// price decimal(12,3), tags list<int32>, attrs map<string,double>, day, at (UTC), local,
/// inner struct<flag>.
const REAL_ORC: [(&str, &[u8]); 4] = [
    ("none", include_bytes!("../../schema/testdata/orc_uncompressed.orc")),
    ("zlib", include_bytes!("../../schema/testdata/orc_zlib.orc")),
    ("snappy", include_bytes!("../../schema/testdata/orc_snappy.orc")),
    ("zstd", include_bytes!("../../schema/testdata/orc_zstd.orc")),
];

/// `stripes` stripes of `per_stripe` rows: id (0..), name ("n<id>"), pad (200 bytes).
fn file(stripes: usize, per_stripe: usize, compression: Option<CompressionType>) -> Vec<u8> {
    let schema = Arc::new(ArrowSchema::new(vec![
        ArrowField::new("id", ArrowType::Int64, false),
        ArrowField::new("name", ArrowType::Utf8, true),
        ArrowField::new("pad", ArrowType::Utf8, true),
    ]));
    let mut out = Vec::new();
    let mut builder = ArrowWriterBuilder::new(&mut out, schema.clone());
    if let Some(c) = compression {
        builder = builder.with_compression(c);
    }
    let mut writer = builder.try_build().unwrap();
    for s in 0..stripes {
        let ids: Vec<i64> = (0..per_stripe).map(|r| (s * per_stripe + r) as i64).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        // 192 pseudo-random hex digits per row: compression cannot make the column vanish.
        let pads: Vec<String> = ids.iter().map(|&i| noise(i as u128, 6)).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(pads)),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.flush_stripe().unwrap();
    }
    writer.close().unwrap();
    out
}

/// `blocks` × 32 hex digits derived from `seed`, with no repetition a codec could fold.
fn noise(seed: u128, blocks: u128) -> String {
    (0..blocks)
        .map(|k| {
            format!("{:032x}", (seed * 64 + k + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
        })
        .collect()
}

fn schema_of(bytes: &[u8]) -> Vec<Field> {
    let detected = crate::format::detect_from_key("x.orc");
    let fetched = Fetched { bytes, start: 0, object_size: bytes.len() as u64 };
    match crate::schema::infer(detected, fetched, &InferenceLimits::default()).unwrap() {
        InferenceStep::Done(f) => f.schema.fields,
        other => panic!("{other:?}"),
    }
}

/// What one sample cost: requests and bytes, as the connector would fetch them.
#[derive(Debug)]
struct Cost {
    requests: usize,
    bytes: u64,
}

/// Samples like the connector: a suffix probe, maybe a longer suffix, the planned stripe
/// footers, then the projected streams (adjacent ranges merged into one request).
fn run(
    bytes: &[u8],
    columns: &[String],
    mode: SampleMode,
    limits: SampleLimits,
    max_bytes: u64,
) -> Result<(OrcPlan, Sample, Cost), OrcSampleError> {
    let size = bytes.len() as u64;
    let mut cost = Cost { requests: 0, bytes: 0 };
    let fetch = |file: &mut SparseFile, start: u64, len: u64, cost: &mut Cost| {
        let end = (start + len).min(size);
        file.insert(start, Bytes::copy_from_slice(&bytes[start as usize..end as usize]));
        cost.requests += 1;
        cost.bytes += end - start;
    };
    let mut file = SparseFile::new(size);
    let probe = size.min(1024);
    fetch(&mut file, size - probe, probe, &mut cost);
    let needed = tail_length(&bytes[(size - probe) as usize..], size)?;
    if needed > probe {
        fetch(&mut file, size - needed, needed, &mut cost);
    }
    let footer = read_footer(&file)?;
    let schema = schema_of(&bytes[(size - needed.max(probe)) as usize..]);
    let mut plan = plan(&footer, &schema, columns, mode, &limits)?;
    for (start, len) in super::super::parquet::coalesce(&plan.footer_ranges, 0) {
        if !file.holds(start, len) {
            fetch(&mut file, start, len, &mut cost);
        }
    }
    let ranges = stream_ranges(&file, &footer, &mut plan, max_bytes)?;
    for (start, len) in super::super::parquet::coalesce(&ranges, 0) {
        fetch(&mut file, start, len, &mut cost);
    }
    let sample = sample(file, &footer, &plan, &schema, mode, &limits)?;
    Ok((plan, sample, cost))
}

fn ids(s: &Sample) -> Vec<i64> {
    s.rows.iter().map(|r| r[0].value.as_i64().unwrap()).collect()
}

#[test]
fn real_orc_files_are_sampled_with_typed_values_for_every_codec() {
    for (codec, bytes) in REAL_ORC {
        let limits = SampleLimits { max_rows: 10, max_value_bytes: 100 };
        let (_, s, _) =
            run(bytes, &[], SampleMode::Head, limits, u64::MAX).unwrap_or_else(|e| panic!("{codec}: {e}"));
        let names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "name", "price", "tags", "attrs", "day", "at", "local", "inner"], "{codec}");
        let values: Vec<Vec<Value>> =
            s.rows.iter().map(|r| r.iter().map(|v| v.value.clone()).collect()).collect();
        assert_eq!(
            values[0],
            vec![
                json!(1),
                json!("a"),
                json!("1.500"),
                json!([1, 2]),
                json!({"k": 1.0}),
                json!("2024-01-01"),
                json!("2024-01-01T00:00:00Z"),
                json!("2024-01-01T00:00:00"),
                json!({"flag": true}),
            ],
            "{codec}"
        );
        assert_eq!(values[1][1], Value::Null, "{codec}: nulls stay null");
        assert_eq!(values[1][3], json!([]), "{codec}");
        assert_eq!(values[2][3], Value::Null, "{codec}");
        assert_eq!(values[2][4], json!({}), "{codec}");
        assert_eq!(s.rows.len(), 3);
        assert!(!s.more_rows, "{codec}");
        // Projection, in the requested order.
        let cols = ["inner".to_string(), "id".to_string()];
        let (_, s, _) = run(bytes, &cols, SampleMode::Head, limits, u64::MAX).unwrap();
        assert_eq!(s.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["inner", "id"]);
        assert_eq!(
            s.rows[2].iter().map(|v| v.value.clone()).collect::<Vec<_>>(),
            [json!({"flag": true}), json!(3)]
        );
    }
}

#[test]
fn head_reads_the_tail_and_only_the_first_stripes_projected_streams() {
    for compression in
        [None, Some(CompressionType::Zlib), Some(CompressionType::Snappy), Some(CompressionType::Zstd)]
    {
        let bytes = file(6, 2000, compression);
        let size = bytes.len() as u64;
        let limits = SampleLimits { max_rows: 60, max_value_bytes: 100 };
        let (plan, s, cost) = run(&bytes, &["name".into()], SampleMode::Head, limits, u64::MAX).unwrap();
        assert_eq!(plan.stripes, vec![0], "{compression:?}: 60 rows need one stripe");
        assert_eq!(s.rows.len(), 60);
        assert_eq!(s.rows[0][0].value, json!("n0"));
        assert_eq!(s.rows[59][0].value, json!("n59"));
        assert!(s.more_rows);
        // Tail, stripe footer, projected streams; the pad column and the other stripes are
        // never fetched.
        assert!(cost.requests <= 4, "{compression:?}: {cost:?}");
        assert!(cost.bytes * 10 < size, "{compression:?}: {cost:?} of {size} bytes");
        // Every column: more bytes, still one stripe.
        let (_, all, all_cost) = run(&bytes, &[], SampleMode::Head, limits, u64::MAX).unwrap();
        assert_eq!(
            all.rows[5].iter().map(|v| v.value.clone()).collect::<Vec<_>>()[..2],
            [json!(5), json!("n5")]
        );
        assert!(all_cost.bytes > cost.bytes, "{compression:?}");
        // More rows than a stripe holds: the next stripes too, in order.
        let limits = SampleLimits { max_rows: 4500, max_value_bytes: 100 };
        let (plan, s, _) = run(&bytes, &["id".into()], SampleMode::Head, limits, u64::MAX).unwrap();
        assert_eq!(plan.stripes, vec![0, 1, 2]);
        assert_eq!(ids(&s), (0..4500).collect::<Vec<_>>());
    }
}

#[test]
fn random_mode_reaches_other_stripes_reproducibly() {
    let bytes = file(8, 500, Some(CompressionType::Zlib));
    let limits = SampleLimits { max_rows: 20, max_value_bytes: 100 };
    let take = |seed| run(&bytes, &["id".into()], SampleMode::Random { seed }, limits, u64::MAX).unwrap().1;
    let a = ids(&take(3));
    assert_eq!(a, ids(&take(3)), "same seed, same rows");
    assert_eq!(a.len(), 20);
    assert!(a.windows(2).all(|w| w[0] < w[1]), "file order");
    assert!((0..10u64).any(|seed| ids(&take(seed)).iter().any(|&i| i >= 500)), "other stripes");
    assert!((0..10u64).any(|seed| ids(&take(seed)) != ids(&take(seed + 100))));
    // Rows are drawn from the whole stripe, not its head.
    assert!((0..10u64).any(|seed| ids(&take(seed)).iter().any(|&i| i % 500 >= 100)));
}

#[test]
fn long_values_are_cut_and_marked() {
    let bytes = file(1, 10, None);
    let limits = SampleLimits { max_rows: 2, max_value_bytes: 8 };
    let (_, s, _) = run(&bytes, &["pad".into(), "name".into()], SampleMode::Head, limits, u64::MAX).unwrap();
    assert_eq!(s.rows[1][0].value, json!(noise(1, 6)[..8]));
    assert!(s.rows[1][0].truncated);
    assert_eq!(s.rows[1][1].value, json!("n1"));
    assert!(!s.rows[1][1].truncated);
}

#[test]
fn budgets_and_unknown_columns_are_typed_errors() {
    let bytes = file(3, 2000, None);
    let limits = SampleLimits::default();
    let err = run(&bytes, &[], SampleMode::Head, limits, 1000).unwrap_err();
    assert_eq!(err.code(), "SAMPLE_TOO_LARGE", "{err}");
    // A budget for one stripe: the plan keeps only what fits.
    let limits = SampleLimits { max_rows: 5000, max_value_bytes: 10 };
    let (_, one, _) = run(&bytes, &["id".into()], SampleMode::Head, limits, u64::MAX).unwrap();
    assert_eq!(one.rows.len(), 5000);
    let (plan, _, cost) = run(&bytes, &["pad".into()], SampleMode::Head, limits, 500_000).unwrap();
    assert!(plan.stripes.len() < 3 && !plan.stripes.is_empty(), "{plan:?}");
    assert!(cost.bytes < 500_000 + 64 * 1024, "{cost:?}");
    let err = run(&bytes, &["nope".into()], SampleMode::Head, limits, u64::MAX).unwrap_err();
    assert_eq!(err.code(), "SAMPLE_UNKNOWN_COLUMN");
    assert!(err.to_string().contains("id, name, pad"), "{err}");
}

#[test]
fn truncated_and_corrupt_files_are_typed_errors_never_panics() {
    let size_err = |bytes: &[u8]| tail_length(bytes, bytes.len() as u64).unwrap_err().code();
    assert_eq!(size_err(b""), "FILE_TRUNCATED");
    assert_eq!(size_err(b"ORC\x00"), "FILE_TRUNCATED");
    assert_eq!(size_err(b"not an orc file at all\x05"), "FILE_MALFORMED");
    let (_, zlib) = REAL_ORC[1];
    // The last bytes cut off: the PostScript no longer decodes, or claims more than the file.
    for cut in [1, 10, 200, zlib.len() - 10] {
        let short = &zlib[..zlib.len() - cut];
        let err = run(short, &[], SampleMode::Head, SampleLimits::default(), u64::MAX).unwrap_err();
        assert!(matches!(err.code(), "FILE_TRUNCATED" | "FILE_MALFORMED"), "cut {cut}: {err}");
    }
    // A file whose front was lost (the tail says more than there is).
    let front_lost = &zlib[zlib.len() - 300..];
    let err = run(front_lost, &[], SampleMode::Head, SampleLimits::default(), u64::MAX).unwrap_err();
    assert!(matches!(err.code(), "FILE_TRUNCATED" | "FILE_MALFORMED"), "{err}");
    // Any single corrupted byte: rows or a typed error, never a panic.
    let mut errors = 0;
    for at in 0..zlib.len() {
        let mut bad = zlib.to_vec();
        bad[at] ^= 0x5a;
        match run(&bad, &[], SampleMode::Head, SampleLimits::default(), u64::MAX) {
            Ok(_) => {}
            Err(e) => {
                assert!(
                    matches!(e.code(), "FILE_TRUNCATED" | "FILE_MALFORMED" | "SAMPLE_UNKNOWN_COLUMN"),
                    "byte {at}: {e}"
                );
                errors += 1;
            }
        }
    }
    assert!(errors > 0);
}

#[test]
fn unfetched_streams_are_an_error_not_garbage() {
    let bytes = file(2, 100, None);
    let size = bytes.len() as u64;
    let mut file = SparseFile::new(size);
    file.insert(0, Bytes::copy_from_slice(&bytes[..100]));
    let needed = tail_length(&bytes, size).unwrap();
    file.insert(size - needed, Bytes::copy_from_slice(&bytes[(size - needed) as usize..]));
    let footer = read_footer(&file).unwrap();
    assert_eq!((footer.rows(), footer.stripes()), (200, 2));
    let schema = schema_of(&bytes);
    let plan = plan(&footer, &schema, &[], SampleMode::Head, &SampleLimits::default()).unwrap();
    let mut no_footers = plan.clone();
    assert_eq!(
        stream_ranges(&file, &footer, &mut no_footers, u64::MAX).unwrap_err().code(),
        "FILE_MALFORMED"
    );
    let err = sample(file, &footer, &plan, &schema, SampleMode::Head, &SampleLimits::default()).unwrap_err();
    assert_eq!(err.code(), "FILE_MALFORMED");
    assert!(err.to_string().contains("not fetched"), "{err}");
}
