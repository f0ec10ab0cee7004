use super::heuristics::format_from_key;
use super::*;
use crate::model::{Compression, FileFormat, ObjectMeta};
use proptest::prelude::*;

fn obj(key: &str, size: u64) -> ObjectMeta {
    ObjectMeta { key: key.to_string(), size, last_modified_ms: None, etag: None, storage_class: None }
}

fn obj_at(key: &str, size: u64, ms: i64) -> ObjectMeta {
    ObjectMeta { last_modified_ms: Some(ms), ..obj(key, size) }
}

fn place(key: &str, cfg: &GroupingConfig) -> Placement {
    match classify("bkt", &obj(key, 10), cfg) {
        Classification::Data(p) => p,
        Classification::Junk(r) => panic!("{key} unexpectedly junk: {r:?}"),
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// key, expected prefix, format, compression, partitions, style.
type HeuristicCase = (
    &'static str,
    &'static str,
    FileFormat,
    Compression,
    &'static [(&'static str, &'static str)],
    PartitionStyle,
);
/// key, expected prefix, partitions, style.
type TemplateCase = (&'static str, &'static str, &'static [(&'static str, &'static str)], PartitionStyle);

#[test]
fn heuristic_placements() {
    use PartitionStyle::*;
    #[rustfmt::skip]
    let cases: &[HeuristicCase] = &[
        ("sales/region=us%20east/part-0.parquet", "sales/", FileFormat::Parquet, Compression::None, &[("region", "us east")], Hive),
        ("sales/dt=2024-01-31/region=eu/part-0.snappy.parquet", "sales/", FileFormat::Parquet, Compression::None, &[("dt", "2024-01-31"), ("region", "eu")], Hive),
        ("sales/k=a+b/x.csv", "sales/", FileFormat::Csv, Compression::None, &[("k", "a+b")], Hive),
        ("sales/k=%ff%fe/x.csv", "sales/", FileFormat::Csv, Compression::None, &[("k", "%ff%fe")], Hive),
        ("sales/k=%E2%82%AC/x.csv", "sales/", FileFormat::Csv, Compression::None, &[("k", "€")], Hive),
        ("sales/k=/x.csv", "sales/", FileFormat::Csv, Compression::None, &[("k", "")], Hive),
        ("sales/=v/x.csv", "sales/=v/", FileFormat::Csv, Compression::None, &[], None),
        ("events/2024/01/31/x.jsonl.gz", "events/", FileFormat::JsonLines, Compression::Gzip, &[("year", "2024"), ("month", "01"), ("day", "31")], DateFolders),
        ("events/2024/01/31/07/x.jsonl", "events/", FileFormat::JsonLines, Compression::None, &[("year", "2024"), ("month", "01"), ("day", "31"), ("hour", "07")], DateFolders),
        ("events/2024/01/x.avro", "events/", FileFormat::Avro, Compression::None, &[("year", "2024"), ("month", "01")], DateFolders),
        ("events/2024/x.avro", "events/2024/", FileFormat::Avro, Compression::None, &[], None),
        ("events/2024/13/x.avro", "events/2024/13/", FileFormat::Avro, Compression::None, &[], None),
        ("logs/2024-01-31/x.csv", "logs/", FileFormat::Csv, Compression::None, &[("date", "2024-01-31")], DateFolders),
        ("logs/2024-13-31/x.csv", "logs/2024-13-31/", FileFormat::Csv, Compression::None, &[], None),
        ("a/b/2024/02/29/raw/x.orc", "a/b/", FileFormat::Orc, Compression::None, &[("year", "2024"), ("month", "02"), ("day", "29")], DateFolders),
        ("t/region=eu/2024/05/x.tsv.zst", "t/", FileFormat::Tsv, Compression::Zstd, &[("region", "eu"), ("year", "2024"), ("month", "05")], Hive),
        ("year=2024/part.parquet", "", FileFormat::Parquet, Compression::None, &[("year", "2024")], Hive),
        ("2024/01/31/x.json", "", FileFormat::Json, Compression::None, &[("year", "2024"), ("month", "01"), ("day", "31")], DateFolders),
        ("top.csv", "", FileFormat::Csv, Compression::None, &[], None),
        ("a/b/c/data.psv.bz2", "a/b/c/", FileFormat::Psv, Compression::Bzip2, &[], None),
        ("a/README", "a/", FileFormat::Unknown, Compression::None, &[], None),
        ("a//x.csv", "a//", FileFormat::Csv, Compression::None, &[], None),
    ];
    let cfg = GroupingConfig::default();
    for (key, prefix, format, compression, parts, style) in cases {
        let p = place(key, &cfg);
        assert_eq!(p.dataset, DatasetKey { prefix: prefix.to_string(), format: *format }, "{key}");
        assert_eq!(p.compression, *compression, "{key}");
        assert_eq!(p.partitions, pairs(parts), "{key}");
        assert_eq!(p.style, *style, "{key}");
    }
}

#[test]
fn format_from_key_table() {
    let cases = [
        ("x.csv", FileFormat::Csv, Compression::None),
        ("x.CSV.GZ", FileFormat::Csv, Compression::Gzip),
        ("x.ndjson", FileFormat::JsonLines, Compression::None),
        ("x.parquet", FileFormat::Parquet, Compression::None),
        ("x.orc", FileFormat::Orc, Compression::None),
        ("x.gz", FileFormat::Unknown, Compression::Gzip),
        ("noext", FileFormat::Unknown, Compression::None),
        ("dir.csv/noext", FileFormat::Unknown, Compression::None),
    ];
    for (key, format, compression) in cases {
        assert_eq!(format_from_key(key), (format, compression), "{key}");
    }
}

/// The format and compression of a file name as the suffix table gave them before the
/// extension match: the oracle for [`heuristics::format_from_file`].
fn format_by_suffix_table(file: &str) -> (FileFormat, Compression) {
    let strip = |s: &str, suffix: &str| {
        let at = s.len().checked_sub(suffix.len())?;
        s.as_bytes()[at..].eq_ignore_ascii_case(suffix.as_bytes()).then(|| s[..at].to_string())
    };
    let compressions = [
        (".gz", Compression::Gzip),
        (".gzip", Compression::Gzip),
        (".zst", Compression::Zstd),
        (".zstd", Compression::Zstd),
        (".bz2", Compression::Bzip2),
    ];
    let formats = [
        ("csv", FileFormat::Csv),
        ("tsv", FileFormat::Tsv),
        ("tab", FileFormat::Tsv),
        ("psv", FileFormat::Psv),
        ("jsonl", FileFormat::JsonLines),
        ("ndjson", FileFormat::JsonLines),
        ("json", FileFormat::Json),
        ("parquet", FileFormat::Parquet),
        ("parq", FileFormat::Parquet),
        ("pq", FileFormat::Parquet),
        ("avro", FileFormat::Avro),
        ("orc", FileFormat::Orc),
    ];
    let (stem, compression) = compressions
        .iter()
        .find_map(|(ext, c)| strip(file, ext).map(|stem| (stem, *c)))
        .unwrap_or((file.to_string(), Compression::None));
    let format = stem
        .rsplit_once('.')
        .and_then(|(_, ext)| formats.iter().find(|(name, _)| ext.eq_ignore_ascii_case(name)))
        .map_or(FileFormat::Unknown, |(_, format)| *format);
    (format, compression)
}

proptest! {
    /// The extension match gives what the suffix table gives, for names built from the known
    /// extensions in any case, other extensions, dots and non-ASCII text.
    #[test]
    fn file_formats_match_the_suffix_table(
        parts in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(vec![
                    "csv", "tsv", "tab", "psv", "jsonl", "ndjson", "json", "parquet", "parq", "pq",
                    "avro", "orc", "gz", "gzip", "zst", "zstd", "bz2", "crc", "snappy", "",
                ]).prop_map(str::to_string),
                "[a-zA-Z\u{e9}\u{212a}]{0,9}",
            ],
            0..4,
        ),
        upper in any::<bool>(),
    ) {
        let file = parts.join(".");
        let file = if upper { file.to_uppercase() } else { file };
        prop_assert_eq!(heuristics::format_from_file(&file), format_by_suffix_table(&file), "{}", file);
    }
}

#[test]
fn junk_rules() {
    use JunkReason::*;
    let cases: &[(&str, u64, Option<JunkReason>)] = &[
        ("sales/_SUCCESS", 0, Some(SuccessMarker)),
        ("sales/_started_123", 5, Some(SuccessMarker)),
        ("sales/_committed_123", 5, Some(SuccessMarker)),
        ("sales_$folder$", 0, Some(FolderMarker)),
        ("sales/", 0, Some(FolderMarker)),
        ("sales/sub/", 7, Some(FolderMarker)),
        ("", 0, Some(FolderMarker)),
        ("sales/x.csv.crc", 12, Some(Checksum)),
        ("sales/X.CSV.CRC", 12, Some(Checksum)),
        ("sales/\u{e9}\u{e9}", 12, None),
        ("sales/.hidden/_temporary/part-0.csv", 12, Some(Temporary)),
        ("sales/.x.crc", 12, Some(Checksum)),
        ("sales/_temporary/0/part-0.csv", 12, Some(Temporary)),
        ("sales/.spark-staging-42/part-0.csv", 12, Some(Temporary)),
        ("sales/_spark_metadata/0", 12, Some(Temporary)),
        ("sales/.hidden/part-0.csv", 12, Some(Hidden)),
        (".git/config", 12, Some(Hidden)),
        ("sales/.part-0.csv", 12, Some(Hidden)),
        ("sales/_metadata", 12, Some(Hidden)),
        ("sales/part-0.csv", 0, Some(ZeroByte)),
        ("sales/part-0.csv", 1, None),
        ("sales/_dir/part-0.csv", 1, None),
        ("sales/a.b/part-0.csv", 1, None),
    ];
    let cfg = GroupingConfig::default();
    for (key, size, expected) in cases {
        let got = match classify("bkt", &obj(key, *size), &cfg) {
            Classification::Junk(r) => Some(r),
            Classification::Data(_) => None,
        };
        assert_eq!(got, *expected, "{key}");
        // The split form the placer uses (file, then folder once per folder) agrees.
        let (folder, file) = key.rfind('/').map_or(("", *key), |i| key.split_at(i + 1));
        let split = junk::junk_file(key, file, *size) || junk::junk_folder(folder);
        assert_eq!(split, expected.is_some(), "{key}");
    }
    let names: Vec<&str> = JunkReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "success_marker",
            "folder_marker",
            "checksum",
            "temporary",
            "hidden",
            "zero_byte",
            "encryption_instructions"
        ]
    );
}

