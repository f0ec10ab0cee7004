//! Per-dataset encryption summaries.
//!
//! [`observe_headers`] turns the encryption headers and user metadata of one GET/HEAD response
//! into an [`ObservedEncryption`]; [`EncryptionSummaryBuilder`] folds the probed objects of a
//! dataset into an [`EncryptionSummary`] and compares them with the bucket default.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{ClientSideFormat, EncryptionType, ObservedEncryption};

/// The bucket's default encryption configuration (`GetBucketEncryption`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDefaultEncryption {
    /// The default type; `None` when no default is configured.
    pub kind: EncryptionType,
    /// The default KMS key, for SSE-KMS and DSSE-KMS defaults that name one.
    pub kms_key_arn: Option<String>,
    /// Whether S3 Bucket Keys are enabled by default.
    pub bucket_key_enabled: bool,
}

/// What the S3 Encryption Client metadata of one object says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientSideDetection {
    /// The detected format, if any S3EC metadata is present.
    pub format: Option<ClientSideFormat>,
    /// True when keys of more than one format version are present together, which the S3EC
    /// specification treats as an error (the object may not decrypt).
    pub inconsistent: bool,
}

/// One object's observation plus what [`ObservedEncryption`] cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderObservation {
    /// The observation proper.
    pub observed: ObservedEncryption,
    /// S3EC metadata of more than one version was present.
    pub client_side_inconsistent: bool,
}

fn has(meta: &HashMap<String, String>, name: &str) -> bool {
    // S3 lower-cases user-metadata names, but emulators and inventories may not.
    meta.keys().any(|k| k.eq_ignore_ascii_case(name))
}

/// Detect the S3 Encryption Client format from user metadata (names without `x-amz-meta-`).
///
/// V1: `x-amz-key`; V2: `x-amz-key-v2`; V3: `x-amz-3` with `x-amz-d`/`x-amz-i`, or only
/// `x-amz-c`/`x-amz-d`/`x-amz-i` when the rest lives in an instruction file. The
/// `x-amz-crypto-instr-file` marker alone means an instruction file of unknown version. When
/// several versions are present the newest is reported and the result is flagged inconsistent.
pub fn detect_client_side(user_metadata: &HashMap<String, String>) -> ClientSideDetection {
    let v1 = has(user_metadata, "x-amz-key");
    let v2 = has(user_metadata, "x-amz-key-v2");
    let v3 = has(user_metadata, "x-amz-3")
        || has(user_metadata, "x-amz-c")
        || (has(user_metadata, "x-amz-d") && has(user_metadata, "x-amz-i"));
    let versions = [v1, v2, v3].iter().filter(|v| **v).count();
    let format = if v3 {
        Some(ClientSideFormat::V3)
    } else if v2 {
        Some(ClientSideFormat::V2)
    } else if v1 {
        Some(ClientSideFormat::V1)
    } else if has(user_metadata, "x-amz-crypto-instr-file") {
        Some(ClientSideFormat::InstructionFile)
    } else {
        None
    };
    ClientSideDetection { format, inconsistent: versions > 1 }
}

