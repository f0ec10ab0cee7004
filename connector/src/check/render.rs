//! The human table of a check, and the exit code.

use std::fmt::Write as _;

use super::report::{CheckReport, FindingSeverity, ProbeStatus};

/// Every checked capability is ready and there is no security finding.
pub const EXIT_READY: i32 = 0;
/// Base of the "not ready" codes: `10 + mask`.
pub const EXIT_NOT_READY_BASE: i32 = 10;
/// Mask bit: extraction is not ready.
pub const MASK_EXTRACTION: i32 = 1;
/// Mask bit: incremental extraction is not ready.
pub const MASK_INCREMENTAL: i32 = 2;
/// Mask bit: sampling was checked and is not ready.
pub const MASK_SAMPLING: i32 = 4;
/// Mask bit: a security finding (e.g. confused deputy).
pub const MASK_SECURITY: i32 = 8;

/// The process exit code for a report: 0 when ready, else `10 + mask` (11..=25).
pub fn exit_code(report: &CheckReport) -> i32 {
    let r = &report.readiness;
    let mut mask = 0;
    if !r.extraction.ready {
        mask |= MASK_EXTRACTION;
    }
    if !r.incremental.ready {
        mask |= MASK_INCREMENTAL;
    }
    if r.sampling.checked && !r.sampling.ready {
        mask |= MASK_SAMPLING;
    }
    if report.findings.iter().any(|f| f.severity == FindingSeverity::Security) {
        mask |= MASK_SECURITY;
    }
    if mask == 0 { EXIT_READY } else { EXIT_NOT_READY_BASE + mask }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The table: one line per probe, then remediation blocks for failures, findings and readiness.
pub fn render_text(report: &CheckReport) -> String {
    let mut out = String::new();
    if let Some(id) = &report.identity {
        let _ = writeln!(out, "identity: {} (account {})\n", id.arn, id.account);
    }
    let width = report.probes.iter().map(|p| p.resource.chars().count()).max().unwrap_or(8).clamp(8, 60);
    let _ = writeln!(out, "{:<8} {:<24} {:<width$}  DETAIL", "STATUS", "PROBE", "RESOURCE");
    for p in &report.probes {
        let _ = writeln!(
            out,
            "{:<8} {:<24} {:<width$}  {}",
            p.status.as_str(),
            p.probe.as_str(),
            truncate(&p.resource, width),
            p.summary
        );
    }
    let failures: Vec<_> = report.probes.iter().filter(|p| p.status == ProbeStatus::Fail).collect();
    if !failures.is_empty() {
        out.push_str("\nFailures\n");
        for p in failures {
            let _ = writeln!(
                out,
                "\n* {} {} [{}]",
                p.probe.as_str(),
                p.resource,
                p.problem_code.as_deref().unwrap_or("-")
            );
            if let Some(e) = &p.evidence {
                let _ = writeln!(
                    out,
                    "  evidence: {}{}",
                    e.error_code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(),
                    e.message
                );
            }
            if let Some(s) = &p.remediation_summary {
                let _ = writeln!(out, "  fix: {s}");
            }
            if let Some(statement) = &p.remediation {
                let pretty = serde_json::from_str::<serde_json::Value>(statement)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or_else(|| statement.clone());
                for line in pretty.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    if !report.findings.is_empty() {
        out.push_str("\nFindings\n");
        for f in &report.findings {
            let _ = writeln!(out, "* [{:?}] {}: {}", f.severity, f.code, f.message);
        }
    }
    out.push_str("\nReadiness\n");
    let r = &report.readiness;
    for (name, item) in
        [("extraction", &r.extraction), ("incremental", &r.incremental), ("sampling", &r.sampling)]
    {
        let state = match (item.checked, item.ready) {
            (false, _) => "not checked",
            (true, true) => "ready",
            (true, false) => "NOT READY",
        };
        let _ = writeln!(out, "  {name:<12} {state}");
        for reason in &item.reasons {
            let _ = writeln!(out, "    - {reason}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::{Finding, ProbeKind, ProbeResult, Readiness, ReadinessItem};

    fn item(checked: bool, ready: bool) -> ReadinessItem {
        ReadinessItem { checked, ready, reasons: if ready { Vec::new() } else { vec!["why".into()] } }
    }

    fn report(extraction: bool, incremental: bool, sampling: ReadinessItem, security: bool) -> CheckReport {
        CheckReport {
            identity: None,
            probes: vec![ProbeResult::new(ProbeKind::ListBucket, "b", ProbeStatus::Fail, "denied")],
            findings: if security {
                vec![Finding {
                    code: "CONFUSED_DEPUTY".into(),
                    severity: FindingSeverity::Security,
                    resource: "r".into(),
                    buckets: Vec::new(),
                    message: "m".into(),
                    remediation: None,
                }]
            } else {
                Vec::new()
            },
            readiness: Readiness {
                extraction: item(true, extraction),
                incremental: item(true, incremental),
                sampling,
            },
        }
    }

    #[test]
    fn exit_codes_carry_one_bit_per_capability() {
        assert_eq!(
            exit_code(&report(true, true, item(false, false), false)),
            0,
            "unchecked sampling does not count"
        );
        assert_eq!(exit_code(&report(true, true, item(true, true), false)), 0);
        assert_eq!(exit_code(&report(false, false, item(false, false), false)), 13);
        assert_eq!(exit_code(&report(true, false, item(true, false), false)), 16);
        assert_eq!(exit_code(&report(true, true, item(true, true), true)), 18);
        assert_eq!(exit_code(&report(false, false, item(true, false), true)), 25);
    }

    #[test]
    fn the_table_names_every_probe_and_readiness() {
        let text = render_text(&report(false, false, item(false, false), true));
        assert!(text.contains("FAIL     LIST_BUCKET"), "{text}");
        assert!(text.contains("CONFUSED_DEPUTY"), "{text}");
        assert!(text.contains("extraction   NOT READY"), "{text}");
        assert!(text.contains("sampling     not checked"), "{text}");
    }
}