#[test]
fn display_names() {
    let key = |p: &str| DatasetKey { prefix: p.to_string(), format: FileFormat::Csv };
    assert_eq!(key("").display_name("bkt"), "bkt");
    assert_eq!(key("sales/").display_name("bkt"), "sales");
    assert_eq!(key("a/b/orders/").display_name("bkt"), "orders");
}

#[test]
fn templates_override_heuristics_and_only_match_their_keys() {
    let cfg = GroupingConfig {
        templates: vec![
            PathTemplate::parse("s3://bkt/warehouse/{table}/{year}/{month}/*").unwrap(),
            PathTemplate::parse("s3://*/{table}/{partition_key}={partition_value}/*").unwrap(),
            PathTemplate::parse("s3://other/{table}/*").unwrap(),
        ],
        ..GroupingConfig::default()
    };
    let cases: &[TemplateCase] = &[
        // The heuristics would not take "2024/7" (single-digit month) for a date.
        (
            "warehouse/orders/2024/7/part-0.parquet",
            "warehouse/orders/",
            &[("year", "2024"), ("month", "7")],
            PartitionStyle::Template,
        ),
        (
            "warehouse/orders/2024/07/deep/er/part-0.parquet",
            "warehouse/orders/",
            &[("year", "2024"), ("month", "07")],
            PartitionStyle::Template,
        ),
        ("sales/region=us%20east/x.parquet", "sales/", &[("region", "us east")], PartitionStyle::Template),
        // Too short for the first template and not Hive for the second: heuristics.
        ("warehouse/orders/x.parquet", "warehouse/orders/", &[], PartitionStyle::None),
        ("sales/plain/x.parquet", "sales/plain/", &[], PartitionStyle::None),
        // The third template is for another bucket.
        ("misc/sub/x.parquet", "misc/sub/", &[], PartitionStyle::None),
    ];
    for (key, prefix, parts, style) in cases {
        let p = place(key, &cfg);
        assert_eq!(p.dataset.prefix, *prefix, "{key}");
        assert_eq!(p.partitions, pairs(parts), "{key}");
        assert_eq!(p.style, *style, "{key}");
    }
    // Junk stays junk even where a template matches.
    assert_eq!(
        classify("bkt", &obj("warehouse/orders/2024/07/_SUCCESS", 0), &cfg),
        Classification::Junk(JunkReason::SuccessMarker)
    );
}