/// The KMS key named in an S3 Encryption Client envelope's metadata: `kms_cmk_id` of the
/// material description (`x-amz-matdesc`, V1/V2; `x-amz-m`, V3) or the encryption context
/// (`x-amz-t`, V3). The legacy `kms` wrapping always stores it; `kms+context` writers may (the
/// AWS SDKs' current clients do not: the key is then only known from kms:Decrypt).
pub fn client_side_kms_key(user_metadata: &HashMap<String, String>) -> Option<String> {
    ["x-amz-matdesc", "x-amz-t", "x-amz-m"].iter().find_map(|name| {
        let (_, text) = user_metadata.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        let parsed: serde_json::Value = serde_json::from_str(text).ok()?;
        let id = parsed.get("kms_cmk_id")?.as_str()?.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
}

/// The server-side type from `x-amz-server-side-encryption` and the SSE-C algorithm header.
fn server_side_kind(sse: Option<&str>, sse_customer_algorithm: Option<&str>) -> EncryptionType {
    // SSE-C responses carry only the customer-algorithm header, never the SSE header.
    if sse_customer_algorithm.is_some_and(|a| !a.trim().is_empty()) {
        return EncryptionType::SseC;
    }
    match sse.map(str::trim) {
        None | Some("") => EncryptionType::None,
        Some(v) if v.eq_ignore_ascii_case("AES256") => EncryptionType::SseS3,
        Some(v) if v.eq_ignore_ascii_case("aws:kms") => EncryptionType::SseKms,
        Some(v) if v.eq_ignore_ascii_case("aws:kms:dsse") => EncryptionType::DsseKms,
        Some(_) => EncryptionType::Unknown,
    }
}

/// Like [`observe_headers`], also reporting inconsistent client-side metadata.
pub fn observe_headers_detailed(
    sse: Option<&str>,
    kms_key_id: Option<&str>,
    bucket_key_enabled: Option<bool>,
    sse_customer_algorithm: Option<&str>,
    user_metadata: &HashMap<String, String>,
) -> HeaderObservation {
    let server_side = server_side_kind(sse, sse_customer_algorithm);
    let detection = detect_client_side(user_metadata);
    let kms_key_id = kms_key_id.map(str::trim).filter(|k| !k.is_empty()).map(str::to_string);
    let observed = match detection.format {
        Some(format) => ObservedEncryption {
            kind: EncryptionType::ClientSide,
            kms_key_id,
            bucket_key_enabled,
            client_side: Some(format),
            server_side_under_client_side: (server_side != EncryptionType::None).then_some(server_side),
            client_side_kms_key_id: client_side_kms_key(user_metadata),
        },
        None => ObservedEncryption {
            kind: server_side,
            kms_key_id,
            bucket_key_enabled,
            client_side: None,
            server_side_under_client_side: None,
            client_side_kms_key_id: None,
        },
    };
    HeaderObservation { observed, client_side_inconsistent: detection.inconsistent }
}

/// Build the observation from raw S3 response headers.
///
/// `sse` is the `x-amz-server-side-encryption` value (`AES256`, `aws:kms`, `aws:kms:dsse`,
/// anything else → `Unknown`); a present `sse_customer_algorithm` means SSE-C. User metadata
/// names are without the `x-amz-meta-` prefix. S3 Encryption Client metadata wins over the
/// server-side type: the kind becomes `ClientSide` and the SSE type moves to
/// `server_side_under_client_side`.
pub fn observe_headers(
    sse: Option<&str>,
    kms_key_id: Option<&str>,
    bucket_key_enabled: Option<bool>,
    sse_customer_algorithm: Option<&str>,
    user_metadata: &HashMap<String, String>,
) -> ObservedEncryption {
    observe_headers_detailed(sse, kms_key_id, bucket_key_enabled, sse_customer_algorithm, user_metadata)
        .observed
}

/// Encryption of a dataset's probed objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncryptionSummary {
    /// Objects observed.
    pub objects_inspected: u64,
    /// Objects per encryption type.
    pub counts: BTreeMap<EncryptionType, u64>,
    /// Distinct KMS keys seen, sorted.
    pub kms_key_arns: Vec<String>,
    /// Objects that reported a Bucket Key in use.
    pub bucket_key_enabled: u64,
    /// Objects that reported no Bucket Key.
    pub bucket_key_disabled: u64,
    /// Client-side objects per S3EC format.
    pub client_side_formats: BTreeMap<ClientSideFormat, u64>,
    /// Client-side objects whose metadata mixed S3EC versions.
    pub client_side_inconsistent: u64,
    /// More than one encryption type was seen.
    pub mixed_types: bool,
    /// More than one KMS key was seen.
    pub mixed_keys: bool,
    /// Some inspected object's type or key differs from the bucket default.
    pub differs_from_default: bool,
}

impl EncryptionSummary {
    /// True when the dataset mixes encryption types or KMS keys.
    pub fn is_mixed(&self) -> bool {
        self.mixed_types || self.mixed_keys
    }
}

/// Folds observations into an [`EncryptionSummary`]; memory is bounded by the distinct
/// types and keys seen.
#[derive(Debug, Clone, Default)]
pub struct EncryptionSummaryBuilder {
    summary: EncryptionSummary,
    keys: BTreeSet<String>,
    // Distinct (server-side type, key) pairs, kept to compare with the default at the end.
    layers: BTreeSet<(EncryptionType, Option<String>)>,
}

impl EncryptionSummaryBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one object's observation (its KMS key normalised to an ARN when possible).
    pub fn observe(&mut self, obs: &ObservedEncryption) {
        let s = &mut self.summary;
        s.objects_inspected += 1;
        *s.counts.entry(obs.kind).or_insert(0) += 1;
        // Server-side keys and the keys wrapping client-side data keys alike.
        for key in [&obs.kms_key_id, &obs.client_side_kms_key_id] {
            if let Some(key) = key.as_deref().filter(|k| !k.is_empty())
                && !self.keys.contains(key)
            {
                self.keys.insert(key.to_string());
            }
        }
        match obs.bucket_key_enabled {
            Some(true) => s.bucket_key_enabled += 1,
            Some(false) => s.bucket_key_disabled += 1,
            None => {}
        }
        if let Some(format) = obs.client_side {
            *s.client_side_formats.entry(format).or_insert(0) += 1;
        }
        // The bucket default is a server-side setting, so client-side objects are compared by
        // the SSE layer stored underneath them.
        let layer = match obs.kind {
            EncryptionType::ClientSide => obs.server_side_under_client_side.unwrap_or(EncryptionType::None),
            kind => kind,
        };
        self.layers.insert((layer, obs.kms_key_id.clone().filter(|k| !k.is_empty())));
    }

    /// Add one detailed observation, counting inconsistent client-side metadata.
    pub fn observe_detailed(&mut self, obs: &HeaderObservation) {
        self.observe(&obs.observed);
        if obs.client_side_inconsistent {
            self.summary.client_side_inconsistent += 1;
        }
    }

    /// The summary; `bucket_default` is `None` when the default is unknown (then nothing is
    /// reported as differing).
    pub fn finish(self, bucket_default: Option<&BucketDefaultEncryption>) -> EncryptionSummary {
        let mut summary = self.summary;
        summary.mixed_types = summary.counts.len() > 1;
        summary.mixed_keys = self.keys.len() > 1;
        summary.kms_key_arns = self.keys.into_iter().collect();
        summary.differs_from_default = bucket_default.is_some_and(|default| {
            self.layers.iter().any(|(kind, key)| differs(default, *kind, key.as_deref()))
        });
        summary
    }
}

