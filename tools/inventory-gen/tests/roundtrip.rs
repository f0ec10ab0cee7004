//! The generator's reports read back, through the domain's own readers, as exactly the
//! universe's current objects, in all three formats and both report kinds.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use inventory_gen::{Day, Delta, ReportFormat, ReportSpec, Universe};
use s3_connector_domain::inventory::{
    InventoryFormat, InventoryRecord, Manifest, csv, manifest, orc, parquet, reduce,
};

fn spec(format: ReportFormat, all_versions: bool) -> ReportSpec {
    ReportSpec {
        universe: Universe { seed: 42, objects: 3_000, delta: Delta::default(), source_bucket: "src".into() },
        format,
        files: 3,
        all_versions,
        destination_bucket: "dest".into(),
        prefix: "inv".into(),
        configuration_id: "daily".into(),
        rows_per_group: 500,
    }
}

/// Writes a report to memory and reads it back: (manifest, current objects by key).
fn read_back(spec: &ReportSpec, day: Day) -> (Manifest, BTreeMap<String, InventoryRecord>) {
    let files = Mutex::new(BTreeMap::new());
    let summary = spec
        .write(day, 2, &|key: &str, bytes: Vec<u8>| {
            files.lock().unwrap().insert(key.to_string(), bytes);
            Ok(())
        })
        .unwrap();
    let files = files.into_inner().unwrap();
    let manifest_bytes = &files[&summary.manifest_key];
    manifest::verify_checksum(manifest_bytes, &files[&summary.checksum_key]).unwrap();
    let parsed = Manifest::parse(manifest_bytes).unwrap();
    assert_eq!(parsed.files.len(), spec.files);
    let mut records = Vec::new();
    for file in &parsed.files {
        let bytes = &files[&file.key];
        file.verify(bytes).unwrap();
        let rows: Vec<_> = match parsed.file_format {
            InventoryFormat::Csv => {
                csv::read_verified_csv_gz(file, &bytes[..], &parsed.file_schema, 1 << 30).unwrap().collect()
            }
            InventoryFormat::Parquet => {
                parquet::read_parquet(&file.key, Bytes::from(bytes.clone())).unwrap().collect()
            }
            InventoryFormat::Orc => orc::read_orc(&file.key, Bytes::from(bytes.clone())).unwrap().collect(),
        };
        records.extend(rows.into_iter().map(|r| r.unwrap()));
    }
    assert_eq!(records.len() as u64, summary.rows);
    let current = reduce::current_objects(records).into_iter().map(|r| (r.key.clone(), r)).collect();
    (parsed, current)
}

#[test]
fn every_format_reads_back_as_the_universe() {
    let mut seen = Vec::new();
    for format in [ReportFormat::Csv, ReportFormat::Parquet, ReportFormat::Orc] {
        for all_versions in [false, true] {
            let spec = spec(format, all_versions);
            for day in [Day::One, Day::Two] {
                let (manifest, current) = read_back(&spec, day);
                assert_eq!(manifest.source_bucket, "src");
                let expected: BTreeMap<String, _> = spec
                    .universe
                    .index_range()
                    .filter_map(|i| spec.universe.current(i, day))
                    .map(|o| (o.key.clone(), o))
                    .collect();
                assert_eq!(current.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
                for (key, want) in &expected {
                    let got = &current[key];
                    assert_eq!(got.size, Some(want.size), "{key}");
                    assert_eq!(got.etag.as_deref(), Some(want.etag.as_str()), "{key}");
                    assert_eq!(got.last_modified_ms, Some(want.last_modified_ms), "{key}");
                    assert_eq!(got.storage_class.as_deref(), Some(want.storage_class), "{key}");
                    assert_eq!(
                        got.encryption_status.as_ref().map(|e| e.as_str()),
                        Some(want.encryption_status)
                    );
                    assert_eq!(got.bucket_key_enabled, Some(want.bucket_key_status == "ENABLED"));
                }
                seen.push((format, all_versions, day, current.len()));
            }
        }
    }
    assert_eq!(seen.len(), 12);
}

/// The done-when of issue 5: CSV, ORC and Parquet reports of the same objects (all-versions
/// too) give identical snapshots, object for object.
#[test]
fn csv_orc_and_parquet_reports_give_identical_snapshots() {
    use s3_connector_domain::inventory::snapshot::{
        SnapshotBuilder, SnapshotHeader, SnapshotObject, SnapshotReader,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut snapshots: Vec<(ReportFormat, bool, Vec<SnapshotObject>)> = Vec::new();
    for format in [ReportFormat::Csv, ReportFormat::Parquet, ReportFormat::Orc] {
        for all_versions in [false, true] {
            let spec = spec(format, all_versions);
            let files = Mutex::new(BTreeMap::new());
            let summary = spec
                .write(Day::Two, 1, &|key: &str, bytes: Vec<u8>| {
                    files.lock().unwrap().insert(key.to_string(), bytes);
                    Ok(())
                })
                .unwrap();
            let files = files.into_inner().unwrap();
            let parsed = Manifest::parse(&files[&summary.manifest_key]).unwrap();
            let header = SnapshotHeader {
                source_bucket: parsed.source_bucket.clone(),
                configuration_id: "daily".into(),
                report_timestamp_ms: parsed.creation_timestamp_ms,
            };
            let name = format!("{format:?}-{all_versions}");
            let spill = dir.path().join(&name);
            std::fs::create_dir_all(&spill).unwrap();
            // A small run length: the external sort spills and merges.
            let mut builder = SnapshotBuilder::new(header, &spill, 700);
            for file in &parsed.files {
                let bytes = Bytes::from(files[&file.key].clone());
                let rows: Box<dyn Iterator<Item = _>> = match parsed.file_format {
                    InventoryFormat::Csv => Box::new(
                        csv::read_verified_csv_gz(file, &bytes[..], &parsed.file_schema, 1 << 30)
                            .unwrap()
                            .collect::<Vec<_>>()
                            .into_iter(),
                    ),
                    InventoryFormat::Parquet => Box::new(parquet::read_parquet(&file.key, bytes).unwrap()),
                    InventoryFormat::Orc => Box::new(orc::read_orc(&file.key, bytes).unwrap()),
                };
                for row in rows {
                    builder.push(&row.unwrap()).unwrap();
                }
            }
            let info = builder.finish(&dir.path().join(format!("{name}.snap"))).unwrap();
            let objects: Vec<SnapshotObject> =
                SnapshotReader::open(&info.path).unwrap().map(|o| o.unwrap()).collect();
            assert_eq!(objects.len() as u64, info.object_count);
            snapshots.push((format, all_versions, objects));
        }
    }
    let (_, _, reference) = &snapshots[0];
    assert!(reference.len() > 2_900, "{}", reference.len());
    for (format, all_versions, objects) in &snapshots[1..] {
        assert!(objects == reference, "{format:?} all_versions={all_versions} differs from CSV current-only");
    }
}