#[test]
fn template_without_wildcard_or_table() {
    let t = PathTemplate::parse("s3://bkt/raw/{source}/{day}").unwrap();
    let p = t.place("bkt", "raw/crm/d1/x.csv").unwrap();
    assert_eq!(p.dataset.prefix, "raw/");
    assert_eq!(p.partitions, pairs(&[("source", "crm"), ("day", "d1")]));
    assert!(t.place("bkt", "raw/crm/d1/deeper/x.csv").is_none());
    assert!(t.place("bkt", "raw/crm/x.csv").is_none());
    assert!(t.place("bkt", "raw//d1/x.csv").is_none());
    assert!(t.place("nope", "raw/crm/d1/x.csv").is_none());
    let t = PathTemplate::parse("s3://bkt/static/path/*").unwrap();
    assert_eq!(t.place("bkt", "static/path/a/b.csv").unwrap().dataset.prefix, "static/path/");
    assert!(t.place("bkt", "static/path").is_none());
    assert_eq!(t.to_string(), "s3://bkt/static/path/*");
    assert_eq!("s3://bkt/static/path/*".parse::<PathTemplate>(), Ok(t));
}

#[test]
fn template_parse_errors() {
    let cases: &[(&str, &str)] = &[
        ("bkt/{table}/*", "MissingScheme"),
        ("s3:///{table}/*", "InvalidBucket"),
        ("s3://b{x}/{table}/*", "InvalidBucket"),
        ("s3://bk*/{table}/*", "InvalidBucket"),
        ("s3://bkt", "EmptyPath"),
        ("s3://bkt/", "EmptyPath"),
        ("s3://bkt/{table}//*", "EmptySegment"),
        ("s3://bkt/{table}/", "EmptySegment"),
        ("s3://bkt/pre{table}/*", "InvalidSegment"),
        ("s3://bkt/{{table}}/*", "InvalidSegment"),
        ("s3://bkt/a*b/*", "InvalidSegment"),
        ("s3://bkt/{}/*", "InvalidName"),
        ("s3://bkt/{a-b}/*", "InvalidName"),
        ("s3://bkt/{table}/{table}/*", "DuplicateTable"),
        ("s3://bkt/{dt}/{table}/*", "TableAfterPartition"),
        ("s3://bkt/*/{table}", "WildcardNotLast"),
        ("s3://bkt/{table}/{dt}/{dt}/*", "DuplicatePartition"),
    ];
    for (template, variant) in cases {
        let err = PathTemplate::parse(template).expect_err(template);
        assert!(format!("{err:?}").starts_with(variant), "{template}: {err:?}");
        assert!(err.to_string().contains(template), "{template}: message names it: {err}");
    }
}

