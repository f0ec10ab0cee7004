//! The documents themselves, built from a validated setup.

use serde_json::{Map, Value, json};

use super::{PolicyDocuments, PolicyError, PolicySetup, PolicyTargets, ReportEncryption, validate};

const VERSION: &str = "2012-10-17";
/// The S3 service principal that delivers inventory reports.
const S3_SERVICE_PRINCIPAL: &str = "s3.amazonaws.com";

/// A setup whose every field has been checked, with prefixes normalized.
pub(crate) struct Validated<'a> {
    setup: &'a PolicySetup,
    /// `s3.<region>.<suffix>`: the `kms:ViaService` value for S3 in this region.
    s3_via_service: String,
    trusted_principal: String,
    inventory_prefix: String,
    lambda_prefix: String,
}

impl<'a> Validated<'a> {
    /// Checks every field, in declaration order, and returns the first problem.
    pub(crate) fn new(setup: &'a PolicySetup) -> Result<Self, PolicyError> {
        let partition = setup.partition.as_str();
        let suffix = validate::partition_dns_suffix("partition", partition)?;
        validate::account_id("account_id", &setup.account_id)?;
        validate::region("region", &setup.region, partition)?;
        validate::role_name("connector_role_name", &setup.connector_role_name)?;
        let trusted_principal =
            validate::trusted_principal("trusted_principal", &setup.trusted_principal, partition)?;
        validate::external_id("external_id", &setup.external_id)?;

        if setup.source_buckets.is_empty() {
            return Err(PolicyError::NoSourceBuckets { field: "source_buckets".to_string() });
        }
        for (i, bucket) in setup.source_buckets.iter().enumerate() {
            validate::bucket_name(&format!("source_buckets[{i}].name"), &bucket.name)?;
            if setup.source_buckets.iter().take(i).any(|b| b.name == bucket.name) {
                return Err(PolicyError::DuplicateBucket {
                    field: format!("source_buckets[{i}].name"),
                    value: bucket.name.clone(),
                });
            }
            if let Some(key) = &bucket.kms_key_arn {
                validate::kms_key_arn(
                    &format!("source_buckets[{i}].kms_key_arn"),
                    key,
                    partition,
                    &setup.region,
                )?;
            }
        }

        let mut inventory_prefix = String::new();
        if let Some(inventory) = &setup.inventory {
            validate::bucket_name("inventory.destination_bucket", &inventory.destination_bucket)?;
            inventory_prefix =
                validate::prefix("inventory.destination_prefix", &inventory.destination_prefix)?;
            if let ReportEncryption::SseKms { key_arn } = &inventory.report_encryption {
                validate::kms_key_arn(
                    "inventory.report_encryption.key_arn",
                    key_arn,
                    partition,
                    &setup.region,
                )?;
            }
        }

        let mut lambda_prefix = String::new();
        if let Some(lambda) = &setup.forwarding_lambda {
            if setup.inventory.is_none() {
                return Err(PolicyError::LambdaWithoutInventory { field: "forwarding_lambda".to_string() });
            }
            validate::role_name("forwarding_lambda.role_name", &lambda.role_name)?;
            if let Some(name) = &lambda.function_name {
                validate::function_name("forwarding_lambda.function_name", name)?;
            }
            validate::bucket_name("forwarding_lambda.destination_bucket", &lambda.destination_bucket)?;
            lambda_prefix =
                validate::prefix("forwarding_lambda.destination_prefix", &lambda.destination_prefix)?;
            if let Some(key) = &lambda.destination_key_arn {
                validate::kms_key_arn(
                    "forwarding_lambda.destination_key_arn",
                    key,
                    partition,
                    &setup.region,
                )?;
            }
        }

        for (i, principal) in setup.sampling_principals.iter().enumerate() {
            let field = format!("sampling_principals[{i}]");
            validate::role_arn(&field, principal, partition)?;
            if setup.sampling_principals.iter().take(i).any(|p| p == principal) {
                return Err(PolicyError::DuplicatePrincipal { field, value: principal.clone() });
            }
        }

        for (i, secret) in setup.sse_c_key_secrets.iter().enumerate() {
            let field = format!("sse_c_key_secrets[{i}]");
            validate::secret_arn(&field, secret, partition, &setup.region)?;
        }

        Ok(Validated {
            setup,
            s3_via_service: format!("s3.{}.{suffix}", setup.region),
            trusted_principal,
            inventory_prefix,
            lambda_prefix,
        })
    }

