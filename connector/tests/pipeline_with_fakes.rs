//! The extraction pipeline over an in-memory object store: failure modes that no emulator can
//! produce (kms:Decrypt denied on reads, throttling, objects deleted mid-run, ListBucket
//! denied), checked through the records a user would see.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use s3_connector::aws::{
    AwsError, AwsErrorKind, ByteRange, DefaultEncryptionRule, IdentityProvider, KeyDirectory, KeyInfo,
    ListPage, ListRequest, ObjectHead, ObjectStore, RangeRead, RequestStats, ResponseEncryption,
};
use s3_connector::extract::report::ExtractEvent;
use s3_connector::extract::{BucketTarget, ExtractLimits, ExtractScope, Extractor, Services};
use s3_connector_domain::model::ObjectMeta;
use tokio::sync::mpsc;

const PRINCIPAL: &str = "arn:aws:sts::111122223333:assumed-role/catalog-reader/s3-connector";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/0f0f0f0f-1111-2222-3333-444444444444";

#[derive(Clone)]
enum Behaviour {
    Ok,
    GetFails(AwsErrorKind, &'static str, &'static str, u16),
}

#[derive(Clone)]
struct FakeObject {
    body: Bytes,
    encryption: ResponseEncryption,
    behaviour: Behaviour,
}

#[derive(Default)]
struct FakeStore {
    buckets: BTreeMap<String, BTreeMap<String, FakeObject>>,
    deny_listing: Vec<String>,
    gets: Mutex<u64>,
    /// Keys returned by listings without a delimiter, in request order.
    flat_listed: Arc<Mutex<Vec<String>>>,
    /// Listing requests with a delimiter.
    delimited_requests: Arc<Mutex<u64>>,
    /// Last-modified times by key (others: 1,700,000,000,000).
    last_modified: BTreeMap<String, i64>,
}

fn aws_error(
    op: &'static str,
    bucket: &str,
    key: Option<&str>,
    kind: AwsErrorKind,
    code: &str,
    message: &str,
    status: u16,
) -> AwsError {
    AwsError {
        operation: op,
        bucket: Some(bucket.to_string()),
        resource: key.map(str::to_string),
        kind,
        code: Some(code.to_string()),
        message: Some(message.to_string()),
        status: Some(status),
    }
}