fn aggregate_of(objects: &[ObjectMeta]) -> Vec<DatasetAggregate> {
    let mut g = Grouper::new("bkt", GroupingConfig::default());
    for o in objects {
        g.add(o.clone());
    }
    g.take_all()
}

#[test]
fn siblings_and_mixed_formats() {
    let datasets = aggregate_of(&[
        obj("sales/a.csv", 1),
        obj("sales/b.csv.gz", 2),
        obj("sales/c.parquet", 3),
        obj("sales/notes", 4),
        obj("sales/more", 5),
        obj("other/a.csv", 6),
    ]);
    let summary: Vec<(&str, FileFormat, u64, u64)> = datasets
        .iter()
        .map(|d| (d.key().prefix.as_str(), d.key().format, d.file_count(), d.total_bytes()))
        .collect();
    assert_eq!(
        summary,
        [
            ("other/", FileFormat::Csv, 1, 6),
            ("sales/", FileFormat::Csv, 2, 3),
            ("sales/", FileFormat::Parquet, 1, 3),
            ("sales/", FileFormat::Unknown, 2, 9),
        ]
    );
    let csv = &datasets[1];
    assert_eq!(csv.name(), "sales");
    assert_eq!(
        csv.compressions().iter().map(|(c, n)| (*c, *n)).collect::<Vec<_>>(),
        [(Compression::None, 1), (Compression::Gzip, 1)]
    );
}

#[test]
fn top_level_partitions_form_the_root_dataset() {
    let datasets = aggregate_of(&[obj("year=2023/a.parquet", 1), obj("year=2024/b.parquet", 1)]);
    assert_eq!(datasets.len(), 1);
    assert_eq!(datasets[0].key().prefix, "");
    assert_eq!(datasets[0].name(), "bkt");
    assert_eq!(datasets[0].partition_count(), 2);
    assert_eq!(datasets[0].partition_style(), PartitionStyle::Hive);
}

