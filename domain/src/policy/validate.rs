//! Parsers for the identifiers a setup holds. Each takes the field path for its error and never
//! panics: every input is untrusted text from a setup file.

use super::PolicyError;

/// Partitions we generate for, with the DNS suffix of their regional endpoints (used in
/// `kms:ViaService`). Others (aws-cn, aws-iso*) are refused until their service principals and
/// suffixes are checked against AWS documentation.
const PARTITIONS: &[(&str, &str)] = &[("aws", "amazonaws.com"), ("aws-us-gov", "amazonaws.com")];

/// Comma-separated list of [`PARTITIONS`] for error messages.
const SUPPORTED_PARTITIONS: &str = "aws, aws-us-gov";

/// Returns the endpoint DNS suffix of a supported partition.
pub(crate) fn partition_dns_suffix(field: &str, partition: &str) -> Result<&'static str, PolicyError> {
    PARTITIONS.iter().find(|(name, _)| *name == partition).map(|(_, suffix)| *suffix).ok_or_else(|| {
        PolicyError::UnsupportedPartition {
            field: field.to_string(),
            value: partition.to_string(),
            supported: SUPPORTED_PARTITIONS,
        }
    })
}

/// Checks a 12-digit AWS account id.
pub(crate) fn account_id(field: &str, value: &str) -> Result<(), PolicyError> {
    if is_account_id(value) {
        Ok(())
    } else {
        Err(PolicyError::InvalidAccountId { field: field.to_string(), value: value.to_string() })
    }
}

fn is_account_id(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a region code (`us-east-1`, `us-gov-west-1`, `ap-southeast-2`) and that it belongs to
/// the partition.
pub(crate) fn region(field: &str, value: &str, partition: &str) -> Result<(), PolicyError> {
    let invalid = || PolicyError::InvalidRegion { field: field.to_string(), value: value.to_string() };
    let parts: Vec<&str> = value.split('-').collect();
    // Shape: <2 letters>[-gov]-<direction letters>-<number>.
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else { return Err(invalid()) };
    let middle = parts.get(1..parts.len().saturating_sub(1)).unwrap_or(&[]);
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let ok = parts.len() >= 3
        && parts.len() <= 4
        && first.len() == 2
        && letters(first)
        && middle.iter().all(|s| letters(s))
        && !last.is_empty()
        && last.len() <= 2
        && last.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(invalid());
    }
    let gov = value.starts_with("us-gov-");
    let matches = match partition {
        "aws-us-gov" => gov,
        _ => !gov && !value.starts_with("cn-"),
    };
    if matches {
        Ok(())
    } else {
        Err(PolicyError::RegionNotInPartition {
            field: field.to_string(),
            region: value.to_string(),
            partition: partition.to_string(),
        })
    }
}

/// Checks a general-purpose bucket name against the S3 naming rules.
pub(crate) fn bucket_name(field: &str, value: &str) -> Result<(), PolicyError> {
    bucket_rule(value).map_err(|reason| PolicyError::InvalidBucketName {
        field: field.to_string(),
        value: value.to_string(),
        reason,
    })
}

fn bucket_rule(name: &str) -> Result<(), &'static str> {
    if name.len() < 3 || name.len() > 63 {
        return Err("must be 3 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Err("only lowercase letters, digits, dots and hyphens are allowed");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Err("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("must not contain two adjacent dots");
    }
    if name.split('.').count() == 4
        && name.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("must not be formatted as an IP address");
    }
    const PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
    if PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err("must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)");
    }
    const SUFFIXES: &[&str] = &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Err("must not end with a reserved suffix (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)");
    }
    Ok(())
}

/// The six colon-separated parts of an ARN; the resource keeps any further colons.
struct Arn<'a> {
    partition: &'a str,
    service: &'a str,
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

