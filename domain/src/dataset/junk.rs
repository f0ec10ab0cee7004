//! Recognising objects that are not data: job markers, checksums, temporary and hidden files.

/// Why an object is not part of any dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JunkReason {
    /// A job marker: `_SUCCESS`, `_started_*`, `_committed_*`.
    SuccessMarker,
    /// A folder placeholder: a key ending in `/` or `_$folder$`.
    FolderMarker,
    /// A Hadoop checksum file: `*.crc`.
    Checksum,
    /// Inside a `_temporary`, `.spark-staging*` or `_spark_metadata` directory.
    Temporary,
    /// A segment starting with `.`, or a file name starting with `_`.
    Hidden,
    /// An empty object.
    ZeroByte,
    /// An S3 Encryption Client instruction file (`<key>.instruction`): the wrapped key of a
    /// client-side encrypted object. Not data, and never safe to delete.
    EncryptionInstructions,
}

impl JunkReason {
    /// Every reason, in declaration order.
    pub const ALL: [JunkReason; 7] = [
        JunkReason::SuccessMarker,
        JunkReason::FolderMarker,
        JunkReason::Checksum,
        JunkReason::Temporary,
        JunkReason::Hidden,
        JunkReason::ZeroByte,
        JunkReason::EncryptionInstructions,
    ];

    /// Stable lowercase name used in records and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            JunkReason::SuccessMarker => "success_marker",
            JunkReason::FolderMarker => "folder_marker",
            JunkReason::Checksum => "checksum",
            JunkReason::Temporary => "temporary",
            JunkReason::Hidden => "hidden",
            JunkReason::ZeroByte => "zero_byte",
            JunkReason::EncryptionInstructions => "encryption_instructions",
        }
    }
}

/// The junk rule that applies to `key`, if any.
///
/// The order matters: the most specific explanation wins, so an empty `_SUCCESS` is a success
/// marker rather than a zero-byte file, and `.part-0.crc` is a checksum rather than hidden.
pub(crate) fn junk_reason(key: &str, size: u64) -> Option<JunkReason> {
    let (dirs, file) = match key.rfind('/') {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => ("", key),
    };
    junk_reason_in(key, file, size, || folder_reason(dirs))
}

/// [`junk_reason`] of `key`, whose file name is `file`, with its folder's reason given by
/// `folder` ([`folder_reason`], asked only when the file itself is not junk): a key-ordered
/// stream works that out once per folder.
pub(crate) fn junk_reason_in(
    key: &str,
    file: &str,
    size: u64,
    folder: impl FnOnce() -> Option<JunkReason>,
) -> Option<JunkReason> {
    if folder_marker(key) {
        return Some(JunkReason::FolderMarker);
    }
    if success_marker(file) {
        return Some(JunkReason::SuccessMarker);
    }
    if checksum_file(file) {
        return Some(JunkReason::Checksum);
    }
    if file.ends_with(".instruction") {
        return Some(JunkReason::EncryptionInstructions);
    }
    let folder = folder();
    if folder == Some(JunkReason::Temporary) {
        return folder;
    }
    if hidden_file(file) || folder.is_some() {
        return Some(JunkReason::Hidden);
    }
    if size == 0 {
        return Some(JunkReason::ZeroByte);
    }
    None
}

/// Whether every object under `folder` (a key up to its last `/`) is junk: a temporary or
/// hidden folder on its path. With [`junk_file`], the same answer as [`junk_reason`] split in
/// two, so that a key-ordered stream checks each folder once.
pub(crate) fn junk_folder(folder: &str) -> bool {
    folder_reason(folder).is_some()
}

/// Why every object under `folder` is junk: a temporary folder on its path (whatever else),
/// or a hidden one.
pub(crate) fn folder_reason(folder: &str) -> Option<JunkReason> {
    let mut hidden = false;
    for segment in folder.split('/') {
        if temporary_segment(segment) {
            return Some(JunkReason::Temporary);
        }
        hidden |= segment.starts_with('.');
    }
    hidden.then_some(JunkReason::Hidden)
}

/// Whether `key`, whose file name is `file`, is junk whatever its folder.
pub(crate) fn junk_file(key: &str, file: &str, size: u64) -> bool {
    folder_marker(key)
        || success_marker(file)
        || checksum_file(file)
        || file.ends_with(".instruction")
        || hidden_file(file)
        || size == 0
}

fn folder_marker(key: &str) -> bool {
    key.is_empty() || key.ends_with('/') || key.ends_with("_$folder$")
}

fn success_marker(file: &str) -> bool {
    file == "_SUCCESS" || file.starts_with("_started_") || file.starts_with("_committed_")
}

/// `.crc` in any case, compared in place: every listed key comes through here.
fn checksum_file(file: &str) -> bool {
    file.len() >= 4 && file.as_bytes()[file.len() - 4..].eq_ignore_ascii_case(b".crc")
}

fn temporary_segment(segment: &str) -> bool {
    segment == "_temporary" || segment == "_spark_metadata" || segment.starts_with(".spark-staging")
}

fn hidden_file(file: &str) -> bool {
    file.starts_with('.') || file.starts_with('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_files_are_encryption_companions_not_data() {
        assert_eq!(junk_reason("cse/part-0.csv.instruction", 412), Some(JunkReason::EncryptionInstructions));
        assert_eq!(junk_reason("cse/part-0.csv", 412), None);
        assert_eq!(JunkReason::EncryptionInstructions.as_str(), "encryption_instructions");
    }
}