#[test]
fn partition_stats() {
    let datasets = aggregate_of(&[
        obj_at("t/n=9/dt=2024-01-02/a.csv", 1, 50),
        obj_at("t/n=10/dt=2024-01-01/a.csv", 1, 10),
        obj_at("t/n=10/dt=2024-01-02/b.csv", 1, 30),
        obj_at("t/n=-3/dt=2023-12-31/a.csv", 1, 20),
        obj("t/n=10/dt=2023-12-31/c.csv", 1),
        obj("t/x.csv", 1),
    ]);
    assert_eq!(datasets.len(), 1);
    let d = &datasets[0];
    let stats = d.partitions();
    let expect = |key: &str, distinct: u64, min: &str, max: &str| PartitionKeyStats {
        key: key.to_string(),
        distinct_values: distinct,
        min: min.to_string(),
        max: max.to_string(),
    };
    // "n" is numeric: 10 > 9 although "10" < "9" lexically.
    assert_eq!(stats, [expect("n", 3, "-3", "10"), expect("dt", 3, "2023-12-31", "2024-01-02")]);
    // Tuples: (9,01-02) (10,01-01) (10,01-02) (-3,12-31) (10,12-31) and the unpartitioned file.
    assert_eq!(d.partition_count(), 6);
    assert_eq!(d.min_last_modified_ms(), Some(10));
    assert_eq!(d.max_last_modified_ms(), Some(50));
    assert_eq!(d.file_count(), 6);
}

#[test]
fn mixed_numeric_and_text_values_compare_lexically() {
    let d = &aggregate_of(&[obj("t/v=10/a.csv", 1), obj("t/v=9/a.csv", 1), obj("t/v=x/a.csv", 1)])[0];
    assert_eq!(d.partitions()[0].min, "10");
    assert_eq!(d.partitions()[0].max, "x");
}

fn partition_of(key: &str) -> String {
    key.split('/').filter(|s| s.contains('=')).collect::<Vec<_>>().join("/")
}

#[test]
fn candidates_are_deterministic_spread_and_disjoint() {
    let mut objects = Vec::new();
    for day in 1..=20 {
        for file in 0..50 {
            objects.push(obj(&format!("t/dt=2024-01-{day:02}/part-{file}.parquet"), 100 + file));
        }
    }
    let a = &aggregate_of(&objects)[0];
    objects.reverse();
    let b = &aggregate_of(&objects)[0];
    assert_eq!(a.schema_candidates(), b.schema_candidates());
    assert_eq!(a.encryption_probe_candidates(), b.encryption_probe_candidates());

    let schema = a.schema_candidates();
    let probes = a.encryption_probe_candidates();
    assert_eq!(schema.len(), DEFAULT_SCHEMA_CANDIDATES);
    assert_eq!(probes.len(), DEFAULT_ENCRYPTION_PROBES);
    // Every candidate from a different partition: 12 candidates, 20 partitions.
    let mut parts: Vec<String> = schema.iter().chain(&probes).map(|o| partition_of(&o.key)).collect();
    parts.sort();
    parts.dedup();
    assert_eq!(parts.len(), 12);
    assert!(schema.iter().all(|s| !probes.iter().any(|p| p.key == s.key)));
}

#[test]
fn first_two_candidates_differ_in_partition_even_when_one_partition_dominates() {
    let mut objects: Vec<ObjectMeta> = (0..1000).map(|i| obj(&format!("t/p=big/{i}.csv"), 10)).collect();
    objects.push(obj("t/p=small/only.csv", 10));
    let d = &aggregate_of(&objects)[0];
    let schema = d.schema_candidates();
    assert_eq!(schema.len(), 4);
    assert_ne!(partition_of(&schema[0].key), partition_of(&schema[1].key));
    assert!(schema.iter().any(|o| o.key == "t/p=small/only.csv"));
}

#[test]
fn small_datasets_share_candidates() {
    let d = &aggregate_of(&[obj("t/a.csv", 1), obj("t/b.csv", 2), obj("t/c.csv", 3)])[0];
    assert_eq!(d.schema_candidates().len(), 3);
    // Not enough objects to be disjoint: the probes reuse the schema candidates.
    assert_eq!(d.encryption_probe_candidates().len(), 3);
}