fn split_arn(value: &str) -> Option<Arn<'_>> {
    let mut parts = value.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    Some(Arn {
        partition: parts.next()?,
        service: parts.next()?,
        region: parts.next()?,
        account: parts.next()?,
        resource: parts.next()?,
    })
}

fn same_partition(field: &str, value: &str, arn_partition: &str, partition: &str) -> Result<(), PolicyError> {
    if arn_partition == partition {
        Ok(())
    } else {
        Err(PolicyError::PartitionMismatch {
            field: field.to_string(),
            value: value.to_string(),
            arn_partition: arn_partition.to_string(),
            partition: partition.to_string(),
        })
    }
}

/// Checks a KMS key ARN and that it is in the setup's partition and region. Alias ARNs and
/// bare ids are refused: key policies and IAM `Resource`s only ever match the key ARN.
pub(crate) fn kms_key_arn(
    field: &str,
    value: &str,
    partition: &str,
    region: &str,
) -> Result<(), PolicyError> {
    let invalid =
        |reason| PolicyError::InvalidKeyArn { field: field.to_string(), value: value.to_string(), reason };
    if value.starts_with("alias/") {
        return Err(PolicyError::KeyAliasNotAllowed { field: field.to_string(), value: value.to_string() });
    }
    let Some(arn) = split_arn(value) else {
        return Err(invalid("not an ARN; give the full key ARN, not a key id"));
    };
    if arn.service != "kms" {
        return Err(invalid("the service must be `kms`"));
    }
    if arn.resource.starts_with("alias/") {
        return Err(PolicyError::KeyAliasNotAllowed { field: field.to_string(), value: value.to_string() });
    }
    if !is_account_id(arn.account) {
        return Err(invalid("the account must be 12 digits"));
    }
    let Some(id) = arn.resource.strip_prefix("key/") else {
        return Err(invalid("the resource must be `key/<id>`"));
    };
    if !is_key_id(id) {
        return Err(invalid("the key id must be a UUID or `mrk-` followed by 32 hex digits"));
    }
    same_partition(field, value, arn.partition, partition)?;
    if arn.region != region {
        return Err(PolicyError::KeyRegionMismatch {
            field: field.to_string(),
            key_arn: value.to_string(),
            key_region: arn.region.to_string(),
            region: region.to_string(),
        });
    }
    Ok(())
}

/// A single-region key id (UUID, lowercase as KMS prints it) or a multi-Region key id.
fn is_key_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if let Some(rest) = id.strip_prefix("mrk-") {
        return rest.len() == 32 && hex(rest);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5 && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g))
}

/// Checks an IAM role name: 1 to 64 of `A-Za-z0-9_+=,.@-`.
pub(crate) fn role_name(field: &str, value: &str) -> Result<(), PolicyError> {
    if is_role_name(value) {
        Ok(())
    } else {
        Err(PolicyError::InvalidName {
            field: field.to_string(),
            value: value.to_string(),
            reason: "an IAM role name is 1 to 64 characters of A-Za-z0-9_+=,.@-",
        })
    }
}

fn is_role_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// Checks a Lambda function name: 1 to 64 of `A-Za-z0-9_-`.
pub(crate) fn function_name(field: &str, value: &str) -> Result<(), PolicyError> {
    if !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(PolicyError::InvalidName {
            field: field.to_string(),
            value: value.to_string(),
            reason: "a Lambda function name is 1 to 64 characters of A-Za-z0-9_-",
        })
    }
}

