//! Parsing of extraction targets (`bucket` or `s3://bucket/prefix/`), shared by the CLI and the
//! gRPC service so that both accept exactly the same scopes.

use super::BucketTarget;

/// A target that is not a bucket or an `s3://` URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid target '{target}': '{bucket}' is not a valid bucket name (3-63 lowercase letters, digits, dots, hyphens, starting and ending with a letter or digit)"
)]
pub struct TargetError {
    /// Position of the target in the list (0-based).
    pub index: usize,
    /// The target as given.
    pub target: String,
    /// The bucket part that failed the naming rules.
    pub bucket: String,
}

/// True when `name` follows the S3 bucket naming rules (3-63 characters, lowercase letters,
/// digits, dots, hyphens, starting and ending with a letter or digit, no `..`).
pub fn is_valid_bucket_name(name: &str) -> bool {
    let ok_chars =
        name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    (3..=63).contains(&name.len()) && ok_chars && ok_ends && !name.contains("..")
}

/// Splits `bucket` or `s3://bucket/prefix` into the bucket and the prefix (if any).
pub fn split_target(text: &str) -> (&str, Option<&str>) {
    let rest = text.strip_prefix("s3://").unwrap_or(text);
    match rest.split_once('/') {
        Some((b, p)) => (b, (!p.is_empty()).then_some(p)),
        None => (rest, None),
    }
}

/// Splits `s3://bucket/key-or-prefix` (the key part may be empty); `None` unless it is an
/// `s3://` URI with a valid bucket name.
pub fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    is_valid_bucket_name(bucket).then_some((bucket, key))
}

/// Parses targets into bucket targets: one per bucket, in first-seen order; a whole-bucket
/// target absorbs prefix targets of the same bucket.
pub fn parse_targets<S: AsRef<str>>(list: &[S]) -> Result<Vec<BucketTarget>, TargetError> {
    let mut out: Vec<BucketTarget> = Vec::new();
    for (index, text) in list.iter().enumerate() {
        let text = text.as_ref();
        let (bucket, prefix) = split_target(text);
        if !is_valid_bucket_name(bucket) {
            return Err(TargetError { index, target: text.to_string(), bucket: bucket.to_string() });
        }
        match out.iter_mut().find(|b| b.bucket == bucket) {
            Some(existing) => match prefix {
                Some(p) if !existing.prefixes.is_empty() => existing.prefixes.push(p.to_string()),
                Some(_) => {}
                None => existing.prefixes.clear(),
            },
            None => out.push(BucketTarget {
                bucket: bucket.to_string(),
                prefixes: prefix.map(str::to_string).into_iter().collect(),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_buckets_and_uris() {
        assert_eq!(split_target("my-bucket"), ("my-bucket", None));
        assert_eq!(split_target("s3://my-bucket/"), ("my-bucket", None));
        assert_eq!(split_target("s3://my-bucket/sales/2024/"), ("my-bucket", Some("sales/2024/")));
        for bad in ["s3://", "UPPER", "ab", "-start", "a..b", "under_score"] {
            let err = parse_targets(&["ok-bucket", bad]).unwrap_err();
            assert_eq!(err.index, 1, "{bad}");
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn s3_uris_split_into_bucket_and_key() {
        assert_eq!(split_s3_uri("s3://b-1/a/b.csv"), Some(("b-1", "a/b.csv")));
        assert_eq!(split_s3_uri("s3://b-1"), Some(("b-1", "")));
        assert_eq!(split_s3_uri("b-1/a"), None);
        assert_eq!(split_s3_uri("s3://Bad_Bucket/a"), None);
    }

    #[test]
    fn a_whole_bucket_target_absorbs_prefix_targets() {
        let t = parse_targets(&["s3://b-1/a/", "s3://b-1/b/", "b-2"]).unwrap();
        assert_eq!(t[0].prefixes, vec!["a/".to_string(), "b/".to_string()]);
        assert!(t[1].prefixes.is_empty());
        let t = parse_targets(&["s3://b-1/a/", "b-1", "s3://b-1/c/"]).unwrap();
        assert!(t[0].prefixes.is_empty());
    }
}
