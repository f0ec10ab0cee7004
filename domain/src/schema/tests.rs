//! End-to-end tests of `infer` with fixtures built in memory.

use std::io::Write;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::format::detect_from_key;
use crate::model::{DataType, Field};

// ---------------------------------------------------------------- helpers

/// `name:type` per column, `?` when nullable.
fn render(schema: &Schema) -> String {
    schema
        .fields
        .iter()
        .map(|f| format!("{}:{}{}", f.name, f.data_type, if f.nullable { "?" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the pipeline does: plan, fetch, infer, and at most one more suffix round.
fn run_with(
    key: &str,
    object: &[u8],
    limits: &InferenceLimits,
) -> (Result<InferredFile, InferenceError>, usize) {
    let detected = detect_from_key(key);
    let size = object.len() as u64;
    let first = plan_first_read(detected, size, limits);
    let (bytes, start) = slice(object, first);
    let mut rounds = 1;
    let mut step = infer(detected, Fetched { bytes, start, object_size: size }, limits);
    while let Ok(InferenceStep::NeedSuffix { len }) = step {
        rounds += 1;
        assert!(rounds <= 3, "too many rounds");
        assert!(len <= size);
        let (bytes, start) = slice(object, FirstRead::Suffix { len });
        step = infer(detected, Fetched { bytes, start, object_size: size }, limits);
    }
    (
        step.map(|s| match s {
            InferenceStep::Done(f) => f,
            InferenceStep::NeedSuffix { .. } => unreachable!(),
        }),
        rounds,
    )
}

fn run(key: &str, object: &[u8]) -> Result<InferredFile, InferenceError> {
    run_with(key, object, &InferenceLimits::default()).0
}

fn slice(object: &[u8], read: FirstRead) -> (&[u8], u64) {
    let size = object.len();
    match read {
        FirstRead::Head { len } => (&object[..(len as usize).min(size)], 0),
        FirstRead::Suffix { len } => {
            let start = size - (len as usize).min(size);
            (&object[start..], start as u64)
        }
    }
}

fn code(result: Result<InferredFile, InferenceError>) -> &'static str {
    match result {
        Ok(f) => panic!("expected an error, got {f:?}"),
        Err(e) => e.code(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bzip(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn many_rows(n: usize) -> Vec<u8> {
    let mut s = String::from("id,name,amount,day\n");
    for i in 0..n {
        s.push_str(&format!(
            "{i},name-{},{}.{:02},2024-01-{:02}\n",
            i * 7919 % 1000,
            i % 997,
            i % 100,
            i % 28 + 1
        ));
    }
    s.into_bytes()
}

// ---------------------------------------------------------------- planning

#[test]
fn first_read_plans() {
    let l = InferenceLimits::default();
    let d = |key| detect_from_key(key);
    let table = [
        (d("a.parquet"), 10_000_000, FirstRead::Suffix { len: 64 * 1024 }),
        (d("a.orc"), 100, FirstRead::Suffix { len: 100 }),
        (d("a.csv"), 10_000_000, FirstRead::Head { len: 1024 * 1024 }),
        (d("a.csv.gz"), 10, FirstRead::Head { len: 10 }),
        (d("a.avro"), 5_000_000, FirstRead::Head { len: 1024 * 1024 }),
        (d("a"), 0, FirstRead::Head { len: 0 }),
    ];
    for (detected, size, expected) in table {
        assert_eq!(plan_first_read(detected, size, &l), expected, "{detected:?}");
    }
}

#[test]
fn error_codes_are_stable() {
    let f = FileFormat::Csv;
    let table = [
        (InferenceError::truncated(f, 0, ""), "FILE_TRUNCATED"),
        (InferenceError::malformed(f, 0, ""), "FILE_MALFORMED"),
        (InferenceError::InvalidUtf8 { format: f, offset: 0 }, "INVALID_UTF8"),
        (InferenceError::LineTooLong { format: f, offset: 0, limit: 1 }, "LINE_TOO_LONG"),
        (InferenceError::decompression(f, Compression::Gzip, 0, ""), "DECOMPRESSION_FAILED"),
        (InferenceError::BinaryContent { format: f, offset: 0 }, "BINARY_CONTENT"),
        (InferenceError::UnsupportedFormat { format: f, detail: String::new() }, "UNSUPPORTED_FORMAT"),
        (InferenceError::ParquetEncryptedFooter, "PARQUET_ENCRYPTED_FOOTER"),
        (InferenceError::EmptyFile { format: f }, "EMPTY_FILE"),
    ];
    for (e, c) in table {
        assert_eq!(e.code(), c);
        assert!(!e.to_string().is_empty());
    }
}

// ---------------------------------------------------------------- delimited text

#[test]
fn delimited_table() {
    // (key, content, format, delimiter, has_header, schema)
    let table: &[(&str, &str, FileFormat, u8, bool, &str)] = &[
        (
            "a.csv",
            "id,name,price,active\n1,apple,12.50,true\n2,pear,3.10,FALSE\n",
            FileFormat::Csv,
            b',',
            true,
            "id:int64, name:string, price:decimal(4,2), active:boolean",
        ),
        ("a.csv", "x,y\n1,2.5\n2,3.125\n3,1e3\n", FileFormat::Csv, b',', true, "x:int64, y:double"),
        (
            "a.csv",
            "1,alice,2024-01-02\n2,bob,2024-02-03\n3,carol,2024-03-04\n",
            FileFormat::Csv,
            b',',
            false,
            "column_1:int64, column_2:string, column_3:date",
        ),
        (
            "a.tsv",
            "ts\tts_tz\tn\n2024-01-02 03:04:05\t2024-01-02T03:04:05Z\t\n2024-01-02T03:04:05.5\t2024-01-02T03:04:05+02:00\tNULL\n",
            FileFormat::Tsv,
            b'\t',
            true,
            "ts:timestamp, ts_tz:timestamp_tz, n:null?",
        ),
        ("a.psv", "a|b\n1|\n2|x\n", FileFormat::Psv, b'|', true, "a:int64, b:string?"),
        // Content wins over the extension when it is unambiguous.
        ("a.csv", "a\tb\tc\n1\t2\t3\n4\t5\t6\n", FileFormat::Tsv, b'\t', true, "a:int64, b:int64, c:int64"),
        ("a.csv", "a;b\n1,5;2\n3,5;4\n", FileFormat::Csv, b';', true, "a:string, b:int64"),
        ("a.txt", "a|b\n1|2\n", FileFormat::Psv, b'|', true, "a:int64, b:int64"),
        (
            "a.csv",
            "name,city\n\"Smith, J\",\"Paris\"\n\"Doe, A\",Rome\n",
            FileFormat::Csv,
            b',',
            true,
            "name:string, city:string",
        ),
        ("a.csv", "'a,b',c\n'x,y',1\n'z,w',2\n", FileFormat::Csv, b',', true, "a,b:string, c:int64"),
        // Header cells repeated in the data: no header.
        ("a.csv", "x,y\nx,z\nq,y\n", FileFormat::Csv, b',', false, "column_1:string, column_2:string"),
        ("a.csv", "a,b,a\n1,2,3\n", FileFormat::Csv, b',', true, "a:int64, b:int64, a_2:int64"),
        (
            "a.csv",
            "x,,y\n1,2,3\n",
            FileFormat::Csv,
            b',',
            false,
            "column_1:string, column_2:int64?, column_3:string",
        ),
        // Ragged minority rows are tolerated; missing values make a column nullable.
        (
            "a.csv",
            "a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11\n",
            FileFormat::Csv,
            b',',
            true,
            "a:int64, b:int64, c:int64?",
        ),
        ("a.csv", "\u{feff}a,b\n1,2\n", FileFormat::Csv, b',', true, "a:int64, b:int64"),
        ("a.csv", "a,b\r\n1,2\r\n", FileFormat::Csv, b',', true, "a:int64, b:int64"),
        ("a.csv", "zip,n\n01234,1\n98765,2\n", FileFormat::Csv, b',', true, "zip:string, n:int64"),
    ];
    for (key, content, format, delimiter, has_header, schema) in table {
        let file = run(key, content.as_bytes()).unwrap_or_else(|e| panic!("{content:?}: {e}"));
        assert_eq!(render(&file.schema), *schema, "{content:?}");
        assert_eq!(file.format, *format, "{content:?}");
        let dialect = file.dialect.unwrap();
        assert_eq!(dialect.delimiter, *delimiter, "{content:?}");
        assert_eq!(dialect.has_header, *has_header, "{content:?}");
        assert!(!file.sample_truncated);
    }
}

#[test]
fn delimited_errors() {
    let table: &[(&str, &[u8], &str)] = &[
        ("a.csv", b"", "EMPTY_FILE"),
        ("a.csv", b"\n\n  \n", "EMPTY_FILE"),
        ("a.csv", b"a,b\n1,\xff\n", "INVALID_UTF8"),
        ("a.csv", b"a,b\n1,\x00\x00\x002\n", "BINARY_CONTENT"),
        ("a.csv", b"\x01\x02\x03\x04\x05garbage\x06\x07\x08\x0e\x0f", "BINARY_CONTENT"),
        ("a.csv", b"a,b,c\n1,2\n3,4,5,6\n7\n8,9,10,11,12\n", "FILE_MALFORMED"),
        ("a.bin", b"\x7fELF\x02\x01\x01\x00\x00\x00", "UNSUPPORTED_FORMAT"),
        ("a.csv", b"\x7fELF\x02\x01\x01\x00\x00\x00", "BINARY_CONTENT"),
        ("a.bin", b"just one line", "UNSUPPORTED_FORMAT"),
    ];
    for (key, content, expected) in table {
        assert_eq!(code(run(key, content)), *expected, "{content:?}");
    }
    match run("a.csv", b"a,b\n1,2\n3,\xc3\x28\n") {
        Err(InferenceError::InvalidUtf8 { offset, .. }) => assert_eq!(offset, 10),
        other => panic!("{other:?}"),
    }
}

#[test]
fn capped_read_drops_partial_record() {
    let object = many_rows(100_000);
    assert!(object.len() > 2 * 1024 * 1024);
    let limits = InferenceLimits { max_records: 1_000_000, ..InferenceLimits::default() };
    let (file, rounds) = run_with("x.csv", &object, &limits);
    let file = file.unwrap();
    assert_eq!(rounds, 1);
    assert!(file.sample_truncated);
    assert_eq!(render(&file.schema), "id:int64, name:string, amount:decimal(5,2), day:date");
    // Every complete line of the first MiB, none beyond.
    let head = &object[..1024 * 1024];
    let complete_lines = head.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(file.records_sampled, complete_lines - 1);
}

#[test]
fn record_cap_truncates_sample() {
    let object = many_rows(50);
    let limits = InferenceLimits { max_records: 10, ..InferenceLimits::default() };
    let file = run_with("x.csv", &object, &limits).0.unwrap();
    assert_eq!(file.records_sampled, 10);
    assert!(file.sample_truncated);
}

#[test]
fn huge_first_line() {
    let mut line = vec![b'a'; 2 * 1024 * 1024];
    line.extend_from_slice(b"\n1\n");
    assert_eq!(code(run("x.csv", &line)), "LINE_TOO_LONG");
    let limits = InferenceLimits { max_line_bytes: 10, ..InferenceLimits::default() };
    assert_eq!(code(run_with("x.csv", b"abcdefghijklmnop\n1\n", &limits).0), "LINE_TOO_LONG");
    assert_eq!(code(run_with("x.jsonl", b"{\"aaaaaaaaaaaaaa\":1}\n", &limits).0), "LINE_TOO_LONG");
}

// ---------------------------------------------------------------- compression

#[test]
fn compressed_text_roundtrip() {
    let csv = b"a,b\n1,x\n2,y\n";
    let jsonl = b"{\"a\":1}\n{\"a\":2.5}\n";
    let table: Vec<(&str, Vec<u8>, Compression, &str)> = vec![
        ("x.csv.gz", gzip(csv), Compression::Gzip, "a:int64, b:string"),
        ("x.csv.bz2", bzip(csv), Compression::Bzip2, "a:int64, b:string"),
        ("x.csv.zst", zstd::encode_all(&csv[..], 3).unwrap(), Compression::Zstd, "a:int64, b:string"),
        ("x.jsonl.gz", gzip(jsonl), Compression::Gzip, "a:double"),
        // Concatenated gzip members are one stream.
        ("x.csv.gz", [gzip(b"a,b\n1,x\n"), gzip(b"2,y\n")].concat(), Compression::Gzip, "a:int64, b:string"),
        // No extension: magic number and text sniffing.
        ("x", gzip(csv), Compression::Gzip, "a:int64, b:string"),
        // A `.gz` key over plain bytes (stored decoded).
        ("x.csv.gz", csv.to_vec(), Compression::None, "a:int64, b:string"),
    ];
    for (key, object, compression, schema) in table {
        let file = run(key, &object).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(file.compression, compression, "{key}");
        assert_eq!(render(&file.schema), schema, "{key}");
        assert!(!file.sample_truncated, "{key}");
    }
}

#[test]
fn gzip_cut_mid_stream() {
    let object = gzip(&many_rows(300_000));
    assert!(object.len() > 2 * 1024 * 1024, "{}", object.len());
    // Capped read: decodes as far as it goes.
    let file = run("x.csv.gz", &object).unwrap();
    assert!(file.sample_truncated);
    assert_eq!(file.records_sampled, 1000);
    assert_eq!(render(&file.schema), "id:int64, name:string, amount:decimal(5,2), day:date");
    // The whole object was read but ends early: a truncated file.
    let cut = &object[..object.len() / 2];
    let limits = InferenceLimits {
        max_read_bytes: u64::MAX,
        max_decompressed_bytes: u64::MAX,
        ..InferenceLimits::default()
    };
    assert!(matches!(code(run_with("x.csv.gz", cut, &limits).0), "FILE_TRUNCATED" | "DECOMPRESSION_FAILED"));
    // Garbage after a gzip magic.
    assert_eq!(code(run("x.csv.gz", b"\x1f\x8b\x08\x00garbage-garbage")), "DECOMPRESSION_FAILED");
    assert_eq!(code(run("x.csv.zst", b"\x28\xb5\x2f\xfdgarbage")), "DECOMPRESSION_FAILED");
}

#[test]
fn compression_bomb_is_bounded() {
    // 100 MB of CSV rows compress to a few hundred KB: the whole object is read, but only
    // max_decompressed_bytes are ever decoded.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b"a,b\n").unwrap();
    let chunk = b"1,2\n".repeat(256 * 1024);
    for _ in 0..100 {
        e.write_all(&chunk).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!((bomb.len() as u64) < InferenceLimits::default().max_read_bytes);
    let file = run("bomb.csv.gz", &bomb).unwrap();
    assert!(file.sample_truncated);
    assert_eq!(render(&file.schema), "a:int64, b:int64");

    // Zeros: bounded, and reported as binary.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..100 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert_eq!(code(run("zeros.csv.gz", &bomb)), "BINARY_CONTENT");

    // A zstd frame demanding a 128 MiB window is refused rather than allocated.
    let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    e.window_log(27).unwrap();
    e.write_all(b"a,b\n1,2\n").unwrap();
    let huge_window = e.finish().unwrap();
    assert_eq!(code(run("w.csv.zst", &huge_window)), "DECOMPRESSION_FAILED");
    assert_eq!(zstd::decode_all(&huge_window[..]).unwrap(), b"a,b\n1,2\n");

    // The decoded sample never exceeds the cap.
    let limits = InferenceLimits { max_decompressed_bytes: 1000, ..InferenceLimits::default() };
    let detected = detect_from_key("bomb.csv.gz");
    let compressed = gzip(&chunk);
    let sample = decode::decode_sample(detected, &compressed, u64::MAX, &limits).unwrap();
    assert_eq!(sample.data.len(), 1000);
    let (out, _, more) = decode::read_bounded(&b"x".repeat(100_000)[..], 70_000);
    assert!(more && out.len() == 70_000 && out.capacity() <= 70_000);
    assert!(sample.truncated);
}

// ---------------------------------------------------------------- JSON

#[test]
fn json_table() {
    let table: &[(&str, &str, FileFormat, &str)] = &[
        (
            "a.jsonl",
            "{\"id\":1,\"user\":{\"name\":\"a\",\"age\":3},\"tags\":[\"x\"],\"score\":1}\n\
             {\"id\":2,\"user\":{\"name\":\"b\",\"vip\":true},\"tags\":[],\"score\":2.5,\"extra\":null}\n",
            FileFormat::JsonLines,
            "id:int64, user:struct<name:string,age:int64,vip:boolean>, tags:list<string>, score:double, extra:null?",
        ),
        (
            "a.ndjson",
            "{\"t\":\"2024-01-02T03:04:05Z\",\"d\":\"2024-01-02\",\"l\":\"2024-01-02 03:04:05\",\"s\":\"hi\"}\n{\"d\":\"2024-01-02T00:00:00\"}",
            FileFormat::JsonLines,
            "t:timestamp_tz?, d:timestamp, l:timestamp?, s:string?",
        ),
        ("a.jsonl", "{\"b\":1}{\"a\":2}", FileFormat::JsonLines, "b:int64?, a:int64?"),
        ("a.jsonl", "{\"n\":[1,2.5,null]}", FileFormat::JsonLines, "n:list<double>"),
        (
            "a.json",
            "[{\"z\":1},{\"z\":\"x\",\"a\":[{\"q\":1}]}]",
            FileFormat::Json,
            "z:string, a:list<struct<q:int64>>?",
        ),
        (
            "a.json",
            "  {\"z\":1, \"y\": {\"k\": 99999999999999999999}}  ",
            FileFormat::Json,
            "z:int64, y:struct<k:double>",
        ),
        ("a", "[{\"z\":1}]", FileFormat::Json, "z:int64"),
        ("a", "{\"z\":1}\n{\"z\":2}\n", FileFormat::JsonLines, "z:int64"),
    ];
    for (key, content, format, schema) in table {
        let file = run(key, content.as_bytes()).unwrap_or_else(|e| panic!("{content}: {e}"));
        assert_eq!(render(&file.schema), *schema, "{content}");
        assert_eq!(file.format, *format, "{content}");
    }
    let errors: &[(&str, &str, &str)] = &[
        ("a.jsonl", "{\"a\":1}\n{\"a\":\n", "FILE_MALFORMED"),
        ("a.jsonl", "[1,2]\n", "FILE_MALFORMED"),
        ("a.json", "[1,2]", "FILE_MALFORMED"),
        ("a.json", "[{\"a\":1},", "FILE_TRUNCATED"),
        ("a.json", "[]", "EMPTY_FILE"),
        ("a.json", "nope", "FILE_MALFORMED"),
    ];
    for (key, content, expected) in errors {
        assert_eq!(code(run(key, content.as_bytes())), *expected, "{content}");
    }
}

#[test]
fn json_array_capped_read_yields_leading_records() {
    let mut doc = String::from("[");
    for i in 0..50_000 {
        doc.push_str(&format!("{{\"id\":{i},\"name\":\"row {i}\",\"v\":{i}.5}},"));
    }
    doc.push_str("{\"id\":0}]");
    let limits = InferenceLimits { max_read_bytes: 4096, max_records: 100_000, ..InferenceLimits::default() };
    let file = run_with("big.json", doc.as_bytes(), &limits).0.unwrap();
    assert!(file.sample_truncated);
    assert!(file.records_sampled > 50 && file.records_sampled < 200, "{}", file.records_sampled);
    assert_eq!(render(&file.schema), "id:int64, name:string, v:double");
    // JSON lines capped mid-record.
    let lines: String = (0..10_000).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    let file = run_with("x.jsonl", lines.as_bytes(), &limits).0.unwrap();
    assert!(file.sample_truncated);
    assert_eq!(render(&file.schema), "id:int64");
}

// ---------------------------------------------------------------- Parquet

fn write_parquet(message: &str, kv_value_len: usize, rows: Option<&[i64]>) -> Vec<u8> {
    use ::parquet::file::metadata::KeyValue;
    use ::parquet::file::properties::WriterProperties;
    use ::parquet::file::writer::SerializedFileWriter;

    let schema = Arc::new(::parquet::schema::parser::parse_message_type(message).unwrap());
    let mut props = WriterProperties::builder();
    if kv_value_len > 0 {
        props = props
            .set_key_value_metadata(Some(vec![KeyValue::new("big".to_string(), "x".repeat(kv_value_len))]));
    }
    let mut buf = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut buf, schema, Arc::new(props.build())).unwrap();
    if let Some(values) = rows {
        let mut rg = writer.next_row_group().unwrap();
        while let Some(mut col) = rg.next_column().unwrap() {
            col.typed::<::parquet::data_type::Int64Type>().write_batch(values, None, None).unwrap();
            col.close().unwrap();
        }
        rg.close().unwrap();
    }
    writer.close().unwrap();
    buf
}

#[test]
fn parquet_flat_with_row_count() {
    let object = write_parquet("message m { required int64 id; required int64 n; }", 0, Some(&[1, 2, 3]));
    let file = run("p.parquet", &object).unwrap();
    assert_eq!(render(&file.schema), "id:int64, n:int64");
    assert_eq!(file.row_count, Some(3));
    assert_eq!(file.format, FileFormat::Parquet);
}

#[test]
fn parquet_nested_and_logical_types() {
    let message = "
        message m {
          required int32 i32;
          optional int64 i64;
          optional boolean b;
          optional float f;
          optional double d;
          optional binary s (STRING);
          optional binary raw;
          optional int32 day (DATE);
          optional int64 ts (TIMESTAMP(MICROS, false));
          optional int64 tstz (TIMESTAMP(MILLIS, true));
          optional int64 legacy_ts (TIMESTAMP_MILLIS);
          optional int32 small (INTEGER(16, true));
          optional int64 t (TIME(MICROS, true));
          optional fixed_len_byte_array(16) money (DECIMAL(20, 4));
          optional int32 dec32 (DECIMAL(9, 2));
          optional int96 old_ts;
          optional group tags (LIST) { repeated group list { optional binary element (STRING); } }
          optional group attrs (MAP) { repeated group key_value { required binary key (STRING); optional int32 value; } }
          optional group address { required binary city (STRING); optional group geo { required double lat; required double lon; } }
          optional group points (LIST) { repeated group list { required group element { required int32 x; required int32 y; } } }
          repeated int32 legacy_repeated;
          optional group two_level (LIST) { repeated int64 item; }
        }";
    let object = write_parquet(message, 0, None);
    let file = run("nested.pq", &object).unwrap();
    assert_eq!(
        render(&file.schema),
        "i32:int32, i64:int64?, b:boolean?, f:float?, d:double?, s:string?, raw:binary?, day:date?, \
         ts:timestamp?, tstz:timestamp_tz?, legacy_ts:timestamp_tz?, small:int32?, t:time?, \
         money:decimal(20,4)?, dec32:decimal(9,2)?, old_ts:timestamp?, tags:list<string>?, \
         attrs:map<string,int32>?, address:struct<city:string,geo:struct<lat:double,lon:double>>?, \
         points:list<struct<x:int32,y:int32>>?, legacy_repeated:list<int32>, two_level:list<int64>?"
    );
    assert_eq!(file.row_count, Some(0));
    let DataType::List(element) = &file.schema.fields[16].data_type else { panic!() };
    assert!(element.nullable);
}

#[test]
fn parquet_footer_larger_than_probe() {
    let object = write_parquet("message m { required int64 id; }", 200_000, Some(&[7]));
    let (file, rounds) = run_with("big-footer.parquet", &object, &InferenceLimits::default());
    assert_eq!(rounds, 2);
    let file = file.unwrap();
    assert_eq!(render(&file.schema), "id:int64");
    assert_eq!(file.row_count, Some(1));

    // The step by step protocol.
    let limits = InferenceLimits::default();
    let size = object.len() as u64;
    let tail = &object[object.len() - 65536..];
    let step = infer(
        detect_from_key("a.parquet"),
        Fetched { bytes: tail, start: size - 65536, object_size: size },
        &limits,
    );
    let Ok(InferenceStep::NeedSuffix { len }) = step else { panic!("{step:?}") };
    let meta_len = u32::from_le_bytes(object[object.len() - 8..object.len() - 4].try_into().unwrap()) as u64;
    assert_eq!(len, meta_len + 8);
}

#[test]
fn parquet_damaged() {
    let object = write_parquet("message m { required int64 id; }", 0, Some(&[1, 2]));
    // Cut tail: the object ends before the footer does.
    assert_eq!(code(run("a.parquet", &object[..object.len() - 3])), "FILE_TRUNCATED");
    // Wrong magic.
    let mut wrong = object.clone();
    let n = wrong.len();
    wrong[n - 4..].copy_from_slice(b"XXXX");
    assert_eq!(code(run("a.parquet", &wrong)), "FILE_TRUNCATED");
    // A length that does not fit the file.
    let mut long = object.clone();
    long[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(code(run("a.parquet", &long)), "FILE_TRUNCATED");
    // A footer length beyond MAX_FOOTER_BYTES in a (claimed) huge object: no huge fetch.
    let tail = &long[n - 100..];
    let huge = 1u64 << 40;
    let step = infer(
        detect_from_key("a.parquet"),
        Fetched { bytes: tail, start: huge - 100, object_size: huge },
        &InferenceLimits::default(),
    );
    assert_eq!(step.unwrap_err().code(), "FILE_MALFORMED");
    // Garbage footer of a plausible length.
    let mut garbage = object.clone();
    let meta_len = u32::from_le_bytes(object[n - 8..n - 4].try_into().unwrap()) as usize;
    for b in &mut garbage[n - 8 - meta_len..n - 8] {
        *b = 0xff;
    }
    assert_eq!(code(run("a.parquet", &garbage)), "FILE_MALFORMED");
    // Encrypted footer.
    let mut encrypted = object.clone();
    encrypted[n - 4..].copy_from_slice(b"PARE");
    assert_eq!(code(run("a.parquet", &encrypted)), "PARQUET_ENCRYPTED_FOOTER");
    assert_eq!(code(run("a.parquet", b"PAR1")), "FILE_TRUNCATED");
}

#[test]
fn content_magic_overrides_key() {
    let object = write_parquet("message m { required int64 id; }", 0, Some(&[1]));
    // Small file under a misleading key: the head read is the whole file.
    let file = run("data.csv", &object).unwrap();
    assert_eq!(file.format, FileFormat::Parquet);
    // Large unknown file: the head read reveals Parquet, then one suffix read.
    let big = write_parquet("message m { required int64 id; }", 0, Some(&(0..300_000).collect::<Vec<_>>()));
    assert!(big.len() > 1024 * 1024);
    let (file, rounds) = run_with("data", &big, &InferenceLimits::default());
    assert_eq!(rounds, 2);
    assert_eq!(file.unwrap().row_count, Some(300_000));
}

// ---------------------------------------------------------------- Avro

const AVRO_SCHEMA: &str = r#"{
  "type": "record", "name": "Event", "namespace": "ex",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "n", "type": "int"},
    {"name": "name", "type": ["null", "string"], "default": null},
    {"name": "score", "type": "double"},
    {"name": "ratio", "type": "float"},
    {"name": "ok", "type": "boolean"},
    {"name": "payload", "type": "bytes"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": ["null", "long"]}},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}},
    {"name": "inner2", "type": ["null", "Inner"]},
    {"name": "either", "type": ["int", "string"]}
  ]
}"#;

fn write_avro(rows: usize) -> Vec<u8> {
    use apache_avro::types::Value;
    let schema = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    for i in 0..rows {
        let record = Value::Record(vec![
            ("id".into(), Value::Long(i as i64)),
            ("n".into(), Value::Int(1)),
            ("name".into(), Value::Union(1, Box::new(Value::String(format!("name {i}"))))),
            ("score".into(), Value::Double(1.5)),
            ("ratio".into(), Value::Float(0.5)),
            ("ok".into(), Value::Boolean(true)),
            ("payload".into(), Value::Bytes(vec![1, 2, 3])),
            ("tags".into(), Value::Array(vec![Value::String("t".into())])),
            ("attrs".into(), Value::Map(Default::default())),
            ("kind".into(), Value::Enum(1, "B".into())),
            ("hash".into(), Value::Fixed(4, vec![0, 1, 2, 3])),
            ("day".into(), Value::Date(19000)),
            ("at".into(), Value::TimestampMicros(1)),
            ("local".into(), Value::LocalTimestampMillis(1)),
            ("price".into(), Value::Decimal(apache_avro::Decimal::from(vec![0x01, 0x02]))),
            ("uid".into(), Value::Uuid(Default::default())),
            ("inner".into(), Value::Record(vec![("x".into(), Value::Int(1))])),
            ("inner2".into(), Value::Union(0, Box::new(Value::Null))),
            ("either".into(), Value::Union(0, Box::new(Value::Int(3)))),
        ]);
        writer.append(record).unwrap();
        if i % 100 == 99 {
            writer.flush().unwrap();
        }
    }
    writer.into_inner().unwrap()
}

#[test]
fn avro_schema_and_capped_read() {
    let expected = "id:int64, n:int32, name:string?, score:double, ratio:float, ok:boolean, payload:binary, \
        tags:list<string>, attrs:map<string,int64>, kind:string, hash:binary, day:date, at:timestamp_tz, \
        local:timestamp, price:decimal(10,2), uid:string, inner:struct<x:int32>, inner2:struct<x:int32>?, \
        either:union<int32,string>";
    let small = write_avro(250);
    let file = run("e.avro", &small).unwrap();
    assert_eq!(render(&file.schema), expected);
    assert_eq!(file.records_sampled, 250);
    assert!(!file.sample_truncated);

    let big = write_avro(20_000);
    let limits = InferenceLimits { max_read_bytes: 64 * 1024, ..InferenceLimits::default() };
    let file = run_with("e.avro", &big, &limits).0.unwrap();
    assert_eq!(render(&file.schema), expected);
    assert!(file.sample_truncated);
    assert!(file.records_sampled > 0 && file.records_sampled < 20_000);

    // A default value may hold a "name" key that is no Avro name; invalid names are refused
    // before apache-avro sees them (it panics on them).
    let with_default = r#"{"type":"record","name":"R","fields":[
        {"name":"meta","type":{"type":"map","values":"string"},"default":{"name":"John Doe"}}]}"#;
    let parsed = apache_avro::Schema::parse_str(with_default).unwrap();
    let object = apache_avro::Writer::new(&parsed, Vec::new()).into_inner().unwrap();
    assert_eq!(render(&run("d.avro", &object).unwrap().schema), "meta:map<string,string>");
    let mut bad = object.clone();
    let at = bad.windows(3).position(|w| w == b"\"R\"").unwrap();
    bad[at + 1] = b'#';
    match run("d.avro", &bad) {
        Err(InferenceError::FileMalformed { detail, .. }) => {
            assert!(detail.contains("invalid name"))
        }
        other => panic!("{other:?}"),
    }

    // Header cut short, and not Avro at all.
    assert_eq!(code(run("e.avro", &small[..40])), "FILE_TRUNCATED");
    assert_eq!(code(run("e.avro", b"not avro at all")), "FILE_MALFORMED");
}

// ---------------------------------------------------------------- ORC

/// Builds the tail of an ORC file (header, an empty body, Footer, PostScript, length byte)
/// with our own prost messages; no ORC writer exists for Rust in this workspace.
fn write_orc(compression: i32, rows: u64) -> Vec<u8> {
    use orc::{Footer, OrcType, PostScript};
    let t = |kind: i32, subtypes: Vec<u32>, names: &[&str]| OrcType {
        kind: Some(kind),
        subtypes,
        field_names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let types = vec![
        t(
            12,
            vec![1, 2, 3, 4, 6, 9, 10, 11],
            &["id", "name", "price", "tags", "attrs", "day", "at", "inner"],
        ), // 0
        t(4, vec![], &[]), // 1 long
        t(7, vec![], &[]), // 2 string
        OrcType { kind: Some(14), precision: Some(12), scale: Some(3), ..Default::default() }, // 3 decimal
        t(10, vec![5], &[]), // 4 list
        t(3, vec![], &[]), // 5 int
        t(11, vec![7, 8], &[]), // 6 map
        t(7, vec![], &[]), // 7 string
        t(6, vec![], &[]), // 8 double
        t(15, vec![], &[]), // 9 date
        t(18, vec![], &[]), // 10 timestamp instant
        t(12, vec![12], &["flag"]), // 11 struct
        t(0, vec![], &[]), // 12 boolean
    ];
    let footer =
        Footer { header_length: Some(3), content_length: Some(0), types, number_of_rows: Some(rows) };
    let raw = prost::Message::encode_to_vec(&footer);
    let footer_bytes = match compression {
        0 => raw,
        1 => {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&raw).unwrap();
            let deflated = e.finish().unwrap();
            orc_chunk(&deflated, false)
        }
        2 => orc_chunk(&snap::raw::Encoder::new().compress_vec(&raw).unwrap(), false),
        5 => orc_chunk(&zstd::encode_all(&raw[..], 3).unwrap(), false),
        // "Original" (stored) chunk in a compressed file.
        _ => orc_chunk(&raw, true),
    };
    let ps = PostScript {
        footer_length: Some(footer_bytes.len() as u64),
        compression: Some(if compression > 5 { 1 } else { compression }),
        compression_block_size: Some(256 * 1024),
        version: vec![0, 12],
        metadata_length: Some(0),
        writer_version: Some(1),
        magic: Some("ORC".into()),
    };
    let ps_bytes = prost::Message::encode_to_vec(&ps);
    let mut file = b"ORC".to_vec();
    file.extend_from_slice(&footer_bytes);
    file.extend_from_slice(&ps_bytes);
    file.push(ps_bytes.len() as u8);
    file
}

fn orc_chunk(data: &[u8], original: bool) -> Vec<u8> {
    let header = ((data.len() as u32) << 1) | u32::from(original);
    let mut out = header.to_le_bytes()[..3].to_vec();
    out.extend_from_slice(data);
    out
}

#[test]
fn orc_footers() {
    let expected = "id:int64?, name:string?, price:decimal(12,3)?, tags:list<int32>?, attrs:map<string,double>?, \
        day:date?, at:timestamp_tz?, inner:struct<flag:boolean>?";
    for compression in [0, 1, 2, 5, 9] {
        let object = write_orc(compression, 42);
        let file = run("x.orc", &object).unwrap_or_else(|e| panic!("{compression}: {e}"));
        assert_eq!(render(&file.schema), expected, "{compression}");
        assert_eq!(file.row_count, Some(42));
    }
    // Footer larger than the probe: one more suffix read.
    let object = write_orc(0, 1);
    let limits = InferenceLimits { footer_probe_bytes: 16, ..InferenceLimits::default() };
    let (file, rounds) = run_with("x.orc", &object, &limits);
    assert_eq!(rounds, 2);
    assert_eq!(render(&file.unwrap().schema), expected);
    // Cut tail and unsupported codec.
    assert_eq!(code(run("x.orc", &object[..object.len() - 1])), "FILE_TRUNCATED");
    let mut lz4 = write_orc(0, 1);
    let ps_len = *lz4.last().unwrap() as usize;
    let n = lz4.len();
    let mut ps: orc::PostScript = prost::Message::decode(&lz4[n - 1 - ps_len..n - 1]).unwrap();
    ps.compression = Some(4);
    let ps_bytes = prost::Message::encode_to_vec(&ps);
    lz4.truncate(n - 1 - ps_len);
    lz4.extend_from_slice(&ps_bytes);
    lz4.push(ps_bytes.len() as u8);
    assert_eq!(code(run("x.orc", &lz4)), "UNSUPPORTED_FORMAT");
}

// ---------------------------------------------------------------- properties

fn any_detected() -> impl Strategy<Value = DetectedFormat> {
    let formats = prop::sample::select(vec![
        FileFormat::Csv,
        FileFormat::Tsv,
        FileFormat::Psv,
        FileFormat::JsonLines,
        FileFormat::Json,
        FileFormat::Parquet,
        FileFormat::Avro,
        FileFormat::Orc,
        FileFormat::Unknown,
    ]);
    let compressions = prop::sample::select(vec![
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Bzip2,
    ]);
    (formats, compressions).prop_map(|(format, compression)| DetectedFormat { format, compression })
}

/// Byte strings that start like real files more often than uniform noise would.
fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop::sample::select(vec![
        &b""[..],
        b"PAR1",
        b"Obj\x01",
        b"ORC",
        b"\x1f\x8b\x08\x00",
        b"\x28\xb5\x2f\xfd",
        b"BZh9",
        b"a,b\n1,2\n",
        b"[{\"a\":",
        b"{\"a\":1}\n",
    ]);
    (prefix, prop::collection::vec(any::<u8>(), 0..600), any::<bool>()).prop_map(|(p, rest, par1_tail)| {
        let mut v = p.to_vec();
        v.extend(rest);
        if par1_tail {
            v.extend_from_slice(b"PAR1");
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn infer_never_panics(
        detected in any_detected(),
        bytes in any_bytes(),
        extra_before in 0u64..100,
        extra_after in 0u64..100,
        small_limits in any::<bool>(),
    ) {
        let limits = if small_limits {
            InferenceLimits { max_read_bytes: 64, max_decompressed_bytes: 256, max_records: 3, max_line_bytes: 32, footer_probe_bytes: 16 }
        } else {
            InferenceLimits::default()
        };
        let object_size = extra_before + bytes.len() as u64 + extra_after;
        // A head read, a suffix read, and the whole object.
        for (start, size) in [(0, object_size), (extra_before, extra_before + bytes.len() as u64), (0, bytes.len() as u64)] {
            let _ = infer_unguarded(detected, Fetched { bytes: &bytes, start, object_size: size }, &limits);
        }
        let _ = crate::format::detect_from_content(&bytes);
    }

    #[test]
    fn csv_never_panics_on_texty_input(text in "[a-c0-9,;|\t\"' \n.:-]{0,300}") {
        for key in ["a.csv", "a.json", "a.jsonl", "a"] {
            let _ = infer_unguarded(detect_from_key(key), Fetched { bytes: text.as_bytes(), start: 0, object_size: text.len() as u64 }, &InferenceLimits::default());
        }
    }
}

#[test]
fn merged_file_schemas() {
    let a = run("a.csv", b"id,amount\n1,2.50\n").unwrap();
    let b = run("b.jsonl", b"{\"id\":1,\"amount\":3,\"note\":\"x\"}\n").unwrap();
    let merged = merge_schemas(&[("a.csv".into(), a.schema), ("b.jsonl".into(), b.schema)]);
    assert_eq!(render(&merged.schema), "id:int64, amount:decimal(21,2), note:string?");
    assert_eq!(merged.drift.len(), 2);
    assert_eq!(merged.drift[0].types, vec!["decimal(3,2)", "int64"]);
    assert_eq!(merged.drift[1].missing_from, vec!["a.csv"]);
    let _ = Field { name: String::new(), data_type: DataType::Null, nullable: true };
}

// ---------------------------------------------------------------- hostile inputs

/// An uncompressed ORC tail around `footer`.
fn orc_file(footer: &orc::Footer) -> Vec<u8> {
    let footer_bytes = prost::Message::encode_to_vec(footer);
    let ps = orc::PostScript {
        footer_length: Some(footer_bytes.len() as u64),
        compression: Some(0),
        magic: Some("ORC".into()),
        ..Default::default()
    };
    let ps_bytes = prost::Message::encode_to_vec(&ps);
    let mut file = b"ORC".to_vec();
    file.extend_from_slice(&footer_bytes);
    file.extend_from_slice(&ps_bytes);
    file.push(ps_bytes.len() as u8);
    file
}

#[test]
fn hostile_type_graphs_are_bounded() {
    // ORC: every type points twice at the next one (a DAG that would expand to 2^60 nodes),
    // and a cycle back to the root.
    let mut types: Vec<orc::OrcType> = (0..60)
        .map(|i| orc::OrcType {
            kind: Some(12),
            subtypes: vec![i + 1, i + 1],
            field_names: vec!["a".into(), "b".into()],
            ..Default::default()
        })
        .collect();
    types.push(orc::OrcType { kind: Some(11), subtypes: vec![0, 0], ..Default::default() });
    let footer = orc::Footer { types, number_of_rows: Some(1), ..Default::default() };
    let file = run("dag.orc", &orc_file(&footer)).unwrap();
    assert!(render(&file.schema).contains("shared_type"));

    // Avro: named records each referencing the previous one twice.
    let mut schema = String::from(r#"{"type":"record","name":"T0","fields":[{"name":"x","type":"int"}]}"#);
    for i in 1..40 {
        schema = format!(
            r#"{{"type":"record","name":"T{i}","fields":[{{"name":"a","type":{schema}}},{{"name":"b","type":"T{}"}}]}}"#,
            i - 1
        );
    }
    let parsed = apache_avro::Schema::parse_str(&schema).unwrap();
    let avro = apache_avro::Writer::new(&parsed, Vec::new()).into_inner().unwrap();
    let file = run("deep.avro", &avro).unwrap();
    assert!(render(&file.schema).contains("too_complex"));

    // JSON: one object with very many keys, then the same keys again.
    let keys: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\":{i}")).collect();
    let line = format!("{{{}}}\n", keys.join(","));
    let content = format!("{line}{line}");
    let limits =
        InferenceLimits { max_line_bytes: 8 << 20, max_read_bytes: 8 << 20, ..InferenceLimits::default() };
    let started = std::time::Instant::now();
    let file = run_with("wide.jsonl", content.as_bytes(), &limits).0.unwrap();
    assert_eq!(file.schema.fields.len(), 100_000);
    assert!(started.elapsed().as_secs() < 20);

    // A single JSON object larger than the read: no record, so truncated.
    let limits = InferenceLimits { max_read_bytes: 1000, ..InferenceLimits::default() };
    assert_eq!(code(run_with("wide.json", line.as_bytes(), &limits).0), "FILE_TRUNCATED");
}

#[test]
fn every_codec_cut_mid_stream() {
    let csv = many_rows(200_000);
    let table: Vec<(&str, Vec<u8>)> = vec![
        ("x.csv.gz", gzip(&csv)),
        ("x.csv.zst", zstd::encode_all(&csv[..], 3).unwrap()),
        ("x.csv.bz2", bzip(&csv)),
    ];
    for (key, object) in table {
        // Capped read: a bounded sample, not an error. (A zstd block decodes only whole,
        // so the read must hold at least one compressed block of up to 128 KiB.)
        let limits = InferenceLimits { max_read_bytes: 256 * 1024, ..InferenceLimits::default() };
        assert!(object.len() > 256 * 1024, "{key}: {}", object.len());
        let file = run_with(key, &object, &limits).0.unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(file.sample_truncated, "{key}");
        assert!(file.records_sampled > 10, "{key}");
        assert_eq!(render(&file.schema), "id:int64, name:string, amount:decimal(5,2), day:date", "{key}");
        // The whole (cut) object was read: an error.
        let cut = &object[..object.len() / 2];
        let got = code(run(key, cut));
        assert!(matches!(got, "FILE_TRUNCATED" | "DECOMPRESSION_FAILED"), "{key}: {got}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Valid files with a few bytes overwritten: the decoders we call must not panic either.
    #[test]
    fn damaged_fixtures_never_panic(
        which in 0usize..7,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        thread_local! {
            static FIXTURES: Vec<(&'static str, Vec<u8>)> = vec![
                ("f.parquet", write_parquet("message m { required int64 id; optional group g (LIST) { repeated group list { optional binary element (STRING); } } }", 0, None)),
                ("f.avro", write_avro(3)),
                ("f.orc", write_orc(1, 5)),
                ("g.orc", REAL_ORC[2].1.to_vec()),
                ("h.orc", REAL_ORC[3].1.to_vec()),
                ("f.csv.gz", gzip(b"a,b\n1,2\n3,4\n")),
                ("f.json", b"[{\"a\":1,\"b\":[1,2,{\"c\":null}]},{\"a\":\"2024-01-01\"}]".to_vec()),
            ];
        }
        let (key, mut object) = FIXTURES.with(|f| f[which].clone());
        for (at, byte) in edits {
            let i = at.index(object.len());
            object[i] = byte;
        }
        if do_cut {
            object.truncate(cut.index(object.len() + 1));
        }
        let limits = InferenceLimits::default();
        let detected = detect_from_key(key);
        let size = object.len() as u64;
        for start in [0, size.saturating_sub(64), size / 2] {
            let _ = infer_unguarded(detected, Fetched { bytes: &object[start as usize..], start, object_size: size }, &limits);
        }
    }
}

/// ORC files written by pyarrow 26.0.1 (Apache ORC C++ writer), with:
///
/// ```python
/// t = pa.table({
///   "id": pa.array([1,2,3], pa.int64()),
///   "name": pa.array(["a", None, "c"], pa.string()),
///   "price": pa.array([Decimal("1.500"), None, Decimal("2.250")], pa.decimal128(12,3)),
///   "tags": pa.array([[1,2],[],None], pa.list_(pa.int32())),
///   "attrs": pa.array([[("k", 1.0)], None, []], pa.map_(pa.string(), pa.float64())),
///   "day": pa.array([date(2024,1,1)]*3, pa.date32()),
///   "at": pa.array([datetime(2024,1,1)]*3, pa.timestamp("us", tz="UTC")),
///   "local": pa.array([datetime(2024,1,1)]*3, pa.timestamp("us")),
///   "inner": pa.array([{"flag": True}]*3, pa.struct([("flag", pa.bool_())])),
/// })
/// for c in ["uncompressed", "zlib", "snappy", "zstd"]:
///     pyarrow.orc.write_table(t, f"orc_{c}.orc", compression=c)
/// ```
const REAL_ORC: [(&str, &[u8]); 4] = [
    ("none", include_bytes!("testdata/orc_uncompressed.orc")),
    ("zlib", include_bytes!("testdata/orc_zlib.orc")),
    ("snappy", include_bytes!("testdata/orc_snappy.orc")),
    ("zstd", include_bytes!("testdata/orc_zstd.orc")),
];

#[test]
fn real_orc_files() {
    let expected = "id:int64?, name:string?, price:decimal(12,3)?, tags:list<int32>?, \
        attrs:map<string,double>?, day:date?, at:timestamp_tz?, local:timestamp?, \
        inner:struct<flag:boolean>?";
    for (codec, object) in REAL_ORC {
        let file = run("x.orc", object).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(render(&file.schema), expected, "{codec}");
        assert_eq!(file.row_count, Some(3), "{codec}");
        // Small probes: one more suffix read with the exact footer size.
        let limits = InferenceLimits { footer_probe_bytes: 300, ..InferenceLimits::default() };
        let (file, rounds) = run_with("x.orc", object, &limits);
        assert_eq!(render(&file.unwrap().schema), expected, "{codec}");
        assert!(rounds <= 2, "{codec}");
        // Under a name without extension, the head read reveals ORC.
        assert_eq!(run("x", object).unwrap().format, FileFormat::Orc);
    }
}

/// An Avro file written by fastavro 1.13.1 with the `bzip2` codec, which the apache-avro build
/// here cannot decode: the schema is still read from the header.
///
/// ```python
/// schema = {"type": "record", "name": "Row", "namespace": "ex", "fields": [
///   {"name": "id", "type": "long"},
///   {"name": "name", "type": ["null", "string"], "default": None},
///   {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
///   {"name": "tags", "type": {"type": "array", "items": "string"}}]}
/// fastavro.writer(buf, fastavro.parse_schema(schema), five_records, codec="bzip2")
/// ```
#[test]
fn avro_with_codec_we_do_not_decode() {
    let object = include_bytes!("testdata/avro_bzip2.avro");
    let file = run("r.avro", object).unwrap();
    assert_eq!(render(&file.schema), "id:int64, name:string?, at:timestamp_tz, tags:list<string>");
    assert_eq!(file.records_sampled, 5);
}

/// A Parquet file written by pyarrow 26.0.1 (snappy pages, 3-level lists, `key_value` maps,
/// UTC-adjusted timestamps, an embedded Arrow schema in the key-value metadata):
///
/// ```python
/// pq.write_table(pa.table({
///   "id": int64, "small": int16, "name": string, "price": decimal128(12,3),
///   "tags": list_(int32), "attrs": map_(string, float64), "day": date32,
///   "at": timestamp("us", tz="UTC"), "local": timestamp("ms"),
///   "inner": struct([("flag", bool_), ("pts", list_(struct([("x", float32)])))]),
///   "blob": binary}), "pyarrow.parquet", compression="snappy")   # 3 rows
/// ```
#[test]
fn real_parquet_file() {
    let object = include_bytes!("testdata/pyarrow.parquet");
    let file = run("p.parquet", object).unwrap();
    assert_eq!(
        render(&file.schema),
        "id:int64?, small:int32?, name:string?, price:decimal(12,3)?, tags:list<int32>?, \
         attrs:map<string,double>?, day:date?, at:timestamp_tz?, local:timestamp?, \
         inner:struct<flag:boolean,pts:list<struct<x:float>>>?, blob:binary?"
    );
    assert_eq!(file.row_count, Some(3));
}
