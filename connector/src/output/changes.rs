//! Conversion of incremental changes into the versioned `ChangeRecord`s of the contract.
//!
//! The CLI writes them as JSON Lines (proto3 JSON), `ExtractIncremental` streams them: one
//! conversion for both, as for extraction records.

use s3_connector_domain::inventory::snapshot::{
    DatasetChange, DatasetChangeKind, ObjectChange, SnapshotObject,
};
use s3_connector_proto::v1 as pb;

use super::records::SCHEMA_VERSION;

fn timestamp(ms: Option<i64>) -> Option<pbjson_types::Timestamp> {
    ms.map(|ms| pbjson_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// Wraps a change.
pub fn envelope(run_id: &str, record: pb::change_record::Record) -> pb::ChangeRecord {
    pb::ChangeRecord {
        schema_version: SCHEMA_VERSION.into(),
        run_id: run_id.to_string(),
        record: Some(record),
    }
}

fn object_fields(kind: &str, bucket: &str, now: &SnapshotObject, removed: bool) -> pb::ObjectChange {
    pb::ObjectChange {
        kind: kind.to_string(),
        bucket: bucket.to_string(),
        key: now.key.clone(),
        size: if removed { 0 } else { now.size.unwrap_or(0) },
        etag: if removed { String::new() } else { now.etag.clone().unwrap_or_default() },
        last_modified: if removed { None } else { timestamp(now.last_modified_ms) },
        storage_class: if removed { String::new() } else { now.storage_class.clone().unwrap_or_default() },
        encryption_status: if removed {
            String::new()
        } else {
            now.encryption_status.as_ref().map(|s| s.as_str().to_string()).unwrap_or_default()
        },
        bucket_key_enabled: !removed && now.bucket_key_enabled == Some(true),
        changed_fields: Vec::new(),
        dataset_prefix: String::new(),
    }
}

/// An object change as a record; `dataset_prefix` is the dataset the object belongs to (empty
/// for junk). A removed object carries only its key.
pub fn object_change(bucket: &str, change: &ObjectChange, dataset_prefix: Option<&str>) -> pb::ObjectChange {
    let mut record = match change {
        ObjectChange::Added(obj) => object_fields("ADDED", bucket, obj, false),
        ObjectChange::Removed(obj) => object_fields("REMOVED", bucket, obj, true),
        ObjectChange::Changed { new, fields, .. } => {
            let mut r = object_fields("CHANGED", bucket, new, false);
            r.changed_fields = fields.iter().map(|f| f.as_str().to_string()).collect();
            r
        }
    };
    record.dataset_prefix = dataset_prefix.unwrap_or_default().to_string();
    record
}

/// What changed in a dataset, as `changed_aspects` values.
pub fn changed_aspects(change: &DatasetChange) -> Vec<String> {
    let mut aspects = Vec::new();
    if change.objects_added > 0 || change.objects_removed > 0 {
        aspects.push("OBJECTS");
    }
    if change.bytes_delta() != 0 {
        aspects.push("BYTES");
    }
    if change.before.encryption != change.after.encryption {
        aspects.push("ENCRYPTION");
    }
    aspects.into_iter().map(String::from).collect()
}

/// A dataset change as a record. `dataset` is the dataset as it is now (`None` for a removed
/// dataset); when no re-inferred record is given, one is made from the snapshot's totals.
pub fn dataset_change(
    bucket: &str,
    change: &DatasetChange,
    dataset: Option<pb::DatasetRecord>,
) -> pb::DatasetChange {
    let prefix = change.dataset.prefix.clone();
    let dataset = match change.kind {
        DatasetChangeKind::Removed => None,
        _ => Some(dataset.unwrap_or_else(|| pb::DatasetRecord {
            bucket: bucket.to_string(),
            prefix: prefix.clone(),
            name: change.name.clone(),
            uri: format!("s3://{bucket}/{prefix}"),
            format: change.dataset.format.as_str().to_string(),
            file_count: change.after.objects,
            total_bytes: change.after.bytes,
            ..Default::default()
        })),
    };
    pb::DatasetChange {
        kind: change.kind.as_str().to_string(),
        bucket: bucket.to_string(),
        prefix,
        dataset,
        changed_aspects: if change.kind == DatasetChangeKind::Changed {
            changed_aspects(change)
        } else {
            Vec::new()
        },
        objects_added: change.objects_added,
        objects_removed: change.objects_removed,
        objects_changed: change.objects_changed,
        bytes_delta: i64::try_from(change.bytes_delta()).unwrap_or(if change.bytes_delta() < 0 {
            i64::MIN
        } else {
            i64::MAX
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3_connector_domain::inventory::EncryptionStatus;
    use s3_connector_domain::inventory::snapshot::ChangedFields;

    fn obj(key: &str, size: u64, status: EncryptionStatus) -> SnapshotObject {
        SnapshotObject {
            key: key.into(),
            size: Some(size),
            etag: Some("e".into()),
            last_modified_ms: Some(1_500),
            storage_class: Some("STANDARD".into()),
            encryption_status: Some(status),
            bucket_key_enabled: Some(true),
        }
    }

    #[test]
    fn object_changes_carry_the_current_fields_and_what_changed() {
        let old = obj("a b+c%.csv", 1, EncryptionStatus::SseS3);
        let new = obj("a b+c%.csv", 1, EncryptionStatus::SseKms);
        let fields = ChangedFields::between(&old, &new);
        let r = object_change("src", &ObjectChange::Changed { old, new: new.clone(), fields }, Some("t/"));
        assert_eq!(r.kind, "CHANGED");
        assert_eq!(r.key, "a b+c%.csv");
        assert_eq!(r.encryption_status, "SSE-KMS");
        assert_eq!(r.changed_fields, vec!["ENCRYPTION_STATUS"]);
        assert_eq!(r.dataset_prefix, "t/");
        assert_eq!(r.last_modified.map(|t| (t.seconds, t.nanos)), Some((1, 500_000_000)));
        let removed = object_change("src", &ObjectChange::Removed(new), None);
        assert_eq!((removed.kind.as_str(), removed.size, removed.etag.as_str()), ("REMOVED", 0, ""));
        assert!(!removed.bucket_key_enabled);
        let json = serde_json::to_value(envelope("r", pb::change_record::Record::Object(removed))).unwrap();
        assert_eq!(json["schemaVersion"], SCHEMA_VERSION);
        assert_eq!(json["object"]["key"], "a b+c%.csv");
    }
}
