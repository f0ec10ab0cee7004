//! `s3-connector policy`: the IAM and KMS policy documents for a described setup. No AWS calls.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use s3_connector_domain::policy::{self, PolicySetup, presets};

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyFormat {
    /// Titled sections with pretty JSON, for people.
    Text,
    /// One JSON object with every document, for tools.
    Json,
}

/// A ready-made setup to start from.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Example {
    /// One KMS key for the source buckets and the inventory destination.
    SameKey,
    /// Different keys for source and destination.
    DifferentKeys,
    /// SSE-KMS source, SSE-S3 forwarding destination, inventory report under a second key.
    KmsSourceSseS3Destination,
}

/// Options of `policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The setup, as TOML (`.toml`) or JSON (any other extension); see `--example`.
    #[arg(long, value_name = "FILE", required_unless_present = "example")]
    pub setup: Option<PathBuf>,
    /// Print an example setup (TOML) instead of documents.
    #[arg(long, value_enum, conflicts_with = "setup")]
    pub example: Option<Example>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PolicyFormat::Text)]
    pub format: PolicyFormat,
}

/// Reads a setup file.
pub fn read_setup(path: &std::path::Path) -> anyhow::Result<PolicySetup> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        toml::from_str(&text).with_context(|| format!("invalid setup in {}", path.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("invalid setup in {}", path.display()))
    }
}

/// The documents as one JSON object, keyed by their stable names.
pub fn documents_json(docs: &policy::PolicyDocuments) -> serde_json::Value {
    serde_json::Value::Object(
        docs.named().into_iter().map(|(name, doc)| (name.to_string(), doc.clone())).collect(),
    )
}

/// Renders what `policy` prints.
pub fn render(args: &PolicyArgs) -> anyhow::Result<String> {
    if let Some(example) = args.example {
        let setup = match example {
            Example::SameKey => presets::same_key(),
            Example::DifferentKeys => presets::different_keys(),
            Example::KmsSourceSseS3Destination => presets::kms_source_sse_s3_destination(),
        };
        return toml::to_string_pretty(&setup).context("cannot render the example");
    }
    let Some(path) = &args.setup else { bail!("--setup FILE or --example is required") };
    let setup = read_setup(path)?;
    let docs = policy::generate(&setup).map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    Ok(match args.format {
        PolicyFormat::Text => policy::render_text(&docs),
        PolicyFormat::Json => serde_json::to_string_pretty(&documents_json(&docs))? + "\n",
    })
}

/// Runs `policy`; returns the exit code.
pub fn run(args: PolicyArgs) -> anyhow::Result<i32> {
    print!("{}", render(&args)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_round_trips_through_toml_into_documents() {
        for example in [Example::SameKey, Example::DifferentKeys, Example::KmsSourceSseS3Destination] {
            let toml_text =
                render(&PolicyArgs { setup: None, example: Some(example), format: PolicyFormat::Text })
                    .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("setup.toml");
            std::fs::write(&path, &toml_text).unwrap();
            let out =
                render(&PolicyArgs { setup: Some(path), example: None, format: PolicyFormat::Json }).unwrap();
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            let trust = &json["connectorTrustPolicy"]["Statement"][0];
            assert_eq!(trust["Action"], "sts:AssumeRole", "{example:?}");
            assert!(trust["Condition"]["StringEquals"]["sts:ExternalId"].is_string(), "{example:?}");
            assert!(json["connectorIdentityPolicy"]["Statement"].as_array().is_some_and(|s| !s.is_empty()));
        }
    }

    #[test]
    fn an_invalid_setup_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("setup.json");
        let mut setup = serde_json::to_value(presets::same_key()).unwrap();
        setup["source_buckets"][0]["kms_key_arn"] = "alias/data".into();
        std::fs::write(&path, setup.to_string()).unwrap();
        let err =
            render(&PolicyArgs { setup: Some(path), example: None, format: PolicyFormat::Json }).unwrap_err();
        assert!(err.to_string().contains("source_buckets[0].kms_key_arn"), "{err}");
    }
}