#[async_trait]
impl ObjectStore for FakeStore {
    async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError> {
        if self.deny_listing.contains(&request.bucket) {
            return Err(aws_error(
                "s3:ListBucket",
                &request.bucket,
                None,
                AwsErrorKind::AccessDenied,
                "AccessDenied",
                "Access Denied",
                403,
            ));
        }
        let Some(objects) = self.buckets.get(&request.bucket) else {
            return Err(aws_error(
                "s3:ListBucket",
                &request.bucket,
                None,
                AwsErrorKind::NoSuchBucket,
                "NoSuchBucket",
                "The specified bucket does not exist",
                404,
            ));
        };
        // Pages of two entries, to exercise continuation.
        let mut entries: Vec<(String, Option<ObjectMeta>)> = Vec::new();
        for (key, o) in objects.range(request.prefix.clone()..) {
            if !key.starts_with(&request.prefix) {
                break;
            }
            if request.start_after.as_ref().is_some_and(|after| key <= after) {
                continue;
            }
            let rest = &key[request.prefix.len()..];
            match (&request.delimiter, rest.find('/')) {
                (Some(_), Some(i)) => {
                    let p = format!("{}{}", request.prefix, &rest[..=i]);
                    if entries.last().map(|(k, _)| k != &p).unwrap_or(true) {
                        entries.push((p, None));
                    }
                }
                _ => entries.push((
                    key.clone(),
                    Some(ObjectMeta {
                        key: key.clone(),
                        size: o.body.len() as u64,
                        last_modified_ms: Some(
                            self.last_modified.get(key).copied().unwrap_or(1_700_000_000_000),
                        ),
                        etag: None,
                        storage_class: None,
                    }),
                )),
            }
        }
        let start: usize = request.continuation.as_deref().map(|t| t.parse().unwrap()).unwrap_or(0);
        let end = (start + 2).min(entries.len());
        let mut page = ListPage::default();
        for (name, meta) in &entries[start..end] {
            match meta {
                Some(m) => page.objects.push(m.clone()),
                None => page.common_prefixes.push(name.clone()),
            }
        }
        page.next = (end < entries.len()).then(|| end.to_string());
        if request.delimiter.is_none() {
            self.flat_listed.lock().unwrap().extend(page.objects.iter().map(|o| o.key.clone()));
        } else {
            *self.delimited_requests.lock().unwrap() += 1;
        }
        Ok(page)
    }

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: ByteRange,
        max_bytes: u64,
    ) -> Result<RangeRead, AwsError> {
        *self.gets.lock().unwrap() += 1;
        let o = self.buckets.get(bucket).and_then(|b| b.get(key)).cloned().ok_or_else(|| {
            aws_error(
                "s3:GetObject",
                bucket,
                Some(key),
                AwsErrorKind::NotFound,
                "NoSuchKey",
                "The specified key does not exist.",
                404,
            )
        })?;
        if let Behaviour::GetFails(kind, code, message, status) = o.behaviour {
            return Err(aws_error("s3:GetObject", bucket, Some(key), kind, code, message, status));
        }
        let len = o.body.len() as u64;
        let (start, end) = match range {
            ByteRange::Head(n) => (0, n.min(len)),
            ByteRange::Suffix(n) => (len.saturating_sub(n), len),
            ByteRange::Span { start, len: n } => (start.min(len), (start + n).min(len)),
        };
        let end = end.min(start + max_bytes);
        Ok(RangeRead {
            bytes: o.body.slice(start as usize..end as usize),
            start,
            object_size: len,
            encryption: o.encryption.clone(),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectHead, AwsError> {
        let o = self.buckets.get(bucket).and_then(|b| b.get(key)).ok_or_else(|| AwsError {
            operation: "s3:GetObject",
            bucket: Some(bucket.into()),
            resource: Some(key.into()),
            kind: AwsErrorKind::NotFound,
            code: None,
            message: None,
            status: Some(404),
        })?;
        Ok(ObjectHead { size: o.body.len() as u64, encryption: o.encryption.clone() })
    }

    async fn bucket_encryption(&self, bucket: &str) -> Result<Option<DefaultEncryptionRule>, AwsError> {
        if !self.buckets.contains_key(bucket) {
            return Err(aws_error(
                "s3:GetEncryptionConfiguration",
                bucket,
                None,
                AwsErrorKind::NoSuchBucket,
                "NoSuchBucket",
                "The specified bucket does not exist",
                404,
            ));
        }
        Ok(Some(DefaultEncryptionRule {
            sse_algorithm: "aws:kms".into(),
            kms_master_key_id: Some("alias/data".into()),
            bucket_key_enabled: true,
        }))
    }
}

struct FakeKeys;

#[async_trait]
impl KeyDirectory for FakeKeys {
    async fn describe_key(&self, key_id: &str) -> Result<KeyInfo, AwsError> {
        match key_id {
            "alias/data" | "0f0f0f0f-1111-2222-3333-444444444444" => {
                Ok(KeyInfo { arn: KEY_ARN.into(), state: "Enabled".into(), manager: "CUSTOMER".into() })
            }
            other => Err(AwsError {
                operation: "kms:DescribeKey",
                bucket: None,
                resource: Some(other.into()),
                kind: AwsErrorKind::KmsKeyNotFound,
                code: Some("NotFoundException".into()),
                message: None,
                status: Some(400),
            }),
        }
    }
}

struct FakeIdentity;

#[async_trait]
impl IdentityProvider for FakeIdentity {
    async fn caller_arn(&self) -> Result<String, AwsError> {
        Ok(PRINCIPAL.into())
    }
}

fn kms_encryption(key_id: &str) -> ResponseEncryption {
    ResponseEncryption {
        sse: Some("aws:kms".into()),
        kms_key_id: Some(key_id.into()),
        bucket_key_enabled: Some(true),
        ..Default::default()
    }
}

fn csv(rows: usize) -> Bytes {
    let mut s = String::from("id,name,amount\n");
    for i in 0..rows {
        s.push_str(&format!("{i},name-{i},{}.50\n", i * 3));
    }
    Bytes::from(s)
}

fn store() -> FakeStore {
    let mut objects = BTreeMap::new();
    let ok = |body: Bytes| FakeObject {
        body,
        encryption: kms_encryption("0f0f0f0f-1111-2222-3333-444444444444"),
        behaviour: Behaviour::Ok,
    };
    for d in ["2024-01-01", "2024-01-02", "2024-01-03"] {
        objects.insert(format!("good/dt={d}/part-0.csv"), ok(csv(20)));
    }
    // GET denied with the old, bare message: only a HEAD can tell it is a KMS problem.
    for i in 0..3 {
        objects.insert(
            format!("locked/part-{i}.csv"),
            FakeObject {
                body: csv(5),
                encryption: kms_encryption(KEY_ARN),
                behaviour: Behaviour::GetFails(
                    AwsErrorKind::AccessDenied,
                    "AccessDenied",
                    "Access Denied",
                    403,
                ),
            },
        );
    }
    for i in 0..2 {
        objects.insert(
            format!("slow/part-{i}.csv"),
            FakeObject {
                body: csv(5),
                encryption: kms_encryption(KEY_ARN),
                behaviour: Behaviour::GetFails(
                    AwsErrorKind::Throttled,
                    "SlowDown",
                    "Please reduce your request rate.",
                    503,
                ),
            },
        );
        objects.insert(
            format!("gone/part-{i}.csv"),
            FakeObject {
                body: csv(5),
                encryption: kms_encryption(KEY_ARN),
                behaviour: Behaviour::GetFails(
                    AwsErrorKind::NotFound,
                    "NoSuchKey",
                    "The specified key does not exist.",
                    404,
                ),
            },
        );
    }
    objects.insert("good/_SUCCESS".into(), ok(Bytes::new()));
    let mut buckets = BTreeMap::new();
    buckets.insert("data-lake".to_string(), objects);
    buckets.insert("private-lake".to_string(), BTreeMap::new());
    FakeStore { buckets, deny_listing: vec!["private-lake".into()], ..FakeStore::default() }
}

fn services(store: FakeStore) -> Services {
    Services {
        store: Arc::new(store),
        keys: Arc::new(FakeKeys),
        identity: Arc::new(FakeIdentity),
        stats: Arc::new(RequestStats::default()),
        region: "us-east-1".into(),
    }
}

async fn run(store: FakeStore, targets: &[&str]) -> (Vec<ExtractEvent>, s3_connector::extract::RunOutcome) {
    run_with(store, targets, ExtractLimits::default()).await
}

async fn run_with(
    store: FakeStore,
    targets: &[&str],
    limits: ExtractLimits,
) -> (Vec<ExtractEvent>, s3_connector::extract::RunOutcome) {
    let extractor = Extractor::new(services(store), limits);
    let scope = ExtractScope {
        targets: targets.iter().map(|b| BucketTarget { bucket: b.to_string(), prefixes: vec![] }).collect(),
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel(4);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let outcome = extractor.run(&scope, tx).await.expect("run completes");
    (collector.await.unwrap(), outcome)
}

fn problems(events: &[ExtractEvent]) -> HashMap<String, Vec<s3_connector::extract::report::Problem>> {
    let mut by_prefix: HashMap<String, Vec<_>> = HashMap::new();
    for e in events {
        if let ExtractEvent::Problem(p) = e {
            by_prefix.entry(p.dataset_prefix.clone().unwrap_or_default()).or_default().push((**p).clone());
        }
    }
    by_prefix
}

/// The dataset record of `prefix`.
fn dataset<'a>(events: &'a [ExtractEvent], prefix: &str) -> &'a s3_connector::extract::report::DatasetReport {
    events
        .iter()
        .find_map(|e| match e {
            ExtractEvent::Dataset(d) if d.aggregate.key().prefix == prefix => Some(&**d),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no dataset record for {prefix}"))
}

#[tokio::test]
async fn a_bare_access_denied_on_an_sse_kms_object_is_reported_as_a_kms_denial() {
    let (events, _) = run(store(), &["data-lake"]).await;
    let problems = problems(&events);
    let locked = &problems["locked/"];
    assert_eq!(locked.len(), 1, "one coalesced problem for the dataset");
    let p = &locked[0];
    assert_eq!(p.code, "KMS_ACCESS_DENIED");
    assert_eq!(p.kms_key_arn.as_deref(), Some(KEY_ARN));
    assert_eq!(p.principal.as_deref(), Some(PRINCIPAL));
    assert_eq!(p.operation.as_deref(), Some("kms:Decrypt"));
    let statement =
        p.remediation.as_ref().and_then(|r| r.policy_statement.clone()).expect("a fixing statement");
    assert_eq!(statement["Action"][0], "kms:Decrypt");
    assert_eq!(statement["Resource"], KEY_ARN);
}

#[tokio::test]
async fn throttling_and_mid_run_deletion_are_problems_not_failures() {
    let (events, outcome) = run(store(), &["data-lake"]).await;
    let problems = problems(&events);
    assert_eq!(problems["slow/"][0].code, "THROTTLED");
    assert_eq!(problems["gone/"][0].code, "OBJECT_NOT_FOUND");
    assert!(outcome.unlisted_buckets.is_empty());
    // The good dataset still has its schema, encryption normalised to the key ARN.
    let good = dataset(&events, "good/");
    let schema = good.schema.as_ref().expect("schema read");
    let names: Vec<&str> = schema.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["id", "name", "amount"]);
    assert_eq!(good.encryption.kms_key_arns, vec![KEY_ARN.to_string()]);
    assert!(!good.encryption.mixed_keys);
    assert_eq!(good.aggregate.file_count(), 3, "_SUCCESS is junk, not data");
}

#[tokio::test]
async fn a_bucket_that_cannot_be_listed_is_reported_and_the_run_goes_on() {
    let (events, outcome) = run(store(), &["private-lake", "no-such-lake", "data-lake"]).await;
    assert_eq!(outcome.buckets, 3);
    assert_eq!(outcome.unlisted_buckets, vec!["private-lake".to_string(), "no-such-lake".to_string()]);
    let codes: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            ExtractEvent::Problem(p) if p.dataset_prefix.is_none() => Some((p.bucket.as_str(), p.code)),
            _ => None,
        })
        .collect();
    assert!(codes.contains(&("private-lake", "BUCKET_ACCESS_DENIED")), "{codes:?}");
    assert!(codes.contains(&("no-such-lake", "BUCKET_NOT_FOUND")), "{codes:?}");
    let denied = events
        .iter()
        .find_map(|e| match e {
            ExtractEvent::Problem(p) if p.code == "BUCKET_ACCESS_DENIED" => Some(p),
            _ => None,
        })
        .unwrap();
    let statement = denied.remediation.as_ref().unwrap().policy_statement.as_ref().unwrap();
    assert_eq!(statement["Action"][0], "s3:ListBucket");
    assert_eq!(statement["Resource"], "arn:aws:s3:::private-lake");
    assert!(events.iter().any(|e| matches!(e, ExtractEvent::Dataset(d) if d.bucket == "data-lake")));
}