#[test]
fn zero_byte_objects_are_never_candidates() {
    let mut d = DatasetAggregate::new("bkt", DatasetKey { prefix: "t/".into(), format: FileFormat::Csv });
    let placement = place("t/a.csv", &GroupingConfig::default());
    d.add(&obj("t/a.csv", 0), &placement);
    assert_eq!(d.file_count(), 1);
    assert!(d.schema_candidates().is_empty());
    assert!(d.encryption_probe_candidates().is_empty());
}

#[test]
fn take_complete_under_semantics() {
    let mut g = Grouper::new("bkt", GroupingConfig::default());
    for key in [
        "year=2024/a.parquet",       // root "" spans every shard
        "sales/year=2024/a.parquet", // root "sales/" lies in shard "sales/"
        "sales/eu/a.csv",            // root "sales/eu/"
        "salesforce/a.csv",          // root "salesforce/" is not under "sales/"
        "top.csv",                   // root ""
        "sales/_SUCCESS",            // junk
    ] {
        g.add(obj(key, 5));
    }
    let taken: Vec<String> = g.take_complete_under("sales/").iter().map(|d| d.key().prefix.clone()).collect();
    assert_eq!(taken, ["sales/", "sales/eu/"]);
    assert!(g.take_complete_under("sales/").is_empty());
    let rest: Vec<String> =
        g.take_all().iter().map(|d| format!("{}|{}", d.key().prefix, d.key().format)).collect();
    assert_eq!(rest, ["|csv", "|parquet", "salesforce/|csv"]);
    let t = g.tally();
    assert_eq!((t.object_count, t.data_objects, t.junk_objects()), (6, 5, 1));
    assert_eq!((t.total_bytes, t.junk_bytes, t.data_bytes), (30, 5, 25));
    assert_eq!(t.junk.get(&JunkReason::SuccessMarker), Some(&1));
}

#[test]
fn take_complete_under_with_templates_and_empty_shard() {
    let mut g = Grouper::new(
        "bkt",
        GroupingConfig {
            templates: vec![PathTemplate::parse("s3://*/lake/{table}/{dt}/*").unwrap()],
            ..GroupingConfig::default()
        },
    );
    g.add(obj("lake/orders/2024/a.csv", 1));
    g.add(obj("lake/users/2024/a.csv", 1));
    assert_eq!(g.take_complete_under("lake/orders/").len(), 1);
    assert_eq!(g.open_datasets(), 1);
    assert_eq!(g.take_complete_under("").len(), 1);
    assert_eq!(g.open_datasets(), 0);
}

#[test]
fn memory_stays_bounded_for_100k_objects() {
    let mut g = Grouper::new("bkt", GroupingConfig::default());
    for i in 0..100_000u64 {
        g.add(obj(&format!("t/dt=2024-01-{:02}/h={}/part-{i}.parquet", i % 28 + 1, i % 24), 1 + i % 7));
    }
    let datasets = g.take_all();
    assert_eq!(datasets.len(), 1);
    let d = &datasets[0];
    assert_eq!(d.file_count(), 100_000);
    assert_eq!(d.schema_candidates().len(), 4);
    assert_eq!(d.encryption_probe_candidates().len(), 8);
    assert!(d.retained_objects() <= 2 * (DEFAULT_SCHEMA_CANDIDATES + DEFAULT_ENCRYPTION_PROBES));
    // (i % 28, i % 24) repeats every lcm(28, 24) = 168 objects.
    assert_eq!(d.partition_count(), 168);
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just("dt=2024-01-01".to_string()),
                Just("2024".to_string()),
                Just("01".to_string()),
                Just("k=%zz".to_string()),
                Just("_temporary".to_string()),
                Just(".x".to_string()),
                Just("".to_string()),
                "[a-z=%.0-9_€]{0,6}",
            ],
            0..8,
        )
        .prop_map(|segs| segs.join("/")),
    ]
}

