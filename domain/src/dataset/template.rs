//! User-supplied path templates that override the heuristics for the keys they match.

use std::fmt;
use std::str::FromStr;

use super::heuristics::{decode_value, format_from_key, hive_pair};
use super::{DatasetKey, PartitionStyle, Placement};

/// Why a template string was rejected. Every variant names the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not start with `s3://`.
    #[error("template {template:?}: must start with s3://")]
    MissingScheme {
        /// The template as given.
        template: String,
    },
    /// The bucket part is empty or holds a placeholder.
    #[error("template {template:?}: bucket must be a name or `*`")]
    InvalidBucket {
        /// The template as given.
        template: String,
    },
    /// No path segment follows the bucket.
    #[error("template {template:?}: no path after the bucket")]
    EmptyPath {
        /// The template as given.
        template: String,
    },
    /// Two slashes in a row (or a trailing slash before nothing).
    #[error("template {template:?}: empty segment at position {position}")]
    EmptySegment {
        /// The template as given.
        template: String,
        /// 1-based position of the segment after the bucket.
        position: usize,
    },
    /// A segment mixes literal text and braces, or has unbalanced braces.
    #[error("template {template:?}: segment {segment:?} must be a literal, `*` or a whole placeholder")]
    InvalidSegment {
        /// The template as given.
        template: String,
        /// The offending segment.
        segment: String,
    },
    /// A placeholder name is empty or not `[A-Za-z0-9_]`.
    #[error("template {template:?}: invalid placeholder name {name:?}")]
    InvalidName {
        /// The template as given.
        template: String,
        /// The offending name.
        name: String,
    },
    /// `{table}` appears twice.
    #[error("template {template:?}: {{table}} appears more than once")]
    DuplicateTable {
        /// The template as given.
        template: String,
    },
    /// `{table}` follows a partition, which would split one table per partition value.
    #[error("template {template:?}: {{table}} must come before every partition")]
    TableAfterPartition {
        /// The template as given.
        template: String,
    },
    /// Two partition placeholders share a name.
    #[error("template {template:?}: partition {{{name}}} appears more than once")]
    DuplicatePartition {
        /// The template as given.
        template: String,
        /// The repeated name.
        name: String,
    },
    /// `*` is not the last segment.
    #[error("template {template:?}: `*` must be the last segment")]
    WildcardNotLast {
        /// The template as given.
        template: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Table,
    Hive,
    Named(String),
    Rest,
}

/// A parsed path template such as `s3://bucket/{table}/{partition_key}={partition_value}/*`.
///
/// Segments after the bucket are matched one for one against the key's segments:
/// - a literal must equal the key's segment;
/// - `{table}` takes one segment and ends the dataset root;
/// - `{partition_key}={partition_value}` takes one `k=v` segment as a partition;
/// - any other `{name}` takes one segment as partition `name`;
/// - `*` (last only) takes one or more remaining segments, the file name included.
///
/// Without `*`, the template describes the directory and the file must sit directly in it.
/// Without `{table}`, the root ends before the first partition placeholder. The bucket part is
/// a literal name or `*`. Keys that do not match fall back to the heuristics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    bucket: Option<String>,
    segments: Vec<Segment>,
}

impl FromStr for PathTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PathTemplate::parse(s)
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl PathTemplate {
    /// Parse a template; see the type's documentation for the syntax.
    pub fn parse(s: &str) -> Result<PathTemplate, TemplateError> {
        let template = || s.to_string();
        let rest =
            s.strip_prefix("s3://").ok_or_else(|| TemplateError::MissingScheme { template: template() })?;
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(['{', '}']) || (bucket.contains('*') && bucket != "*") {
            return Err(TemplateError::InvalidBucket { template: template() });
        }
        if path.is_empty() {
            return Err(TemplateError::EmptyPath { template: template() });
        }
        let raw: Vec<&str> = path.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut seen_partition = false;
        for (idx, seg) in raw.iter().enumerate() {
            let segment = match *seg {
                "" => {
                    return Err(TemplateError::EmptySegment { template: template(), position: idx + 1 });
                }
                "*" if idx + 1 == raw.len() => Segment::Rest,
                "*" => {
                    return Err(TemplateError::WildcardNotLast { template: template() });
                }
                "{partition_key}={partition_value}" => Segment::Hive,
                _ => match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) if name.contains(['{', '}']) => {
                        return Err(TemplateError::InvalidSegment {
                            template: template(),
                            segment: seg.to_string(),
                        });
                    }
                    Some(name) if !valid_name(name) => {
                        return Err(TemplateError::InvalidName {
                            template: template(),
                            name: name.to_string(),
                        });
                    }
                    Some("table") => Segment::Table,
                    Some(name) => Segment::Named(name.to_string()),
                    None if seg.contains(['{', '}', '*']) => {
                        return Err(TemplateError::InvalidSegment {
                            template: template(),
                            segment: seg.to_string(),
                        });
                    }
                    None => Segment::Literal(seg.to_string()),
                },
            };
            match segment {
                Segment::Table if segments.contains(&Segment::Table) => {
                    return Err(TemplateError::DuplicateTable { template: template() });
                }
                Segment::Table if seen_partition => {
                    return Err(TemplateError::TableAfterPartition { template: template() });
                }
                Segment::Named(ref name) if segments.contains(&segment) => {
                    return Err(TemplateError::DuplicatePartition {
                        template: template(),
                        name: name.clone(),
                    });
                }
                Segment::Hive | Segment::Named(_) => seen_partition = true,
                _ => {}
            }
            segments.push(segment);
        }
        Ok(PathTemplate {
            source: s.to_string(),
            bucket: (bucket != "*").then(|| bucket.to_string()),
            segments,
        })
    }

    /// The template text as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The placement of `key` in `bucket` if this template matches it.
    pub(crate) fn place(&self, bucket: &str, key: &str) -> Option<Placement> {
        if self.bucket.as_deref().is_some_and(|b| b != bucket) {
            return None;
        }
        let parts: Vec<&str> = key.split('/').collect();
        let has_rest = self.segments.last() == Some(&Segment::Rest);
        let fixed = self.segments.len() - usize::from(has_rest);
        // Without `*` the file sits right after the fixed segments; with it, at least one more.
        if (has_rest && parts.len() <= fixed) || (!has_rest && parts.len() != fixed + 1) {
            return None;
        }
        let mut partitions = Vec::new();
        let mut root_end: Option<usize> = None;
        let mut first_partition: Option<usize> = None;
        for (i, (segment, part)) in self.segments[..fixed].iter().zip(&parts).enumerate() {
            if part.is_empty() {
                return None;
            }
            match segment {
                Segment::Literal(lit) if lit.as_str() == *part => {}
                Segment::Literal(_) | Segment::Rest => return None,
                Segment::Table => root_end = Some(i + 1),
                Segment::Hive => {
                    partitions.push(hive_pair(part)?);
                    first_partition.get_or_insert(i);
                }
                Segment::Named(name) => {
                    partitions.push((name.clone(), decode_value(part)));
                    first_partition.get_or_insert(i);
                }
            }
        }
        let root_segments = root_end.or(first_partition).unwrap_or(fixed);
        let prefix: String = parts[..root_segments].iter().flat_map(|p| [*p, "/"]).collect();
        let (format, compression) = format_from_key(key);
        Some(Placement {
            dataset: DatasetKey { prefix, format },
            compression,
            partitions,
            style: PartitionStyle::Template,
        })
    }
}
