//! Where the last processed snapshot lives: a local state directory (the domain's
//! [`StateStore`]), or an S3 prefix for containers that keep nothing between runs.
//!
//! An S3 location is mirrored through a temporary local directory: the pointer and the snapshot
//! it names are downloaded (the snapshot is verified by its SHA-256 when opened), the run works
//! on the local copy, and after the local advance the new snapshot is uploaded first and the
//! pointer last, both under SSE-KMS. A crash before the pointer upload leaves the old state in
//! S3 (at worst an extra snapshot object beside it), so the rerun emits the same changes again.
//! Only once the new pointer is written are superseded snapshot objects deleted (the previous
//! one, and leftovers of crashed runs), as the local store deletes its old files.
//!
//! ```text
//! s3://<bucket>/<prefix><source bucket>/<configuration id>/current.json
//! s3://<bucket>/<prefix><source bucket>/<configuration id>/snapshot-<report ms>.snap
//! ```
//!
//! (path segments percent-encoded as in the local layout). The state holds keys, sizes, ETags,
//! dates, storage classes and encryption statuses only: no credentials, no data.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use s3_connector_domain::inventory::snapshot::{SnapshotInfo, StateStore};
use tokio::io::AsyncWriteExt;

use super::error::IncrementalError;
use super::source::InventorySource;
use crate::aws::{AwsError, AwsErrorKind};

/// Largest pointer object read from S3.
const MAX_POINTER_BYTES: u64 = 64 * 1024;

/// Where the state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A local directory.
    Local(PathBuf),
    /// `s3://bucket/prefix/`, written with SSE-KMS.
    S3 {
        /// Bucket.
        bucket: String,
        /// Prefix, empty or ending with `/`.
        prefix: String,
        /// KMS key for the state objects (`None`: the bucket's default key for aws:kms).
        kms_key_id: Option<String>,
    },
}

impl StateLocation {
    /// Parses `s3://bucket/prefix` (a trailing `/` is added to a non-empty prefix).
    pub fn s3(url: &str, kms_key_id: Option<String>) -> Result<StateLocation, IncrementalError> {
        let (bucket, prefix) = crate::extract::targets::split_s3_uri(url).ok_or_else(|| {
            IncrementalError::StateLocation(format!("{url:?} is not an s3://bucket/prefix URL"))
        })?;
        let bucket = bucket.to_string();
        if !crate::extract::targets::is_valid_bucket_name(&bucket) {
            return Err(IncrementalError::StateLocation(format!("{bucket:?} is not a valid bucket name")));
        }
        let prefix = match prefix.trim_end_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(StateLocation::S3 { bucket, prefix, kms_key_id })
    }
}

/// The state of one run: a local store, plus the S3 location it mirrors.
pub struct RunState {
    store: StateStore,
    remote: Option<Remote>,
    // Keeps the mirror directory alive for the run.
    _mirror: Option<tempfile::TempDir>,
}

struct Remote {
    bucket: String,
    prefix: String,
    kms_key_id: Option<String>,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState").field("remote", &self.remote.as_ref().map(|r| &r.bucket)).finish()
    }
}

fn not_found(e: &AwsError) -> bool {
    e.kind == AwsErrorKind::NotFound
}