proptest! {
    #[test]
    fn classify_never_panics(key in arb_key(), size in any::<u64>()) {
        let cfg = GroupingConfig {
            templates: vec![
                PathTemplate::parse("s3://*/{table}/{partition_key}={partition_value}/*").unwrap(),
                PathTemplate::parse("s3://bkt/{table}/{a}/{b}").unwrap(),
            ],
            ..GroupingConfig::default()
        };
        let o = obj(&key, size);
        if let Classification::Data(p) = classify("bkt", &o, &cfg) {
            prop_assert!(key.starts_with(&p.dataset.prefix));
            prop_assert!(p.dataset.prefix.is_empty() || p.dataset.prefix.ends_with('/'));
            let _ = p.dataset.display_name("bkt");
        }
    }

    #[test]
    fn template_parse_never_panics(s in any::<String>(), tail in "[{}a-z*=/_]{0,20}") {
        let _ = PathTemplate::parse(&s);
        if let Ok(t) = PathTemplate::parse(&format!("s3://b/{tail}")) {
            let _ = t.place("b", &s);
        }
    }

    #[test]
    fn aggregate_is_independent_of_arrival_order(
        files in proptest::collection::vec(("[a-p]{1,2}", "[0-3]", 1u64..1000, 0i64..100), 1..80),
        seed in any::<u64>(),
    ) {
        let objects: Vec<ObjectMeta> = files
            .iter()
            .enumerate()
            .map(|(i, (p, q, size, ms))| obj_at(&format!("t/p={p}/{q}/f{i}.csv"), *size, *ms))
            .collect();
        let mut shuffled = objects.clone();
        // A deterministic permutation driven by the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(aggregate_of(&objects), aggregate_of(&shuffled));
        let a = &aggregate_of(&objects)[0];
        let b = &aggregate_of(&shuffled)[0];
        prop_assert_eq!(a.schema_candidates(), b.schema_candidates());
        prop_assert_eq!(a.encryption_probe_candidates(), b.encryption_probe_candidates());
        prop_assert_eq!(a.partitions(), b.partitions());
    }
}

#[test]
fn partition_style_is_the_most_specific_seen() {
    let d = &aggregate_of(&[obj("t/a.csv", 1), obj("t/2024/01/b.csv", 1), obj("t/k=v/c.csv", 1)])[0];
    assert_eq!(d.partition_style(), PartitionStyle::Hive);
    assert_eq!(d.partition_styles().values().sum::<u64>(), 3);
    assert_eq!(PartitionStyle::DateFolders.as_str(), "date_folders");
}

fn arb_listing() -> impl Strategy<Value = Vec<String>> {
    let segment = prop_oneof![
        Just("sales".to_string()),
        Just("salesforce".to_string()),
        Just("year=2024".to_string()),
        Just("2024".to_string()),
        Just("01".to_string()),
        Just("eu".to_string()),
        Just("_temporary".to_string()),
    ];
    let file = prop_oneof![Just("a.csv"), Just("b.parquet"), Just("c.csv.gz"), Just("_SUCCESS"), Just("d")];
    proptest::collection::vec(
        (proptest::collection::vec(segment, 0..4), file, 1u64..100).prop_map(|(dirs, file, n)| {
            let mut key = dirs.join("/");
            if !key.is_empty() {
                key.push('/');
            }
            format!("{key}{n}{file}")
        }),
        0..40,
    )
}

proptest! {
    /// Taking datasets shard by shard, as a sharded listing would, yields exactly what one
    /// pass over the whole bucket yields: nothing is taken before its last object arrived.
    #[test]
    fn sharded_takes_equal_a_single_pass(mut keys in arb_listing()) {
        keys.sort();
        keys.dedup();
        let cfg = GroupingConfig {
            templates: vec![PathTemplate::parse("s3://*/sales/{table}/{year}/*").unwrap()],
            ..GroupingConfig::default()
        };
        let mut single = Grouper::new("bkt", cfg.clone());
        for k in &keys {
            single.add(obj(k, 3));
        }
        let expected = single.take_all();

        let mut sharded = Grouper::new("bkt", cfg);
        let mut got = Vec::new();
        let mut shard: Option<String> = None;
        for k in &keys {
            let this = k.split_once('/').map(|(first, _)| format!("{first}/"));
            if this != shard {
                if let Some(done) = shard.take() {
                    got.extend(sharded.take_complete_under(&done));
                }
                shard = this;
            }
            sharded.add(obj(k, 3));
        }
        if let Some(done) = shard {
            got.extend(sharded.take_complete_under(&done));
        }
        got.extend(sharded.take_all());
        got.sort_by(|a, b| a.key().cmp(b.key()));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(sharded.tally(), single.tally());
    }
}

