//! The one error type of schema inference.

use crate::model::{Compression, FileFormat};

/// Why a file's schema could not be inferred. Every variant carries enough context to be
/// logged as is; [`InferenceError::code`] gives a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// The file ends before its structure does (cut footer, header or stream).
    #[error("{format} file truncated at offset {offset}: {detail}")]
    FileTruncated {
        /// Format being read.
        format: FileFormat,
        /// Byte offset (in the object, or in the decoded stream for compressed text).
        offset: u64,
        /// What was missing.
        detail: String,
    },
    /// The bytes do not follow the format.
    #[error("{format} file malformed at offset {offset}: {detail}")]
    FileMalformed {
        /// Format being read.
        format: FileFormat,
        /// Byte offset of the problem, as close as known.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Text that is not UTF-8.
    #[error("{format} file is not valid UTF-8 at decoded offset {offset}")]
    InvalidUtf8 {
        /// Format being read.
        format: FileFormat,
        /// Offset of the first invalid byte in the decoded text.
        offset: u64,
    },
    /// The first line does not end within the line limit.
    #[error("{format} file: line at offset {offset} is longer than {limit} bytes")]
    LineTooLong {
        /// Format being read.
        format: FileFormat,
        /// Offset where the line starts.
        offset: u64,
        /// The configured `max_line_bytes`.
        limit: usize,
    },
    /// The outer compression could not be decoded.
    #[error("{format} file: {compression} decompression failed at decoded offset {offset}: {detail}")]
    DecompressionFailed {
        /// Format being read.
        format: FileFormat,
        /// The compression that failed (outer, or the ORC codec).
        compression: String,
        /// Decoded bytes produced before the failure.
        offset: u64,
        /// Decoder message.
        detail: String,
    },
    /// NUL bytes or control characters where text was expected.
    #[error("{format} file contains binary content at decoded offset {offset}")]
    BinaryContent {
        /// Format being read.
        format: FileFormat,
        /// Offset of the first offending byte.
        offset: u64,
    },
    /// A format (or codec inside a format) we do not read.
    #[error("unsupported format {format}: {detail}")]
    UnsupportedFormat {
        /// Format as detected.
        format: FileFormat,
        /// Why it is unsupported.
        detail: String,
    },
    /// A Parquet file with an encrypted footer (`PARE`); its schema needs the key.
    #[error("parquet footer is encrypted (PARE magic)")]
    ParquetEncryptedFooter,
    /// A zero-byte object, or one with no records at all.
    #[error("{format} file is empty")]
    EmptyFile {
        /// Format as detected.
        format: FileFormat,
    },
}

impl InferenceError {
    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            InferenceError::FileTruncated { .. } => "FILE_TRUNCATED",
            InferenceError::FileMalformed { .. } => "FILE_MALFORMED",
            InferenceError::InvalidUtf8 { .. } => "INVALID_UTF8",
            InferenceError::LineTooLong { .. } => "LINE_TOO_LONG",
            InferenceError::DecompressionFailed { .. } => "DECOMPRESSION_FAILED",
            InferenceError::BinaryContent { .. } => "BINARY_CONTENT",
            InferenceError::UnsupportedFormat { .. } => "UNSUPPORTED_FORMAT",
            InferenceError::ParquetEncryptedFooter => "PARQUET_ENCRYPTED_FOOTER",
            InferenceError::EmptyFile { .. } => "EMPTY_FILE",
        }
    }

    pub(crate) fn truncated(format: FileFormat, offset: u64, detail: impl Into<String>) -> Self {
        InferenceError::FileTruncated { format, offset, detail: detail.into() }
    }

    pub(crate) fn malformed(format: FileFormat, offset: u64, detail: impl Into<String>) -> Self {
        InferenceError::FileMalformed { format, offset, detail: detail.into() }
    }

    pub(crate) fn decompression(
        format: FileFormat,
        compression: Compression,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        InferenceError::DecompressionFailed {
            format,
            compression: compression.as_str().to_string(),
            offset,
            detail: detail.into(),
        }
    }
}
