//! From probe results to "can extraction / incremental extraction / sampling work?".

use super::CheckScope;
use super::report::{ProbeKind, ProbeResult, ProbeStatus, Readiness, ReadinessItem};

fn reason(p: &ProbeResult) -> String {
    format!("{} {}: {}", p.probe.as_str(), p.resource, p.summary)
}

fn used_for_source(p: &ProbeResult) -> bool {
    p.details.get("used_for").map(String::as_str) != Some("inventory-report")
}

/// Which capabilities a failed probe blocks: (extraction, incremental, sampling).
fn blocks(p: &ProbeResult, source_buckets: &[&str]) -> (bool, bool, bool) {
    let is_source = |p: &ProbeResult| p.bucket.as_deref().is_some_and(|b| source_buckets.contains(&b));
    match p.probe {
        ProbeKind::CallerIdentity | ProbeKind::RoleAssumption => (true, true, false),
        ProbeKind::ListBucket | ProbeKind::ReadObject => (is_source(p), true, false),
        ProbeKind::Decrypt => (used_for_source(p), true, false),
        // A key in an unusable state breaks reads even where no object was sampled.
        ProbeKind::DescribeKey => {
            let state = matches!(
                p.problem_code.as_deref(),
                Some(
                    "KMS_KEY_DISABLED"
                        | "KMS_KEY_PENDING_DELETION"
                        | "KMS_KEY_INVALID_STATE"
                        | "KMS_KEY_NOT_SYMMETRIC"
                )
            );
            (state && used_for_source(p), state, false)
        }
        ProbeKind::InventoryDestination | ProbeKind::InventoryKeyPolicy => (false, true, false),
        ProbeKind::SamplingIdentity | ProbeKind::SamplingDecrypt => (false, false, true),
        // SSE-C keys are read at start-up: without them SSE-C objects cannot be sampled.
        ProbeKind::SseCKeySecret => (false, false, true),
        // Informational for the connector; inventory configurations are judged per bucket below.
        ProbeKind::ConfusedDeputy
        | ProbeKind::BucketRegion
        | ProbeKind::BucketEncryption
        | ProbeKind::BucketPolicy
        | ProbeKind::InventoryConfiguration => (false, false, false),
    }
}

pub(super) fn assess(probes: &[ProbeResult], scope: &CheckScope, sampling: bool) -> Readiness {
    let sources: Vec<&str> = scope.targets.iter().map(|t| t.bucket.as_str()).collect();
    let mut extraction = Vec::new();
    let mut incremental = Vec::new();
    let mut sampling_reasons = Vec::new();
    for p in probes {
        let skipped_prerequisite = p.status == ProbeStatus::Skipped
            && matches!(p.probe, ProbeKind::CallerIdentity | ProbeKind::ListBucket);
        if p.status != ProbeStatus::Fail && !skipped_prerequisite {
            continue;
        }
        let (e, i, s) = blocks(p, &sources);
        if e || skipped_prerequisite {
            extraction.push(reason(p));
        }
        if i || skipped_prerequisite {
            incremental.push(reason(p));
        }
        if s {
            sampling_reasons.push(reason(p));
        }
    }
    // Each source bucket needs one enabled inventory configuration.
    for bucket in &sources {
        let enabled = probes.iter().any(|p| {
            p.probe == ProbeKind::InventoryConfiguration
                && p.status == ProbeStatus::Pass
                && p.bucket.as_deref() == Some(bucket)
        });
        if !enabled {
            let why = probes
                .iter()
                .find(|p| p.probe == ProbeKind::InventoryConfiguration && p.bucket.as_deref() == Some(bucket))
                .map(reason)
                .unwrap_or_else(|| format!("INVENTORY_CONFIGURATION {bucket}: not checked"));
            incremental.push(why);
        }
    }
    // Incremental extraction starts from a full one.
    if !extraction.is_empty() && !incremental.iter().any(|r| r.starts_with("extraction")) {
        incremental.insert(0, "extraction is not ready".to_string());
    }
    incremental.dedup();
    let item = |reasons: Vec<String>| ReadinessItem { checked: true, ready: reasons.is_empty(), reasons };
    Readiness {
        extraction: item(extraction),
        incremental: item(incremental),
        sampling: if sampling {
            item(sampling_reasons)
        } else {
            ReadinessItem {
                checked: false,
                ready: false,
                reasons: vec![
                    "no sampling identity given (--sampling-role-arn or --sampling-web-identity-token-file)"
                        .into(),
                ],
            }
        },
    }
}