/// Checks an IAM role ARN `arn:<partition>:iam::<account>:role[/path/]name` in the partition.
/// Checks a Secrets Manager secret ARN in the setup's partition and region. The name may end
/// with AWS's random 6-character suffix, or with `-??????` (IAM's pattern for "any suffix").
pub(crate) fn secret_arn(field: &str, value: &str, partition: &str, region: &str) -> Result<(), PolicyError> {
    let invalid =
        |reason| PolicyError::InvalidSecretArn { field: field.to_string(), value: value.to_string(), reason };
    let arn = split_arn(value).ok_or_else(|| invalid("not an ARN"))?;
    if arn.service != "secretsmanager" {
        return Err(invalid("the service must be `secretsmanager`"));
    }
    if !is_account_id(arn.account) {
        return Err(invalid("the account must be 12 digits"));
    }
    let name = arn
        .resource
        .strip_prefix("secret:")
        .ok_or_else(|| invalid("the resource must be `secret:<name>`"))?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-?".contains(c);
    if name.is_empty() || name.len() > 512 || !name.chars().all(allowed) {
        return Err(invalid("the secret name must be 1-512 of A-Z a-z 0-9 / _ + = . @ -"));
    }
    if name.contains('?') && !name.ends_with("-??????") {
        return Err(invalid("`?` is only allowed as the `-??????` suffix pattern"));
    }
    same_partition(field, value, arn.partition, partition)?;
    if arn.region != region {
        return Err(invalid("the secret must be in the setup's region"));
    }
    Ok(())
}

pub(crate) fn role_arn(field: &str, value: &str, partition: &str) -> Result<(), PolicyError> {
    role_arn_rule(value, partition).map_err(|reason| match reason {
        RoleArnProblem::Invalid(reason) => {
            PolicyError::InvalidRoleArn { field: field.to_string(), value: value.to_string(), reason }
        }
        RoleArnProblem::Partition(arn_partition) => PolicyError::PartitionMismatch {
            field: field.to_string(),
            value: value.to_string(),
            arn_partition,
            partition: partition.to_string(),
        },
    })
}

enum RoleArnProblem {
    Invalid(&'static str),
    Partition(String),
}

fn role_arn_rule(value: &str, partition: &str) -> Result<(), RoleArnProblem> {
    use RoleArnProblem::Invalid;
    let arn = split_arn(value).ok_or(Invalid("not an ARN"))?;
    if arn.service != "iam" {
        return Err(Invalid("the service must be `iam`"));
    }
    if !arn.region.is_empty() {
        return Err(Invalid("IAM ARNs have no region"));
    }
    if !is_account_id(arn.account) {
        return Err(Invalid("the account must be 12 digits"));
    }
    let path_and_name =
        arn.resource.strip_prefix("role/").ok_or(Invalid("the resource must be `role/<name>`"))?;
    // The name is the last segment; anything before it is the path (`/` or `/a/b/`).
    let (path, name) = match path_and_name.rsplit_once('/') {
        Some((path, name)) => (path, name),
        None => ("", path_and_name),
    };
    if !is_role_name(name) {
        return Err(Invalid("the role name must be 1 to 64 characters of A-Za-z0-9_+=,.@-"));
    }
    let empty_segment = !path.is_empty() && path.split('/').any(str::is_empty);
    if path.len() > 510 || !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) || empty_segment {
        return Err(Invalid("the role path must be printable ASCII without empty segments"));
    }
    if arn.partition != partition {
        return Err(RoleArnProblem::Partition(arn.partition.to_string()));
    }
    Ok(())
}

/// Checks the trusted principal and returns it as the ARN IAM stores: a bare account id becomes
/// `arn:<partition>:iam::<id>:root` (what IAM rewrites it to anyway).
pub(crate) fn trusted_principal(field: &str, value: &str, partition: &str) -> Result<String, PolicyError> {
    if is_account_id(value) {
        return Ok(format!("arn:{partition}:iam::{value}:root"));
    }
    let invalid =
        || PolicyError::InvalidTrustedPrincipal { field: field.to_string(), value: value.to_string() };
    let arn = split_arn(value).ok_or_else(invalid)?;
    if arn.service == "iam" && arn.region.is_empty() && is_account_id(arn.account) && arn.resource == "root" {
        same_partition(field, value, arn.partition, partition)?;
        return Ok(value.to_string());
    }
    if arn.resource.starts_with("role/") {
        role_arn(field, value, partition)?;
        return Ok(value.to_string());
    }
    Err(invalid())
}