/// Downloads an object to `path`; `Ok(false)` when it does not exist.
async fn download(
    source: &dyn InventorySource,
    bucket: &str,
    key: &str,
    path: &Path,
    limit: Option<u64>,
) -> Result<bool, IncrementalError> {
    let mut body = match source.get(bucket, key).await {
        Ok(body) => body,
        Err(e) if not_found(&e) => return Ok(false),
        Err(e) => return Err(IncrementalError::Aws(e)),
    };
    if let Some(limit) = limit
        && body.size > limit
    {
        return Err(IncrementalError::TooLarge {
            bucket: bucket.into(),
            key: key.into(),
            size: body.size,
            limit,
        });
    }
    let io = |e: std::io::Error| IncrementalError::StateLocation(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    while let Some(chunk) = body.chunks.next().await {
        file.write_all(&chunk.map_err(IncrementalError::Aws)?).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    Ok(true)
}

impl RunState {
    /// Opens the state for (`source_bucket`, `configuration_id`): the local directory as is, or
    /// a temporary mirror of the S3 location's pointer and current snapshot.
    pub async fn open(
        location: &StateLocation,
        source: &dyn InventorySource,
        source_bucket: &str,
        configuration_id: &str,
    ) -> Result<RunState, IncrementalError> {
        match location {
            StateLocation::Local(dir) => {
                Ok(RunState { store: StateStore::open(dir)?, remote: None, _mirror: None })
            }
            StateLocation::S3 { bucket, prefix, kms_key_id } => {
                let mirror = tempfile::Builder::new()
                    .prefix("s3-connector-state-")
                    .tempdir()
                    .map_err(|e| IncrementalError::StateLocation(format!("temporary directory: {e}")))?;
                let store = StateStore::open(mirror.path())?;
                let state = RunState {
                    store,
                    remote: Some(Remote {
                        bucket: bucket.clone(),
                        prefix: prefix.clone(),
                        kms_key_id: kms_key_id.clone(),
                    }),
                    _mirror: Some(mirror),
                };
                state.pull(source, source_bucket, configuration_id).await?;
                Ok(state)
            }
        }
    }

    /// The local store the run works on.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The S3 key of a file of the configuration's state directory.
    fn remote_key(&self, remote: &Remote, source_bucket: &str, configuration_id: &str, file: &str) -> String {
        let dir = self.store.config_dir(source_bucket, configuration_id);
        let rel: Vec<String> = dir
            .strip_prefix(self.store_root())
            .map(|p| p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        format!("{}{}/{file}", remote.prefix, rel.join("/"))
    }

    fn store_root(&self) -> PathBuf {
        // `config_dir` is `<root>/<bucket>/<config>`.
        let probe = self.store.config_dir("b", "c");
        probe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
    }

    async fn pull(
        &self,
        source: &dyn InventorySource,
        source_bucket: &str,
        configuration_id: &str,
    ) -> Result<(), IncrementalError> {
        let Some(remote) = &self.remote else { return Ok(()) };
        let dir = self.store.config_dir(source_bucket, configuration_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| IncrementalError::StateLocation(format!("{}: {e}", dir.display())))?;
        let pointer_key = self.remote_key(remote, source_bucket, configuration_id, "current.json");
        let pointer_path = dir.join("current.json");
        if !download(source, &remote.bucket, &pointer_key, &pointer_path, Some(MAX_POINTER_BYTES)).await? {
            return Ok(());
        }
        // The pointer is validated (version, plain file name) before its snapshot is fetched.
        let Some(pointer) = self.store.current(source_bucket, configuration_id)? else { return Ok(()) };
        let snapshot_key = self.remote_key(remote, source_bucket, configuration_id, &pointer.snapshot_file);
        if !download(source, &remote.bucket, &snapshot_key, &dir.join(&pointer.snapshot_file), None).await? {
            return Err(IncrementalError::StateLocation(format!(
                "s3://{}/{pointer_key} names {}, which does not exist",
                remote.bucket, pointer.snapshot_file
            )));
        }
        Ok(())
    }

    /// Advances the state to `snapshot` (locally, then in S3: snapshot first, pointer last).
    /// Returns `false` when the state already pointed at this report.
    pub async fn advance(
        &self,
        source: &dyn InventorySource,
        snapshot: &SnapshotInfo,
    ) -> Result<bool, IncrementalError> {
        let store = self.store.clone();
        let info = snapshot.clone();
        let advanced = tokio::task::spawn_blocking(move || store.advance(&info))
            .await
            .map_err(|e| IncrementalError::Internal(format!("state task failed: {e}")))??;
        let Some(remote) = &self.remote else { return Ok(advanced) };
        if !advanced {
            return Ok(false);
        }
        let header = &snapshot.header;
        let dir = self.store.config_dir(&header.source_bucket, &header.configuration_id);
        let file_name =
            snapshot.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let kms = remote.kms_key_id.as_deref();
        let snapshot_key =
            self.remote_key(remote, &header.source_bucket, &header.configuration_id, &file_name);
        source
            .put_file(&remote.bucket, &snapshot_key, &snapshot.path, kms)
            .await
            .map_err(IncrementalError::Aws)?;
        let pointer_key =
            self.remote_key(remote, &header.source_bucket, &header.configuration_id, "current.json");
        source
            .put_file(&remote.bucket, &pointer_key, &dir.join("current.json"), kms)
            .await
            .map_err(IncrementalError::Aws)?;
        // The state has moved: what remains is cleanup, which must not fail the run (a snapshot
        // left behind is deleted by the next advance).
        let folder = self.remote_key(remote, &header.source_bucket, &header.configuration_id, "");
        if let Err(e) = remove_superseded(source, &remote.bucket, &folder, &file_name).await {
            tracing::warn!(error = %e, bucket = %remote.bucket, folder, "superseded state snapshots not deleted");
        }
        Ok(true)
    }
}

/// Deletes the snapshot objects under `folder` other than `keep` (called after the pointer to
/// `keep` was written).
async fn remove_superseded(
    source: &dyn InventorySource,
    bucket: &str,
    folder: &str,
    keep: &str,
) -> Result<(), AwsError> {
    let mut request = crate::aws::ListRequest {
        bucket: bucket.to_string(),
        prefix: folder.to_string(),
        delimiter: Some("/".into()),
        continuation: None,
        start_after: None,
        max_keys: None,
    };
    let mut stale = Vec::new();
    loop {
        let page = source.list_page(&request).await?;
        for object in page.objects {
            let Some(name) = object.key.strip_prefix(folder) else { continue };
            if name != keep && name.starts_with("snapshot-") && name.ends_with(".snap") {
                stale.push(object.key);
            }
        }
        match page.next {
            Some(token) => request.continuation = Some(token),
            None => break,
        }
    }
    for key in stale {
        source.delete(bucket, &key).await?;
    }
    Ok(())
}
