//! The inventory columns, whatever the file format calls them.
//!
//! CSV manifests name columns in PascalCase (`LastModifiedDate`, `ETag`); ORC and Parquet use
//! snake_case (`last_modified_date`, `e_tag`). Both map to one [`InventoryColumn`].

use std::fmt;

/// One inventory column, format-independent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InventoryColumn {
    /// Source bucket name.
    Bucket,
    /// Object key (URL-encoded in CSV files).
    Key,
    /// Version id (all-versions reports).
    VersionId,
    /// Whether this version is the current one (all-versions reports).
    IsLatest,
    /// Whether this version is a delete marker (all-versions reports).
    IsDeleteMarker,
    /// Object size in bytes.
    Size,
    /// Last-modified time.
    LastModifiedDate,
    /// ETag (not an MD5 for SSE-KMS or multipart objects).
    ETag,
    /// Storage class.
    StorageClass,
    /// Whether the object was uploaded in parts.
    IsMultipartUploaded,
    /// Replication status.
    ReplicationStatus,
    /// Server-side encryption status.
    EncryptionStatus,
    /// Object Lock retain-until date.
    ObjectLockRetainUntilDate,
    /// Object Lock mode.
    ObjectLockMode,
    /// Object Lock legal hold status.
    ObjectLockLegalHoldStatus,
    /// S3 Intelligent-Tiering access tier.
    IntelligentTieringAccessTier,
    /// S3 Bucket Key status.
    BucketKeyStatus,
    /// Additional checksum algorithm.
    ChecksumAlgorithm,
    /// Object ACL (a JSON document).
    ObjectAccessControlList,
    /// Object owner.
    ObjectOwner,
    /// Lifecycle expiration date.
    LifecycleExpirationDate,
    /// Intelligent-Tiering reference date (newer SDKs' optional field).
    IntelligentTieringReferenceDate,
    /// Object Lock event hold duration (newer SDKs' optional field).
    ObjectLockEventHoldDuration,
    /// Object Lock event hold status (newer SDKs' optional field).
    ObjectLockEventHoldStatus,
    /// A column we do not know, with its name as the manifest spells it.
    Other(String),
}

/// Every known column with its PascalCase (CSV) name.
const KNOWN: &[(InventoryColumn, &str)] = &[
    (InventoryColumn::Bucket, "Bucket"),
    (InventoryColumn::Key, "Key"),
    (InventoryColumn::VersionId, "VersionId"),
    (InventoryColumn::IsLatest, "IsLatest"),
    (InventoryColumn::IsDeleteMarker, "IsDeleteMarker"),
    (InventoryColumn::Size, "Size"),
    (InventoryColumn::LastModifiedDate, "LastModifiedDate"),
    (InventoryColumn::ETag, "ETag"),
    (InventoryColumn::StorageClass, "StorageClass"),
    (InventoryColumn::IsMultipartUploaded, "IsMultipartUploaded"),
    (InventoryColumn::ReplicationStatus, "ReplicationStatus"),
    (InventoryColumn::EncryptionStatus, "EncryptionStatus"),
    (InventoryColumn::ObjectLockRetainUntilDate, "ObjectLockRetainUntilDate"),
    (InventoryColumn::ObjectLockMode, "ObjectLockMode"),
    (InventoryColumn::ObjectLockLegalHoldStatus, "ObjectLockLegalHoldStatus"),
    (InventoryColumn::IntelligentTieringAccessTier, "IntelligentTieringAccessTier"),
    (InventoryColumn::BucketKeyStatus, "BucketKeyStatus"),
    (InventoryColumn::ChecksumAlgorithm, "ChecksumAlgorithm"),
    (InventoryColumn::ObjectAccessControlList, "ObjectAccessControlList"),
    (InventoryColumn::ObjectOwner, "ObjectOwner"),
    (InventoryColumn::LifecycleExpirationDate, "LifecycleExpirationDate"),
    (InventoryColumn::IntelligentTieringReferenceDate, "IntelligentTieringReferenceDate"),
    (InventoryColumn::ObjectLockEventHoldDuration, "ObjectLockEventHoldDuration"),
    (InventoryColumn::ObjectLockEventHoldStatus, "ObjectLockEventHoldStatus"),
];

impl InventoryColumn {
    /// Maps a column name in any of the manifest spellings (`ETag`, `e_tag`, `etag`) to a column.
    ///
    /// Matching ignores case and underscores; unknown names become [`InventoryColumn::Other`].
    pub fn from_name(name: &str) -> InventoryColumn {
        let wanted = normalize(name);
        KNOWN
            .iter()
            .find(|(_, pascal)| normalize(pascal) == wanted)
            .map(|(column, _)| column.clone())
            .unwrap_or_else(|| InventoryColumn::Other(name.to_string()))
    }

    /// The PascalCase name CSV manifests use (the manifest's own spelling for `Other`).
    pub fn name(&self) -> &str {
        if let InventoryColumn::Other(name) = self {
            return name;
        }
        KNOWN.iter().find(|(column, _)| column == self).map(|(_, pascal)| *pascal).unwrap_or("")
    }
}

impl fmt::Display for InventoryColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_every_spelling() {
        let cases: &[(&str, InventoryColumn)] = &[
            ("Bucket", InventoryColumn::Bucket),
            ("bucket", InventoryColumn::Bucket),
            ("ETag", InventoryColumn::ETag),
            ("e_tag", InventoryColumn::ETag),
            ("last_modified_date", InventoryColumn::LastModifiedDate),
            ("IsDeleteMarker", InventoryColumn::IsDeleteMarker),
            ("object_lock_legal_hold_status", InventoryColumn::ObjectLockLegalHoldStatus),
            ("bucket_key_status", InventoryColumn::BucketKeyStatus),
            ("SomethingNew", InventoryColumn::Other("SomethingNew".into())),
        ];
        for (name, column) in cases {
            assert_eq!(&InventoryColumn::from_name(name), column, "{name}");
        }
        for (column, pascal) in KNOWN {
            assert_eq!(column.name(), *pascal);
            assert_eq!(&InventoryColumn::from_name(pascal), column);
        }
        assert_eq!(InventoryColumn::Other("x_y".into()).to_string(), "x_y");
    }
}
