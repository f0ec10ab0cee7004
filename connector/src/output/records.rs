//! Conversion of extraction events into the versioned records of the proto contract.
//!
//! The CLI writes these as JSON Lines (proto3 JSON); the gRPC service streams them. Both go
//! through this one conversion, so the two outputs cannot drift apart.

use std::collections::BTreeMap;

use s3_connector_domain::dataset::PartitionStyle;
use s3_connector_domain::model::{DataType, Field};
use s3_connector_proto::v1 as pb;

use crate::extract::RunOutcome;
use crate::extract::report::{BucketDefault, BucketReport, DatasetReport, ExtractEvent, Problem};

/// Version string carried by every record.
pub const SCHEMA_VERSION: &str = "catalog.s3.v1";

fn timestamp(ms: Option<i64>) -> Option<pbjson_types::Timestamp> {
    ms.map(|ms| pbjson_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

fn uri(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{prefix}")
}

/// A schema field as a record field.
pub fn field(f: &Field) -> pb::Field {
    let children = match &f.data_type {
        DataType::Struct(fields) => fields.iter().map(field).collect(),
        DataType::List(element) => vec![field(element)],
        DataType::Map { key, value } => vec![field(key), field(value)],
        _ => Vec::new(),
    };
    pb::Field { name: f.name.clone(), r#type: f.data_type.to_string(), nullable: f.nullable, children }
}

/// The bucket default as a record.
pub fn bucket_encryption(default: &BucketDefault) -> pb::BucketEncryption {
    match &default.encryption {
        Some(enc) => pb::BucketEncryption {
            r#type: enc.kind.as_str().to_string(),
            kms_key_arn: enc.kms_key_arn.clone().unwrap_or_default(),
            kms_key_id_configured: default.configured_key_id.clone().unwrap_or_default(),
            bucket_key_enabled: enc.bucket_key_enabled,
            status: default.status.as_str().to_string(),
        },
        None => pb::BucketEncryption {
            r#type: "UNKNOWN".into(),
            kms_key_arn: String::new(),
            kms_key_id_configured: String::new(),
            bucket_key_enabled: false,
            status: default.status.as_str().to_string(),
        },
    }
}

fn partition_style(style: PartitionStyle) -> &'static str {
    match style {
        PartitionStyle::None => "NONE",
        PartitionStyle::Hive => "HIVE",
        PartitionStyle::DateFolders => "DATE_FOLDERS",
        PartitionStyle::Template => "TEMPLATE",
    }
}

/// A dataset as a record.
pub fn dataset_record(report: &DatasetReport) -> pb::DatasetRecord {
    let agg = &report.aggregate;
    let key = agg.key();
    let schema = match &report.schema {
        Some(merged) => pb::DatasetSchema {
            available: true,
            fields: merged.schema.fields.iter().map(field).collect(),
            sources: report
                .sources
                .iter()
                .map(|s| pb::SchemaSource {
                    key: s.key.clone(),
                    format: s.inferred.format.as_str().to_string(),
                    compression: s.inferred.compression.as_str().to_string(),
                    records_sampled: s.inferred.records_sampled,
                    row_count: s.inferred.row_count,
                    bytes_read: s.bytes_read,
                    requests: s.requests,
                    csv_dialect: s.inferred.dialect.as_ref().map(|d| pb::CsvDialect {
                        delimiter: (d.delimiter as char).to_string(),
                        quote: (d.quote as char).to_string(),
                        has_header: d.has_header,
                    }),
                    sample_truncated: s.inferred.sample_truncated,
                })
                .collect(),
            drift: merged
                .drift
                .iter()
                .map(|d| pb::ColumnDrift {
                    column: d.column.clone(),
                    present_in: d.present_in.clone(),
                    missing_from: d.missing_from.clone(),
                    types: d.types.clone(),
                })
                .collect(),
        },
        None => pb::DatasetSchema { available: false, ..Default::default() },
    };
    let enc = &report.encryption;
    let encryption = pb::DatasetEncryption {
        bucket_default: Some(bucket_encryption(&report.bucket_default)),
        objects_inspected: enc.objects_inspected,
        counts: enc
            .counts
            .iter()
            .map(|(t, n)| pb::EncryptionCount { r#type: t.as_str().to_string(), count: *n })
            .collect(),
        kms_key_arns: enc.kms_key_arns.clone(),
        bucket_key_enabled_count: enc.bucket_key_enabled,
        bucket_key_disabled_count: enc.bucket_key_disabled,
        client_side_formats: enc
            .client_side_formats
            .iter()
            .map(|(f, n)| pb::EncryptionCount { r#type: client_side_format_name(*f).to_string(), count: *n })
            .collect(),
        mixed_types: enc.mixed_types,
        mixed_keys: enc.mixed_keys,
        differs_from_default: enc.differs_from_default,
        inventory: agg.listed_encryption().map(|listed| pb::InventoryEncryption {
            object_count: listed.objects,
            counts: listed
                .by_type
                .iter()
                .map(|(t, n)| pb::EncryptionCount { r#type: t.as_str().to_string(), count: *n })
                .collect(),
            bucket_key_enabled_count: listed.bucket_key_enabled,
            bucket_key_disabled_count: listed.bucket_key_disabled,
        }),
    };
    pb::DatasetRecord {
        bucket: report.bucket.clone(),
        prefix: key.prefix.clone(),
        name: agg.name().to_string(),
        uri: uri(&report.bucket, &key.prefix),
        format: key.format.as_str().to_string(),
        compressions: agg
            .compressions()
            .iter()
            .map(|(c, n)| pb::CompressionCount { compression: c.as_str().to_string(), count: *n })
            .collect(),
        file_count: agg.file_count(),
        total_bytes: agg.total_bytes(),
        min_last_modified: timestamp(agg.min_last_modified_ms()),
        max_last_modified: timestamp(agg.max_last_modified_ms()),
        partitioning: Some(pb::Partitioning {
            style: partition_style(agg.partition_style()).to_string(),
            keys: agg
                .partitions()
                .into_iter()
                .map(|p| pb::PartitionKey {
                    name: p.key,
                    distinct_values: p.distinct_values,
                    min_value: p.min,
                    max_value: p.max,
                })
                .collect(),
            // An unpartitioned dataset has no partitions, not one empty one.
            partition_count: if agg.partitions().is_empty() { 0 } else { agg.partition_count() },
        }),
        schema: Some(schema),
        encryption: Some(encryption),
        problem_count: report.problem_count,
    }
}

fn client_side_format_name(f: s3_connector_domain::model::ClientSideFormat) -> &'static str {
    use s3_connector_domain::model::ClientSideFormat::*;
    match f {
        V1 => "V1",
        V2 => "V2",
        V3 => "V3",
        InstructionFile => "INSTRUCTION_FILE",
    }
}

/// A JSON value as a protobuf Value.
pub fn json_to_value(v: &serde_json::Value) -> pbjson_types::Value {
    use pbjson_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::ListValue(pbjson_types::ListValue { values: items.iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(map) => Kind::StructValue(pbjson_types::Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect(),
        }),
    };
    pbjson_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf Struct (`None` for non-objects).
pub fn json_to_struct(value: &serde_json::Value) -> Option<pbjson_types::Struct> {
    match value {
        serde_json::Value::Object(map) => Some(pbjson_types::Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect(),
        }),
        _ => None,
    }
}

/// A problem as a record.
pub fn problem_record(p: &Problem) -> pb::ProblemRecord {
    pb::ProblemRecord {
        code: p.code.to_string(),
        severity: p.severity.as_str().to_string(),
        message: p.message.clone(),
        bucket: p.bucket.clone(),
        dataset_prefix: p.dataset_prefix.clone().unwrap_or_default(),
        key: p.key.clone().unwrap_or_default(),
        kms_key_arn: p.kms_key_arn.clone().unwrap_or_default(),
        principal: p.principal.clone().unwrap_or_default(),
        operation: p.operation.clone().unwrap_or_default(),
        aws_error_code: p.aws_error_code.clone().unwrap_or_default(),
        http_status: p.http_status.map(u32::from).unwrap_or_default(),
        remediation: p.remediation.as_ref().map(|r| pb::Remediation {
            summary: r.summary.clone(),
            policy_statement: r.policy_statement.as_ref().and_then(json_to_struct),
        }),
    }
}

/// A bucket as a record.
pub fn bucket_record(b: &BucketReport) -> pb::BucketRecord {
    let tally = &b.tally;
    pb::BucketRecord {
        name: b.bucket.clone(),
        uri: uri(&b.bucket, ""),
        region: b.region.clone(),
        prefixes: b.prefixes.clone(),
        default_encryption: Some(bucket_encryption(&b.default)),
        object_count: tally.object_count,
        total_bytes: tally.total_bytes,
        data_object_count: tally.data_objects,
        junk: tally
            .junk
            .iter()
            .map(|(reason, count)| pb::JunkCount { reason: reason.as_str().to_string(), count: *count })
            .collect(),
        junk_bytes: tally.junk_bytes,
        dataset_count: b.dataset_count,
        problem_count: b.problem_count,
        listing_shards: b.listing_shards,
        listed: b.listed,
        inventory_report: b.inventory_report.clone().unwrap_or_default(),
    }
}

/// Wraps a record body.
pub fn envelope(run_id: &str, record: pb::extract_record::Record) -> pb::ExtractRecord {
    pb::ExtractRecord {
        schema_version: SCHEMA_VERSION.into(),
        run_id: run_id.to_string(),
        record: Some(record),
    }
}

/// An event as a record.
pub fn event_record(run_id: &str, event: &ExtractEvent) -> pb::ExtractRecord {
    use pb::extract_record::Record;
    let record = match event {
        ExtractEvent::Dataset(d) => Record::Dataset(dataset_record(d)),
        ExtractEvent::Problem(p) => Record::Problem(problem_record(p)),
        ExtractEvent::Bucket(b) => Record::Bucket(bucket_record(b)),
    };
    envelope(run_id, record)
}

/// The end-of-run summary record.
pub fn summary_record(
    run_id: &str,
    outcome: &RunOutcome,
    requests: &BTreeMap<&'static str, u64>,
    bytes_fetched: u64,
    started_ms: i64,
    finished_ms: i64,
) -> pb::ExtractRecord {
    envelope(
        run_id,
        pb::extract_record::Record::Summary(pb::RunSummary {
            bucket_count: outcome.buckets,
            dataset_count: outcome.datasets,
            object_count: outcome.objects,
            total_bytes: outcome.bytes,
            problems: outcome
                .problems
                .iter()
                .map(|(c, n)| pb::ProblemCount { code: c.to_string(), count: *n })
                .collect(),
            requests: requests
                .iter()
                .map(|(op, n)| pb::RequestCount { operation: op.to_string(), count: *n })
                .collect(),
            bytes_fetched,
            started_at: timestamp(Some(started_ms)),
            finished_at: timestamp(Some(finished_ms)),
            completed: outcome.unlisted_buckets.is_empty(),
        }),
    )
}

/// Rows as the contract's response.
pub fn sample_response(s: &crate::sample::ObjectSample) -> pb::SampleRowsResponse {
    pb::SampleRowsResponse {
        schema: s.sample.columns.iter().map(field).collect(),
        rows: s
            .sample
            .rows
            .iter()
            .map(|row| pb::SampleRow {
                values: row
                    .iter()
                    .map(|v| pb::SampleValue { value: Some(json_to_value(&v.value)), truncated: v.truncated })
                    .collect(),
            })
            .collect(),
        source_keys: vec![s.key.clone()],
        more_rows: s.sample.more_rows,
        encryption: s.encryption.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_statements_become_json_objects_in_records() {
        let statement = serde_json::json!({"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": "arn:aws:kms:us-east-1:1:key/k"});
        let mut p = Problem::new("KMS_ACCESS_DENIED", crate::extract::report::Severity::Error, "b", "m");
        p.remediation = Some(crate::extract::report::Remediation {
            summary: "s".into(),
            policy_statement: Some(statement.clone()),
        });
        let record = envelope("run", pb::extract_record::Record::Problem(problem_record(&p)));
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(json["schemaVersion"], "catalog.s3.v1");
        assert_eq!(json["problem"]["code"], "KMS_ACCESS_DENIED");
        assert_eq!(json["problem"]["remediation"]["policyStatement"], statement);
    }

    #[test]
    fn timestamps_convert_from_milliseconds() {
        let t = timestamp(Some(1_706_695_200_123)).unwrap();
        assert_eq!(t.seconds, 1_706_695_200);
        assert_eq!(t.nanos, 123_000_000);
        let before_epoch = timestamp(Some(-1)).unwrap();
        assert_eq!((before_epoch.seconds, before_epoch.nanos), (-1, 999_000_000));
    }
}