/// Checks an STS external ID: 2 to 1224 characters of `[\w+=,.@:/-]`.
pub(crate) fn external_id(field: &str, value: &str) -> Result<(), PolicyError> {
    let err = |reason: String| PolicyError::InvalidExternalId { field: field.to_string(), reason };
    let len = value.chars().count();
    if !(2..=1224).contains(&len) {
        return Err(err(format!("has {len} characters")));
    }
    match value.chars().position(|c| !(c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))) {
        Some(position) => Err(err(format!("has a character that is not allowed at position {position}"))),
        None => Ok(()),
    }
}

/// Checks a key prefix and returns it without leading or trailing `/`, so it can be joined
/// as `bucket/prefix/*` (empty: the whole bucket).
pub(crate) fn prefix(field: &str, value: &str) -> Result<String, PolicyError> {
    let err =
        |reason| PolicyError::InvalidPrefix { field: field.to_string(), value: value.to_string(), reason };
    let trimmed = value.trim_matches('/');
    if trimmed.len() > 1000 {
        return Err(err("must be at most 1000 bytes"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(err("must not contain control characters"));
    }
    // `*` and `?` are wildcards and `${` starts a policy variable in an IAM resource.
    if trimmed.contains(['*', '?']) || trimmed.contains("${") {
        return Err(err("must not contain `*`, `?` or `${` (they mean something else in an IAM resource)"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        let cases: &[(&str, bool)] = &[
            ("abc", true),
            ("my-bucket.logs-2024", true),
            ("a1b", true),
            ("ab", false),
            (&"a".repeat(64), false),
            ("MyBucket", false),
            ("my_bucket", false),
            ("-abc", false),
            ("abc-", false),
            (".abc", false),
            ("a..b", false),
            ("192.168.5.4", false),
            ("192.168.5", true),
            ("xn--abc", false),
            ("sthree-abc", false),
            ("amzn-s3-demo-bucket", false),
            ("abc-s3alias", false),
            ("abc--ol-s3", false),
            ("abc.mrap", false),
            ("abc--x-s3", false),
            ("abc--table-s3", false),
            ("ünï", false),
        ];
        for (name, ok) in cases {
            assert_eq!(bucket_name("f", name).is_ok(), *ok, "{name}");
        }
    }

    #[test]
    fn regions() {
        let cases: &[(&str, &str, bool)] = &[
            ("us-east-1", "aws", true),
            ("ap-southeast-2", "aws", true),
            ("eu-central-2", "aws", true),
            ("us-gov-west-1", "aws-us-gov", true),
            ("us-gov-west-1", "aws", false),
            ("us-east-1", "aws-us-gov", false),
            ("cn-north-1", "aws", false),
            ("useast1", "aws", false),
            ("us-east", "aws", false),
            ("US-EAST-1", "aws", false),
            ("us-east-123", "aws", false),
            ("", "aws", false),
            ("us--1", "aws", false),
        ];
        for (region_code, partition, ok) in cases {
            assert_eq!(region("f", region_code, partition).is_ok(), *ok, "{region_code} {partition}");
        }
    }

    #[test]
    fn key_arns() {
        const UUID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let ok = format!("arn:aws:kms:us-east-1:111122223333:key/{UUID}");
        let mrk = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        let cases: Vec<(String, &str)> = vec![
            (ok.clone(), "ok"),
            (mrk.to_string(), "ok"),
            ("arn:aws:kms:us-east-1:111122223333:alias/data".into(), "POLICY_KEY_ALIAS_NOT_ALLOWED"),
            ("alias/data".into(), "POLICY_KEY_ALIAS_NOT_ALLOWED"),
            (UUID.into(), "POLICY_INVALID_KEY_ARN"),
            (format!("arn:aws:s3:us-east-1:111122223333:key/{UUID}"), "POLICY_INVALID_KEY_ARN"),
            (format!("arn:aws:kms:us-east-1:1111:key/{UUID}"), "POLICY_INVALID_KEY_ARN"),
            ("arn:aws:kms:us-east-1:111122223333:key/not-a-uuid".into(), "POLICY_INVALID_KEY_ARN"),
            (
                format!("arn:aws:kms:us-east-1:111122223333:key/{}", UUID.to_uppercase()),
                "POLICY_INVALID_KEY_ARN",
            ),
            (format!("arn:aws:kms:eu-west-1:111122223333:key/{UUID}"), "POLICY_KEY_REGION_MISMATCH"),
            (format!("arn:aws-us-gov:kms:us-east-1:111122223333:key/{UUID}"), "POLICY_PARTITION_MISMATCH"),
            ("arn:aws:kms".into(), "POLICY_INVALID_KEY_ARN"),
        ];
        for (arn, code) in cases {
            let got = kms_key_arn("k", &arn, "aws", "us-east-1").map_or_else(|e| e.code(), |()| "ok");
            assert_eq!(got, code, "{arn}");
        }
    }

    #[test]
    fn role_arns_and_trusted_principals() {
        let cases: &[(&str, &str)] = &[
            ("arn:aws:iam::111122223333:role/analyst", "ok"),
            ("arn:aws:iam::111122223333:role/service-role/team/analyst", "ok"),
            ("arn:aws:iam::111122223333:user/alice", "POLICY_INVALID_ROLE_ARN"),
            ("arn:aws:iam:us-east-1:111122223333:role/x", "POLICY_INVALID_ROLE_ARN"),
            ("arn:aws:iam::11112222333:role/x", "POLICY_INVALID_ROLE_ARN"),
            ("arn:aws:iam::111122223333:role/", "POLICY_INVALID_ROLE_ARN"),
            ("arn:aws:iam::111122223333:role/a//b", "POLICY_INVALID_ROLE_ARN"),
            ("arn:aws:iam::111122223333:role/bad name", "POLICY_INVALID_ROLE_ARN"),
            ("arn:aws-us-gov:iam::111122223333:role/x", "POLICY_PARTITION_MISMATCH"),
            ("analyst", "POLICY_INVALID_ROLE_ARN"),
        ];
        for (arn, code) in cases {
            let got = role_arn("r", arn, "aws").map_or_else(|e| e.code(), |()| "ok");
            assert_eq!(got, *code, "{arn}");
        }
        let principals: &[(&str, Result<&str, &str>)] = &[
            ("444455556666", Ok("arn:aws:iam::444455556666:root")),
            ("arn:aws:iam::444455556666:root", Ok("arn:aws:iam::444455556666:root")),
            ("arn:aws:iam::444455556666:role/vendor", Ok("arn:aws:iam::444455556666:role/vendor")),
            ("arn:aws:iam::444455556666:user/vendor", Err("POLICY_INVALID_TRUSTED_PRINCIPAL")),
            ("*", Err("POLICY_INVALID_TRUSTED_PRINCIPAL")),
            ("44445555666", Err("POLICY_INVALID_TRUSTED_PRINCIPAL")),
            ("arn:aws-us-gov:iam::444455556666:root", Err("POLICY_PARTITION_MISMATCH")),
        ];
        for (value, expected) in principals {
            let got = trusted_principal("t", value, "aws");
            assert_eq!(got.as_deref().map_err(|e| e.code()), *expected, "{value}");
        }
    }

    #[test]
    fn external_ids_never_echo_the_value() {
        let cases: &[(&str, bool)] = &[
            ("ab", true),
            ("Tenant_42+=,.@:/-x", true),
            ("#", false),
            ("secret with space", false),
            ("naïve", false),
        ];
        for (value, ok) in cases {
            let got = external_id("external_id", value);
            assert_eq!(got.is_ok(), *ok, "{value}");
            if let Err(e) = got {
                assert!(!e.to_string().contains(value), "{e}");
            }
        }
        assert!(external_id("x", &"a".repeat(1224)).is_ok());
        assert!(external_id("x", &"a".repeat(1225)).is_err());
    }

    #[test]
    fn prefixes() {
        let cases: &[(&str, Result<&str, ()>)] = &[
            ("", Ok("")),
            ("/", Ok("")),
            ("inventory/", Ok("inventory")),
            ("/a/b/", Ok("a/b")),
            ("a*", Err(())),
            ("a?b", Err(())),
            ("${aws:username}", Err(())),
            ("a\nb", Err(())),
        ];
        for (value, expected) in cases {
            let got = prefix("p", value);
            assert_eq!(got.as_deref().map_err(|_| ()), *expected, "{value:?}");
        }
    }

    #[test]
    fn partitions_and_account_ids() {
        assert_eq!(partition_dns_suffix("p", "aws"), Ok("amazonaws.com"));
        assert_eq!(partition_dns_suffix("p", "aws-us-gov"), Ok("amazonaws.com"));
        assert_eq!(
            partition_dns_suffix("p", "aws-cn").map_err(|e| e.code()),
            Err("POLICY_UNSUPPORTED_PARTITION")
        );
        assert!(account_id("a", "111122223333").is_ok());
        for bad in ["11112222333", "1111222233334", "11112222333a", "", "１１１１２２２２３３３３"]
        {
            assert!(account_id("a", bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn parsers_never_panic(s in "\\PC{0,80}") {
                let _ = bucket_name("f", &s);
                let _ = region("f", &s, "aws");
                let _ = kms_key_arn("f", &s, "aws", "us-east-1");
                let _ = role_arn("f", &s, "aws");
                let _ = trusted_principal("f", &s, "aws");
                let _ = external_id("f", &s);
                let _ = prefix("f", &s);
                let _ = role_name("f", &s);
                let _ = function_name("f", &s);
                let _ = account_id("f", &s);
            }

            #[test]
            fn arn_shaped_input_never_panics(s in "arn:[a-z-]{0,12}:(kms|iam|s3)?:[a-z0-9-]{0,12}:[0-9]{0,13}:[ -~]{0,40}") {
                let _ = kms_key_arn("f", &s, "aws", "us-east-1");
                let _ = role_arn("f", &s, "aws");
                let _ = trusted_principal("f", &s, "aws");
            }

            #[test]
            fn valid_bucket_names_are_accepted(s in "[a-z0-9][a-z0-9-]{1,40}[a-z0-9]") {
                prop_assume!(!s.starts_with("xn--") && !s.starts_with("sthree-") && !s.starts_with("amzn-s3-demo-"));
                prop_assume!(!s.ends_with("-s3alias") && !s.ends_with("--ol-s3") && !s.ends_with("--x-s3") && !s.ends_with("--table-s3"));
                prop_assert!(bucket_name("f", &s).is_ok());
            }

            #[test]
            fn valid_key_arns_are_accepted(id in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", acct in "[0-9]{12}") {
                let arn = format!("arn:aws:kms:eu-west-1:{acct}:key/{id}");
                prop_assert!(kms_key_arn("f", &arn, "aws", "eu-west-1").is_ok());
            }

            #[test]
            fn valid_external_ids_are_accepted(s in "[A-Za-z0-9_+=,.@:/-]{2,200}") {
                prop_assert!(external_id("f", &s).is_ok());
            }

            #[test]
            fn valid_role_arns_are_accepted(acct in "[0-9]{12}", path in "(/[a-z0-9]{1,10}){0,3}", name in "[A-Za-z0-9_+=,.@-]{1,64}") {
                let arn = format!("arn:aws:iam::{acct}:role{path}/{name}");
                prop_assert!(role_arn("f", &arn, "aws").is_ok(), "{}", arn);
            }
        }
    }
}