/// Whether one server-side layer differs from the bucket default.
fn differs(default: &BucketDefaultEncryption, kind: EncryptionType, key: Option<&str>) -> bool {
    if kind != default.kind {
        return true;
    }
    if !matches!(kind, EncryptionType::SseKms | EncryptionType::DsseKms) {
        return false;
    }
    match (default.kms_key_arn.as_deref(), key) {
        (Some(expected), Some(actual)) => !same_kms_key(expected, actual),
        // A default without a key means the AWS managed key, whose ARN we do not know; an
        // object without a reported key gives nothing to compare. Neither is evidence.
        _ => false,
    }
}

/// Whether two KMS key references name the same key: equal, or an ARN and its bare key id.
/// Aliases cannot be resolved here, so they never count as a difference.
fn same_kms_key(a: &str, b: &str) -> bool {
    let is_alias = |k: &str| k.starts_with("alias/") || k.contains(":alias/");
    if a == b || is_alias(a) || is_alias(b) {
        return true;
    }
    let key_id = |k: &str| k.rsplit_once(":key/").map_or(k, |(_, id)| id).to_string();
    key_id(a) == key_id(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN_A: &str = "arn:aws:kms:eu-west-1:111122223333:key/aaaa-1111";
    const ARN_B: &str = "arn:aws:kms:eu-west-1:111122223333:key/bbbb-2222";

    fn meta(keys: &[&str]) -> HashMap<String, String> {
        keys.iter().map(|k| (k.to_string(), "x".to_string())).collect()
    }

    #[test]
    fn server_side_types() {
        let none = HashMap::new();
        let cases: &[(Option<&str>, Option<&str>, EncryptionType)] = &[
            (None, None, EncryptionType::None),
            (Some(""), None, EncryptionType::None),
            (Some("AES256"), None, EncryptionType::SseS3),
            (Some("aws:kms"), None, EncryptionType::SseKms),
            (Some("aws:kms:dsse"), None, EncryptionType::DsseKms),
            (Some("aws:fsx"), None, EncryptionType::Unknown),
            (None, Some("AES256"), EncryptionType::SseC),
            (Some("AES256"), Some("AES256"), EncryptionType::SseC),
        ];
        for (sse, customer, expected) in cases {
            let obs = observe_headers(*sse, None, None, *customer, &none);
            assert_eq!(obs.kind, *expected, "{sse:?} {customer:?}");
            assert_eq!(obs.client_side, None);
            assert_eq!(obs.server_side_under_client_side, None);
        }
        let kms = observe_headers(Some("aws:kms"), Some(ARN_A), Some(true), None, &none);
        assert_eq!(kms.kms_key_id.as_deref(), Some(ARN_A));
        assert_eq!(kms.bucket_key_enabled, Some(true));
    }

    #[test]
    fn client_side_formats() {
        use ClientSideFormat::*;
        let cases: &[(&[&str], Option<ClientSideFormat>, bool)] = &[
            (&[], None, false),
            (&["x-amz-key", "x-amz-iv", "x-amz-matdesc"], Some(V1), false),
            (&["x-amz-key-v2", "x-amz-iv", "x-amz-wrap-alg"], Some(V2), false),
            (&["X-Amz-Key-V2", "x-amz-iv"], Some(V2), false),
            (&["x-amz-3", "x-amz-d", "x-amz-i", "x-amz-c", "x-amz-w"], Some(V3), false),
            (&["x-amz-c", "x-amz-d", "x-amz-i", "x-amz-crypto-instr-file"], Some(V3), false),
            (&["x-amz-crypto-instr-file"], Some(InstructionFile), false),
            (&["x-amz-key", "x-amz-key-v2", "x-amz-iv"], Some(V2), true),
            (&["x-amz-key-v2", "x-amz-3", "x-amz-d", "x-amz-i"], Some(V3), true),
            (&["x-amz-iv"], None, false),
            (&["owner"], None, false),
        ];
        for (keys, format, inconsistent) in cases {
            let m = meta(keys);
            let detailed = observe_headers_detailed(Some("aws:kms"), Some(ARN_A), None, None, &m);
            assert_eq!(detailed.observed.client_side, *format, "{keys:?}");
            assert_eq!(detailed.client_side_inconsistent, *inconsistent, "{keys:?}");
            if format.is_some() {
                // Client-side wins; the SSE layer underneath is kept.
                assert_eq!(detailed.observed.kind, EncryptionType::ClientSide);
                assert_eq!(detailed.observed.server_side_under_client_side, Some(EncryptionType::SseKms));
            } else {
                assert_eq!(detailed.observed.kind, EncryptionType::SseKms);
            }
        }
        let bare = observe_headers(None, None, None, None, &meta(&["x-amz-key-v2"]));
        assert_eq!(bare.kind, EncryptionType::ClientSide);
        assert_eq!(bare.server_side_under_client_side, None);
    }

    fn kms(key: &str) -> ObservedEncryption {
        ObservedEncryption {
            kind: EncryptionType::SseKms,
            kms_key_id: Some(key.to_string()),
            bucket_key_enabled: Some(true),
            ..ObservedEncryption::none()
        }
    }

    fn sse_s3() -> ObservedEncryption {
        ObservedEncryption { kind: EncryptionType::SseS3, ..ObservedEncryption::none() }
    }

    fn summarise(
        observations: &[ObservedEncryption],
        default: Option<&BucketDefaultEncryption>,
    ) -> EncryptionSummary {
        let mut b = EncryptionSummaryBuilder::new();
        for o in observations {
            b.observe(o);
        }
        b.finish(default)
    }

    fn default_of(kind: EncryptionType, key: Option<&str>) -> BucketDefaultEncryption {
        BucketDefaultEncryption { kind, kms_key_arn: key.map(str::to_string), bucket_key_enabled: true }
    }

    #[test]
    fn summary_counts_and_mixing() {
        let mut no_bucket_key = kms(ARN_B);
        no_bucket_key.bucket_key_enabled = Some(false);
        let s = summarise(&[kms(ARN_A), kms(ARN_A), no_bucket_key, sse_s3()], None);
        assert_eq!(s.objects_inspected, 4);
        assert_eq!(s.counts.get(&EncryptionType::SseKms), Some(&3));
        assert_eq!(s.counts.get(&EncryptionType::SseS3), Some(&1));
        assert_eq!(s.kms_key_arns, [ARN_A, ARN_B]);
        assert_eq!((s.bucket_key_enabled, s.bucket_key_disabled), (2, 1));
        assert!(s.mixed_types && s.mixed_keys && s.is_mixed());
        assert!(!s.differs_from_default, "unknown default: nothing differs");

        let same_key = summarise(&[kms(ARN_A), kms(ARN_A)], None);
        assert!(!same_key.is_mixed());
        let types_only = summarise(&[sse_s3(), ObservedEncryption::none()], None);
        assert!(types_only.mixed_types && !types_only.mixed_keys);
        let keys_only = summarise(&[kms(ARN_A), kms(ARN_B)], None);
        assert!(!keys_only.mixed_types && keys_only.mixed_keys && keys_only.is_mixed());
        assert_eq!(summarise(&[], None), EncryptionSummary::default());
    }

    #[test]
    fn client_side_in_summary() {
        let mut b = EncryptionSummaryBuilder::new();
        let m = meta(&["x-amz-key", "x-amz-key-v2"]);
        b.observe_detailed(&observe_headers_detailed(Some("AES256"), None, None, None, &m));
        b.observe(&observe_headers(None, None, None, None, &meta(&["x-amz-3", "x-amz-d", "x-amz-i"])));
        let s = b.finish(Some(&default_of(EncryptionType::SseS3, None)));
        assert_eq!(s.counts.get(&EncryptionType::ClientSide), Some(&2));
        assert_eq!(
            s.client_side_formats.iter().map(|(f, n)| (*f, *n)).collect::<Vec<_>>(),
            [(ClientSideFormat::V2, 1), (ClientSideFormat::V3, 1)]
        );
        assert_eq!(s.client_side_inconsistent, 1);
        assert!(!s.mixed_types);
        // The V3 object has no SSE layer while the default is SSE-S3.
        assert!(s.differs_from_default);
    }

    #[test]
    fn differs_from_default_table() {
        let key_id_only = "bbbb-2222";
        let cases: &[(&str, Vec<ObservedEncryption>, BucketDefaultEncryption, bool)] = &[
            ("same type and key", vec![kms(ARN_A)], default_of(EncryptionType::SseKms, Some(ARN_A)), false),
            (
                "other key",
                vec![kms(ARN_A), kms(ARN_B)],
                default_of(EncryptionType::SseKms, Some(ARN_A)),
                true,
            ),
            (
                "bare id of the default",
                vec![kms(key_id_only)],
                default_of(EncryptionType::SseKms, Some(ARN_B)),
                false,
            ),
            (
                "alias default",
                vec![kms(ARN_B)],
                default_of(EncryptionType::SseKms, Some("alias/data")),
                false,
            ),
            ("managed key default", vec![kms(ARN_B)], default_of(EncryptionType::SseKms, None), false),
            ("other type", vec![sse_s3()], default_of(EncryptionType::SseKms, Some(ARN_A)), true),
            ("sse-s3 default", vec![sse_s3(), sse_s3()], default_of(EncryptionType::SseS3, None), false),
            (
                "no default configured",
                vec![ObservedEncryption::none()],
                default_of(EncryptionType::None, None),
                false,
            ),
            ("encrypted without default", vec![sse_s3()], default_of(EncryptionType::None, None), true),
        ];
        for (name, observations, default, expected) in cases {
            assert_eq!(summarise(observations, Some(default)).differs_from_default, *expected, "{name}");
        }
    }

    #[test]
    fn the_kms_key_wrapping_a_client_side_data_key_is_a_key_of_the_dataset() {
        let with = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        // Legacy `kms` wrapping (V1) and V2 material descriptions name the key...
        let v1 = with(&[("x-amz-key", "x"), ("x-amz-matdesc", r#"{"kms_cmk_id":"alias/team"}"#)]);
        let v2 = with(&[
            ("x-amz-key-v2", "x"),
            ("x-amz-wrap-alg", "kms+context"),
            (
                "X-Amz-Matdesc",
                &format!(r#"{{"aws:x-amz-cek-alg":"AES/GCM/NoPadding","kms_cmk_id":"{ARN_B}"}}"#),
            ),
        ]);
        // ... V3 its encryption context; AWS's current clients write no kms_cmk_id at all.
        let v3 = with(&[("x-amz-3", "x"), ("x-amz-t", &format!(r#"{{"kms_cmk_id":" {ARN_A} "}}"#))]);
        let v3_plain = with(&[("x-amz-3", "x"), ("x-amz-t", r#"{"aws:x-amz-cek-alg":"115"}"#)]);
        assert_eq!(client_side_kms_key(&v1).as_deref(), Some("alias/team"));
        assert_eq!(client_side_kms_key(&v2).as_deref(), Some(ARN_B));
        assert_eq!(client_side_kms_key(&v3).as_deref(), Some(ARN_A));
        assert_eq!(client_side_kms_key(&v3_plain), None);
        assert_eq!(client_side_kms_key(&with(&[("x-amz-matdesc", "not json")])), None);
        assert_eq!(client_side_kms_key(&with(&[("x-amz-matdesc", r#"{"kms_cmk_id":7}"#)])), None);

        // SSE-KMS (key A) under client-side encryption wrapped with key B: both keys count,
        // only the server-side layer is compared with the bucket default.
        let obs = observe_headers(Some("aws:kms"), Some(ARN_A), None, None, &v2);
        assert_eq!(obs.kms_key_id.as_deref(), Some(ARN_A));
        assert_eq!(obs.client_side_kms_key_id.as_deref(), Some(ARN_B));
        let plain = observe_headers(Some("aws:kms"), Some(ARN_A), None, None, &HashMap::new());
        assert_eq!(plain.client_side_kms_key_id, None, "not client-side: no wrapping key");
        let default = BucketDefaultEncryption {
            kind: EncryptionType::SseKms,
            kms_key_arn: Some(ARN_A.into()),
            bucket_key_enabled: false,
        };
        let s = summarise(&[obs, kms(ARN_A)], Some(&default));
        assert_eq!(s.kms_key_arns, [ARN_A, ARN_B]);
        assert!(s.mixed_keys);
        assert!(!s.differs_from_default);
    }
}