    /// Builds every document.
    pub(crate) fn documents(&self) -> PolicyDocuments {
        let s = self.setup;
        PolicyDocuments {
            connector_identity_policy: canonical(self.connector_identity_policy()),
            connector_trust_policy: canonical(self.connector_trust_policy()),
            inventory_key_policy_statement: self.inventory_key_policy_statement().map(canonical),
            inventory_destination_bucket_policy: self.inventory_destination_bucket_policy().map(canonical),
            lambda_role_policy: self.lambda_role_policy().map(canonical),
            sampling_policy: self.sampling_policy().map(canonical),
            targets: PolicyTargets {
                connector_role_name: s.connector_role_name.clone(),
                inventory_key_arn: self.inventory_key().map(str::to_string),
                inventory_destination_bucket: s.inventory.as_ref().map(|i| i.destination_bucket.clone()),
                lambda_role_name: s.forwarding_lambda.as_ref().map(|l| l.role_name.clone()),
                sampling_principals: s.sampling_principals.clone(),
            },
        }
    }

    fn bucket_arn(&self, bucket: &str) -> String {
        format!("arn:{}:s3:::{bucket}", self.setup.partition)
    }

    /// `arn:…:s3:::bucket/prefix/*`, or `bucket/*` for an empty prefix.
    fn objects_arn(&self, bucket: &str, prefix: &str) -> String {
        if prefix.is_empty() {
            format!("arn:{}:s3:::{bucket}/*", self.setup.partition)
        } else {
            format!("arn:{}:s3:::{bucket}/{prefix}/*", self.setup.partition)
        }
    }

    fn source_bucket_arns(&self) -> Vec<String> {
        self.setup.source_buckets.iter().map(|b| self.bucket_arn(&b.name)).collect()
    }

    fn source_keys(&self) -> Vec<String> {
        dedup(self.setup.source_buckets.iter().filter_map(|b| b.kms_key_arn.clone()).collect())
    }

    fn inventory_key(&self) -> Option<&str> {
        match &self.setup.inventory.as_ref()?.report_encryption {
            ReportEncryption::SseKms { key_arn } => Some(key_arn),
            ReportEncryption::SseS3 => None,
        }
    }

    fn via_s3(&self) -> Value {
        json!({ "StringEquals": { "kms:ViaService": self.s3_via_service } })
    }

    fn connector_identity_policy(&self) -> Value {
        let s = self.setup;
        let sources = self.source_bucket_arns();
        let mut statements = vec![
            statement(
                "ListAndInspectSourceBuckets",
                &[
                    "s3:GetBucketLocation",
                    "s3:GetEncryptionConfiguration",
                    "s3:GetInventoryConfiguration",
                    "s3:ListBucket",
                ],
                sources.clone(),
                None,
            ),
            statement(
                "ReadSourceObjects",
                &["s3:GetObject"],
                s.source_buckets.iter().map(|b| self.objects_arn(&b.name, "")).collect(),
                None,
            ),
        ];
        if let Some(inventory) = &s.inventory {
            let destination = self.bucket_arn(&inventory.destination_bucket);
            // A destination that is also a source is already listable.
            if !sources.contains(&destination) {
                statements.push(statement(
                    "ListInventoryDestination",
                    &["s3:GetBucketLocation", "s3:ListBucket"],
                    vec![destination],
                    None,
                ));
            }
            statements.push(statement(
                "ReadInventoryReports",
                &["s3:GetObject"],
                vec![self.objects_arn(&inventory.destination_bucket, &self.inventory_prefix)],
                None,
            ));
        }
        let mut keys = self.source_keys();
        keys.extend(self.inventory_key().map(str::to_string));
        let keys = dedup(keys);
        if !keys.is_empty() {
            statements.push(statement("DecryptViaS3", &["kms:Decrypt"], keys.clone(), Some(self.via_s3())));
            // DescribeKey is called directly (not through S3) to resolve and check keys.
            statements.push(statement("DescribeKeys", &["kms:DescribeKey"], keys, None));
        }
        let secrets = dedup(s.sse_c_key_secrets.clone());
        if !secrets.is_empty() {
            // SSE-C keys are read once (start-up / each CLI run) as the connector, not the user.
            statements.push(statement(
                "ReadSseCKeySecrets",
                &["secretsmanager:GetSecretValue"],
                secrets,
                None,
            ));
        }
        document(statements)
    }

    fn connector_trust_policy(&self) -> Value {
        document(vec![json!({
            "Sid": "TrustVendorWithExternalId",
            "Effect": "Allow",
            "Principal": { "AWS": self.trusted_principal },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": self.setup.external_id } },
        })])
    }

    /// S3 delivers inventory on behalf of the source buckets: SourceAccount/SourceArn stop
    /// another account's inventory from using this key (confused deputy).
    fn inventory_delivery_condition(&self) -> Value {
        json!({
            "StringEquals": { "aws:SourceAccount": self.setup.account_id },
            "ArnLike": { "aws:SourceArn": one_or_many(self.source_bucket_arns()) },
        })
    }

    fn inventory_key_policy_statement(&self) -> Option<Value> {
        self.inventory_key()?;
        Some(json!({
            "Sid": "AllowS3InventoryToEncryptReports",
            "Effect": "Allow",
            "Principal": { "Service": S3_SERVICE_PRINCIPAL },
            "Action": "kms:GenerateDataKey",
            "Resource": "*",
            "Condition": self.inventory_delivery_condition(),
        }))
    }