#[tokio::test]
async fn closing_the_output_stops_the_run() {
    let extractor = Extractor::new(services(store()), ExtractLimits::default());
    let scope = ExtractScope {
        targets: vec![BucketTarget { bucket: "data-lake".into(), prefixes: vec![] }],
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let err = extractor.run(&scope, tx).await.expect_err("a closed output ends the run");
    assert!(matches!(err, s3_connector::extract::ExtractError::OutputClosed), "{err}");
}

/// 12 dataset folders plus root-level files sorting between them, with a nested folder and
/// a folder whose name extends another's ("table05.zzz/").
fn wide_lake() -> FakeStore {
    let mut objects = BTreeMap::new();
    let ok =
        |rows| FakeObject { body: csv(rows), encryption: kms_encryption(KEY_ARN), behaviour: Behaviour::Ok };
    for t in 0..12 {
        for f in 0..(t % 3 + 1) {
            objects.insert(format!("table{t:02}/part-{f}.csv"), ok(3));
        }
        objects.insert(format!("table{t:02}.csv"), ok(2));
    }
    objects.insert("table05.zzz/part-0.csv".into(), ok(2));
    objects.insert("table07/nested/part-9.csv".into(), ok(2));
    let mut buckets = BTreeMap::new();
    buckets.insert("wide-lake".to_string(), objects);
    FakeStore { buckets, ..FakeStore::default() }
}

#[tokio::test]
async fn a_listing_split_at_any_page_lists_every_object_exactly_once() {
    // Pages of 2 entries: splitting after 1..=21 pages crosses every kind of split point (inside
    // a folder, at its end, at a root-level file); 100 pages never splits. Runs of up to 3
    // folders (listing concurrency 3) cross every shard boundary.
    let total_pages = 19; // 38 objects
    for split_after in (1..=total_pages).chain([100]) {
        let store = wide_lake();
        let flat_listed = store.flat_listed.clone();
        let delimited = store.delimited_requests.clone();
        let limits = ExtractLimits {
            listing_concurrency: 3,
            listing_split_after_pages: split_after,
            ..ExtractLimits::default()
        };
        let (events, outcome) = run_with(store, &["wide-lake"], limits).await;
        let mut files: BTreeMap<String, u64> = BTreeMap::new();
        let mut shards = None;
        for e in &events {
            match e {
                ExtractEvent::Dataset(d) => {
                    files.insert(d.aggregate.key().prefix.clone(), d.aggregate.file_count());
                }
                ExtractEvent::Bucket(b) => shards = Some(b.listing_shards),
                _ => {}
            }
        }
        for t in 0..12 {
            let expected = (t % 3 + 1) as u64;
            assert_eq!(
                files.get(&format!("table{t:02}/")),
                Some(&expected),
                "split after {split_after}: {files:?}"
            );
        }
        assert_eq!(files.get(""), Some(&12), "split after {split_after}: root-level files counted once");
        assert_eq!(files.get("table05.zzz/"), Some(&1), "split after {split_after}");
        assert_eq!(files.get("table07/nested/"), Some(&1), "split after {split_after}");
        let expected_objects: u64 = (0..12).map(|t| t % 3 + 1).sum::<u64>() + 12 + 2;
        assert_eq!(
            outcome.objects, expected_objects,
            "split after {split_after}: an object listed twice or missed"
        );
        assert!(outcome.unlisted_buckets.is_empty());
        // No shard's pages run into another's: the server returns every key once (requests and
        // bytes as a bare listing).
        let mut listed = flat_listed.lock().unwrap().clone();
        let returned = listed.len();
        listed.sort();
        listed.dedup();
        assert_eq!(returned, listed.len(), "split after {split_after}: a key was returned by two listings");
        let delimited = *delimited.lock().unwrap();
        if split_after >= total_pages {
            assert_eq!(shards, Some(1), "a listing that ends within {split_after} pages is not split");
            assert_eq!(delimited, 0, "no delimiter listing without a split");
            assert_eq!(returned as u64, expected_objects, "one flat pass returns every key");
        } else {
            assert!(shards.is_some_and(|s| s > 1), "split after {split_after}: {shards:?} listings");
            assert!(delimited > 0, "split after {split_after}: the rest is found by a delimiter listing");
        }
    }
}

#[tokio::test]
async fn one_listing_at_a_time_never_splits() {
    let store = wide_lake();
    let delimited = store.delimited_requests.clone();
    let limits =
        ExtractLimits { listing_concurrency: 1, listing_split_after_pages: 1, ..ExtractLimits::default() };
    let (_, outcome) = run_with(store, &["wide-lake"], limits).await;
    assert_eq!(outcome.objects, 38);
    assert_eq!(*delimited.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_key_change_on_the_newest_object_is_found() {
    // 40 objects under one key, then the most recent one written under another (a rotation):
    // key order is not time order, and a random sample of 3 in 40 would mostly miss it.
    const NEW_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/99999999-8888-7777-6666-555555555555";
    let mut objects = BTreeMap::new();
    let mut last_modified = BTreeMap::new();
    for i in 0..40i64 {
        let key = format!("rotated/part-{i:02}.csv");
        let (encryption, at) = if i == 17 {
            (kms_encryption(NEW_KEY), 1_700_000_900_000)
        } else {
            (kms_encryption(KEY_ARN), 1_700_000_000_000 + i * 1_000)
        };
        objects.insert(key.clone(), FakeObject { body: csv(3), encryption, behaviour: Behaviour::Ok });
        last_modified.insert(key, at);
    }
    let mut buckets = BTreeMap::new();
    buckets.insert("rotating-lake".to_string(), objects);
    let store = FakeStore { buckets, last_modified, ..FakeStore::default() };
    let (events, _) = run(store, &["rotating-lake"]).await;
    let dataset = dataset(&events, "rotated/");
    assert!(dataset.encryption.mixed_keys, "{:?}", dataset.encryption);
    assert!(dataset.encryption.kms_key_arns.iter().any(|k| k == NEW_KEY), "{:?}", dataset.encryption);
    // Two schema reads (the newest and the oldest) and one probe: three objects out of 40.
    assert_eq!(dataset.encryption.objects_inspected, 3);
    let read: Vec<&str> = dataset.sources.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(read, ["rotated/part-17.csv", "rotated/part-00.csv"], "newest, then oldest");
}