proptest! {
    /// Both per-folder caches answer exactly as `classify`: the inventory diff's placer (the
    /// dataset) and the grouper's classifier (placement or junk reason), for keys in order (as
    /// a snapshot streams them) and out of order, with and without templates.
    #[test]
    fn folder_caches_agree_with_classify(
        mut keys in proptest::collection::vec(
            (
                "(/|t/|logs/|sales/|a b/|%2F/)?((region=eu|dt=2024-01-0[12]|2024/01/0[12]|_temporary|\\.hidden)/){0,3}",
                "(part-0|data|_SUCCESS|x\\.crc|\\.dot|f)(\\.csv|\\.parquet|\\.json\\.gz|\\.csv\\.zst|\\.avro|_\\$folder\\$)?",
                0u64..3,
            ),
            0..40,
        ),
        sorted in any::<bool>(),
        with_template in any::<bool>(),
    ) {
        if sorted {
            keys.sort();
        }
        let mut cfg = GroupingConfig::default();
        if with_template {
            cfg.templates.push(PathTemplate::parse("s3://bkt/sales/{table}/*").unwrap());
        }
        let mut placer = DatasetPlacer::default();
        let mut classifier = FolderClassifier::default();
        for (dir, name, size) in &keys {
            let object = obj(&format!("{dir}{name}"), *size);
            let expected = classify("bkt", &object, &cfg);
            let dataset = match &expected {
                Classification::Data(placement) => Some(placement.dataset.clone()),
                Classification::Junk(_) => None,
            };
            prop_assert_eq!(placer.dataset("bkt", &object.key, *size, &cfg), dataset, "{}", object.key);
            let cached = match classifier.classify("bkt", &object, &cfg) {
                Ok(placement) => Classification::Data(placement.clone()),
                Err(reason) => Classification::Junk(reason),
            };
            prop_assert_eq!(cached, expected, "{}", object.key);
        }
    }
}

#[test]
fn the_folder_classifier_tells_a_root_file_from_one_under_a_bare_slash() {
    let cfg = GroupingConfig::default();
    let mut classifier = FolderClassifier::default();
    for key in ["/part-0.csv", "part-0.csv", "/part-1.csv", "a/b.csv", "a/_temporary/c.csv", "a/d.csv"] {
        let object = obj(key, 1);
        let cached = classifier.classify("bkt", &object, &cfg).cloned();
        let expected = match classify("bkt", &object, &cfg) {
            Classification::Data(placement) => Ok(placement),
            Classification::Junk(reason) => Err(reason),
        };
        assert_eq!(cached, expected, "{key}");
    }
}

#[test]
fn schema_candidates_start_with_the_newest_and_oldest_objects_whatever_the_listing_order() {
    // 500 objects written over 500 seconds; the key order is not the time order.
    let mut objects: Vec<ObjectMeta> = (0..500i64)
        .map(|i| obj_at(&format!("t/part-{:03}.csv", (i * 7) % 500), 10, 1_000 * (i + 1)))
        .collect();
    // A tie at the newest time: the greater key is the newest.
    objects.push(obj_at("t/part-zz-late.csv", 10, 500_000));
    let key = DatasetKey { prefix: "t/".into(), format: FileFormat::Csv };
    let build = |objects: &[ObjectMeta]| {
        let mut d = DatasetAggregate::with_limits("bkt", key.clone(), 4, 2);
        for o in objects {
            d.add(o, &place(&o.key, &GroupingConfig::default()));
        }
        d
    };
    let forward = build(&objects);
    objects.reverse();
    let backward = build(&objects);
    let schema: Vec<String> = forward.schema_candidates().into_iter().map(|o| o.key).collect();
    assert_eq!(schema.len(), 4);
    assert_eq!(schema[..2], ["t/part-zz-late.csv", "t/part-000.csv"], "newest, then oldest");
    assert_eq!(forward.schema_candidates(), backward.schema_candidates());
    assert_eq!(forward.encryption_probe_candidates(), backward.encryption_probe_candidates());
    // Probes are other objects, all distinct.
    let probes = forward.encryption_probe_candidates();
    assert_eq!(probes.len(), 2);
    assert!(probes.iter().all(|p| !schema.contains(&p.key)), "{probes:?}");
    assert_ne!(probes[0].key, probes[1].key);
    assert!(forward.retained_objects() <= 2 * 6 + 2);
}

#[test]
fn a_single_object_is_read_and_probed() {
    let key = DatasetKey { prefix: "t/".into(), format: FileFormat::Csv };
    let mut d = DatasetAggregate::with_limits("bkt", key, 4, 4);
    d.add(&obj_at("t/a.csv", 5, 7), &place("t/a.csv", &GroupingConfig::default()));
    assert_eq!(d.schema_candidates().len(), 1);
    let probes = d.encryption_probe_candidates();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].key, "t/a.csv");
}