    fn inventory_destination_bucket_policy(&self) -> Option<Value> {
        let inventory = self.setup.inventory.as_ref()?;
        let mut condition = self.inventory_delivery_condition();
        if let Some(equals) = condition.get_mut("StringEquals").and_then(Value::as_object_mut) {
            equals.insert("s3:x-amz-acl".to_string(), json!("bucket-owner-full-control"));
        }
        Some(document(vec![json!({
            "Sid": "AllowS3InventoryDelivery",
            "Effect": "Allow",
            "Principal": { "Service": S3_SERVICE_PRINCIPAL },
            "Action": "s3:PutObject",
            "Resource": self.objects_arn(&inventory.destination_bucket, &self.inventory_prefix),
            "Condition": condition,
        })]))
    }

    fn lambda_role_policy(&self) -> Option<Value> {
        let s = self.setup;
        let lambda = s.forwarding_lambda.as_ref()?;
        let inventory = s.inventory.as_ref()?;
        let mut statements = vec![statement(
            "ReadInventoryReports",
            &["s3:GetObject"],
            vec![self.objects_arn(&inventory.destination_bucket, &self.inventory_prefix)],
            None,
        )];
        if let Some(key) = self.inventory_key() {
            statements.push(statement(
                "DecryptInventoryReports",
                &["kms:Decrypt"],
                vec![key.to_string()],
                Some(self.via_s3()),
            ));
        }
        statements.push(statement(
            "WriteForwardedReports",
            // GetObject: the idempotency check reads back what it may already have written.
            &["s3:GetObject", "s3:PutObject"],
            vec![self.objects_arn(&lambda.destination_bucket, &self.lambda_prefix)],
            None,
        ));
        // No s3:prefix condition: HeadObject needs ListBucket to get 404 instead of 403 for a
        // missing key, and its request carries no s3:prefix.
        statements.push(statement(
            "CheckForwardedReports",
            &["s3:ListBucket"],
            vec![self.bucket_arn(&lambda.destination_bucket)],
            None,
        ));
        if let Some(key) = &lambda.destination_key_arn {
            statements.push(statement(
                "EncryptForwardedReports",
                // Decrypt as well: multipart uploads and copies read back the data key.
                &["kms:Decrypt", "kms:GenerateDataKey"],
                vec![key.clone()],
                Some(self.via_s3()),
            ));
        }
        let logs = format!("arn:{}:logs:{}:{}", s.partition, s.region, s.account_id);
        let group = lambda.function_name.as_deref().unwrap_or("*");
        statements.push(statement(
            "CreateLogGroup",
            &["logs:CreateLogGroup"],
            vec![format!("{logs}:*")],
            None,
        ));
        statements.push(statement(
            "WriteLogs",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            vec![format!("{logs}:log-group:/aws/lambda/{group}:*")],
            None,
        ));
        Some(document(statements))
    }

    fn sampling_policy(&self) -> Option<Value> {
        let s = self.setup;
        if s.sampling_principals.is_empty() {
            return None;
        }
        let mut statements = vec![statement(
            "SampleSourceObjects",
            &["s3:GetObject"],
            s.source_buckets.iter().map(|b| self.objects_arn(&b.name, "")).collect(),
            None,
        )];
        let keys = self.source_keys();
        if !keys.is_empty() {
            statements.push(statement(
                "DecryptSourceObjectsViaS3",
                &["kms:Decrypt"],
                keys,
                Some(self.via_s3()),
            ));
        }
        Some(document(statements))
    }
}

/// An `Allow` statement of an identity policy.
fn statement(sid: &str, actions: &[&str], resources: Vec<String>, condition: Option<Value>) -> Value {
    let mut map = Map::new();
    map.insert("Sid".to_string(), json!(sid));
    map.insert("Effect".to_string(), json!("Allow"));
    map.insert("Action".to_string(), one_or_many(actions.iter().map(|a| a.to_string()).collect()));
    map.insert("Resource".to_string(), one_or_many(dedup(resources)));
    if let Some(condition) = condition {
        map.insert("Condition".to_string(), condition);
    }
    Value::Object(map)
}

fn document(statements: Vec<Value>) -> Value {
    json!({ "Version": VERSION, "Statement": statements })
}

/// A plain string for one value, a list otherwise.
fn one_or_many(mut values: Vec<String>) -> Value {
    if values.len() == 1 {
        values.pop().map(Value::String).unwrap_or(Value::Null)
    } else {
        Value::Array(values.into_iter().map(Value::String).collect())
    }
}

/// Removes repeats, keeping the first occurrence (lists are tiny).
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

/// Rebuilds every object with its keys inserted in sorted order, so the output order is the
/// same with and without serde_json's `preserve_order` feature.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}
