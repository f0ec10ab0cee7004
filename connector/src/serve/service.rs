//! The `ConnectorService` RPCs: thin adapters over the library code the CLI uses.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use s3_connector_domain::model::{Compression, EncryptionType, FileFormat};
use s3_connector_domain::policy;
use s3_connector_proto::v1 as pb;
use s3_connector_proto::v1::connector_service_server::ConnectorService;
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::config::ServeConfig;
use super::convert;
use super::metrics::{self as m, ActiveExtraction};
use super::status::{ServiceError, from_config_error, from_extract_error, from_incremental_error};
use crate::aws::{AwsContext, ConnectionSettings, RequestStats};
use crate::extract::{Extractor, Services};
use crate::output::records::json_to_struct;
use crate::output::stream::{extract_records, new_run_id};

/// Shared state of the service.
pub struct ConnectorApi {
    config: Arc<ServeConfig>,
    extractions: Arc<Semaphore>,
    /// Permits of running samples (`sampling.max_concurrent`).
    samples: Arc<Semaphore>,
    contexts: ContextCache,
    /// Set when shutdown begins: new calls are refused.
    draining: CancellationToken,
    /// Set when the shutdown grace period is over: running streams end with UNAVAILABLE.
    stop_streams: CancellationToken,
    /// SSE-C keys for sampling, loaded at start-up.
    sse_c: Option<Arc<crate::aws::ssec::SseCKeys>>,
    /// Client-side decryption for sampling, loaded at start-up.
    cse: Option<Arc<crate::cse::ClientSideDecryption>>,
    /// Client-side decryption for schema inference (`[extraction] cse_*`), loaded at start-up.
    extract_cse: Option<Arc<crate::cse::ClientSideDecryption>>,
}

impl ConnectorApi {
    /// The service over a configuration.
    pub fn new(
        config: Arc<ServeConfig>,
        draining: CancellationToken,
        stop_streams: CancellationToken,
        sse_c: Option<Arc<crate::aws::ssec::SseCKeys>>,
    ) -> Self {
        let permits = config.limits.max_concurrent_extractions as usize;
        let sample_permits = config.sampling.max_concurrent as usize;
        ConnectorApi {
            config,
            extractions: Arc::new(Semaphore::new(permits)),
            samples: Arc::new(Semaphore::new(sample_permits)),
            contexts: ContextCache::default(),
            draining,
            stop_streams,
            sse_c,
            cse: None,
            extract_cse: None,
        }
    }

    /// Decrypts client-side encrypted objects in samples (`[sampling] cse_*`).
    pub fn with_client_side_decryption(mut self, cse: Option<Arc<crate::cse::ClientSideDecryption>>) -> Self {
        self.cse = cse;
        self
    }

    /// Decrypts client-side encrypted objects for schema inference (`[extraction] cse_*`).
    pub fn with_extraction_decryption(mut self, cse: Option<Arc<crate::cse::ClientSideDecryption>>) -> Self {
        self.extract_cse = cse;
        self
    }

    /// The S3/KMS seams of an extraction: reads through client-side decryption when
    /// `[extraction]` configures it (KMS unwrapping as the same identity as the reads), as
    /// `extract --cse-*` does.
    fn extraction_services(&self, aws: &AwsContext, stats: Arc<RequestStats>) -> Services {
        let mut services = Services::from_aws(aws, stats.clone());
        if let Some(config) = &self.extract_cse {
            services.store = Arc::new(crate::cse::DecryptingStore::new(
                services.store.clone(),
                config.clone(),
                Some(Arc::new(crate::cse::SdkDataKeyDecryptor::new(aws.kms_client(), stats))),
            ));
        }
        services
    }

    fn refuse_when_draining(&self) -> Result<(), ServiceError> {
        if self.draining.is_cancelled() { Err(ServiceError::ShuttingDown) } else { Ok(()) }
    }
}

/// SDK configurations by connection, so that role credentials (and their refresh) are shared
/// by the requests of one connection instead of assuming the role on every call.
#[derive(Default)]
struct ContextCache {
    contexts: Mutex<HashMap<String, AwsContext>>,
}

/// Connections kept at most; beyond, the cache starts over (roles are re-assumed lazily).
const MAX_CACHED_CONTEXTS: usize = 64;

impl ContextCache {
    async fn get(&self, settings: &ConnectionSettings) -> Result<AwsContext, ServiceError> {
        // The key holds the ExternalId: it stays in memory, never in logs.
        let key = format!(
            "{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}",
            settings.region,
            settings.endpoint_url,
            settings.force_path_style,
            settings.role_arn,
            settings.external_id,
            settings.session_name,
            settings.session_duration,
            settings.max_attempts
        );
        let mut contexts = self.contexts.lock().await;
        if let Some(ctx) = contexts.get(&key) {
            return Ok(ctx.clone());
        }
        let ctx = AwsContext::load(settings).await.map_err(from_config_error)?;
        if contexts.len() >= MAX_CACHED_CONTEXTS {
            contexts.clear();
        }
        contexts.insert(key, ctx.clone());
        Ok(ctx)
    }
}

/// Parses a `grpc-timeout` header (`<digits><unit>`, units H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The records of a running extraction, then its final status. Dropping the stream (the
/// client went away) aborts the extraction task, and with it every S3 request in flight.
pub struct RecordStream<T> {
    records: mpsc::Receiver<T>,
    outcome: Option<oneshot::Receiver<Result<(), Status>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Drop for RecordStream<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> Stream for RecordStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // The producer drops its sender before it sends the outcome, so once `records` is
        // closed every record has been yielded and the outcome is (about to be) there.
        match this.records.poll_recv(cx) {
            Poll::Ready(Some(record)) => return Poll::Ready(Some(Ok(record))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        let Some(rx) = this.outcome.as_mut() else { return Poll::Ready(None) };
        let result = std::task::ready!(Pin::new(rx).poll(cx));
        this.outcome = None;
        match result {
            Ok(Ok(())) => Poll::Ready(None),
            Ok(Err(status)) => Poll::Ready(Some(Err(status))),
            Err(_) => Poll::Ready(Some(Err(Status::internal("the extraction task ended unexpectedly")))),
        }
    }
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// RPCs with an engine in this build.
const IMPLEMENTED_RPCS: &[&str] = &[
    "ExtractMetadata",
    "ExtractIncremental",
    "SampleRows",
    "CheckAccess",
    "GeneratePolicies",
    "GetCapabilities",
];

#[tonic::async_trait]
impl ConnectorService for ConnectorApi {
    type ExtractMetadataStream = RecordStream<pb::ExtractRecord>;
    type ExtractIncrementalStream = RecordStream<pb::ChangeRecord>;

    async fn extract_metadata(
        &self,
        request: Request<pb::ExtractMetadataRequest>,
    ) -> Result<Response<Self::ExtractMetadataStream>, Status> {
        const METHOD: &str = "ExtractMetadata";
        let started = Instant::now();
        let result = self.start_extraction(request, started).await;
        if let Err(status) = &result {
            m::record_call(METHOD, status.code(), started);
        }
        result.map(Response::new)
    }

    async fn extract_incremental(
        &self,
        request: Request<pb::ExtractIncrementalRequest>,
    ) -> Result<Response<Self::ExtractIncrementalStream>, Status> {
        const METHOD: &str = "ExtractIncremental";
        let started = Instant::now();
        let result = self.start_incremental(request, started).await;
        if let Err(status) = &result {
            m::record_call(METHOD, status.code(), started);
        }
        result.map(Response::new)
    }

    async fn sample_rows(
        &self,
        request: Request<pb::SampleRowsRequest>,
    ) -> Result<Response<pb::SampleRowsResponse>, Status> {
        let started = Instant::now();
        let result = self.sample(request.into_inner()).await;
        m::record_call(
            "SampleRows",
            result.as_ref().err().map_or(tonic::Code::Ok, |e| e.code_and_reason().0),
            started,
        );
        result.map(Response::new).map_err(Status::from)
    }

    async fn check_access(
        &self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let started = Instant::now();
        let result = self.check(request.into_inner()).await;
        m::record_call(
            "CheckAccess",
            result.as_ref().err().map_or(tonic::Code::Ok, |e| e.code_and_reason().0),
            started,
        );
        result.map(Response::new).map_err(Status::from)
    }

    async fn generate_policies(
        &self,
        request: Request<pb::GeneratePoliciesRequest>,
    ) -> Result<Response<pb::GeneratePoliciesResponse>, Status> {
        let started = Instant::now();
        let result = self.generate(request.get_ref());
        m::record_call(
            "GeneratePolicies",
            result.as_ref().err().map_or(tonic::Code::Ok, |e| e.code_and_reason().0),
            started,
        );
        result.map(Response::new).map_err(Status::from)
    }

    async fn get_capabilities(
        &self,
        _request: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::GetCapabilitiesResponse>, Status> {
        let started = Instant::now();
        let response = self.capabilities();
        m::record_call("GetCapabilities", tonic::Code::Ok, started);
        Ok(Response::new(response))
    }
}

impl ConnectorApi {
    async fn start_extraction(
        &self,
        request: Request<pb::ExtractMetadataRequest>,
        started: Instant,
    ) -> Result<RecordStream<pb::ExtractRecord>, Status> {
        self.refuse_when_draining()?;
        let deadline = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| tokio::time::Instant::from_std(started) + d);
        let req = request.into_inner();
        let settings = convert::connection_settings(req.connection.as_ref(), &self.config.connection)?;
        // From an inventory report: the scope defaults to (and may only name) its source bucket.
        let inventory = match req.inventory.as_ref() {
            Some(location) => Some(convert::inventory_spec(Some(location))?),
            None => None,
        };
        let scope = match &inventory {
            // Without a report the scope is required (a missing one is named as `scope`).
            None => convert::extract_scope(req.scope.as_ref())?,
            Some(spec) => {
                let mut scope_message = req.scope.clone().unwrap_or_default();
                if scope_message.targets.is_empty() {
                    scope_message.targets = vec![spec.source_bucket.clone()];
                }
                convert::extract_scope(Some(&scope_message))?
            }
        };
        if let Some(spec) = &inventory
            && (scope.targets.len() != 1 || scope.targets[0].bucket != spec.source_bucket)
        {
            return Err(ServiceError::invalid(
                "scope.targets",
                format!("with inventory, only the source bucket s3://{} may be named", spec.source_bucket),
            )
            .into());
        }
        let limits = convert::extract_limits(req.limits.as_ref(), &self.config.limits);
        let progress_every = (req.progress_interval_ms > 0)
            .then(|| Duration::from_millis(u64::from(req.progress_interval_ms.max(100))));
        let permit = self
            .extractions
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Busy { running: self.config.limits.max_concurrent_extractions })?;
        let aws = self.contexts.get(&settings).await?;

        let stats = Arc::new(RequestStats::default());
        let services = self.extraction_services(&aws, stats.clone());
        let inventory = inventory.map(|spec| crate::extract::InventoryInput {
            source: Arc::new(crate::incremental::source::SdkInventorySource::from_aws(&aws, stats.clone())),
            spec,
            options: self.config.incremental.read_options(),
        });
        let buffer = self.config.limits.stream_buffer as usize;
        let (tx, records) = mpsc::channel(buffer);
        let (outcome_tx, outcome) = oneshot::channel();
        let stop_streams = self.stop_streams.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let _active = ActiveExtraction::start();
            let mut call = m::CallRecorder::new("ExtractMetadata", started);
            let run_id: Arc<str> = new_run_id().into();
            let mut extractor = Extractor::new(services, limits);
            if let Some(input) = inventory {
                extractor = extractor.with_inventory(input);
            }
            let extractor = Arc::new(extractor);
            // Count records as they leave, without a second buffer.
            let (counted_tx, mut counted_rx) = mpsc::channel(1);
            let forward = async move {
                while let Some(record) = counted_rx.recv().await {
                    if tx.send(record).await.is_err() {
                        return;
                    }
                    metrics::counter!(m::RECORDS_STREAMED, "method" => "ExtractMetadata").increment(1);
                }
            };
            let run = extract_records(
                extractor,
                Arc::new(scope),
                run_id.clone(),
                stats,
                progress_every,
                counted_tx,
            );
            let work = async move {
                let (result, ()) = tokio::join!(run, forward);
                result
            };
            let deadline_passed = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let result: Result<(), ServiceError> = tokio::select! {
                r = work => r.map(|_| ()).map_err(from_extract_error),
                _ = stop_streams.cancelled() => Err(ServiceError::ShuttingDown),
                _ = deadline_passed => Err(ServiceError::DeadlineExceeded),
            };
            call.finish(result.as_ref().err().map_or(tonic::Code::Ok, |e| e.code_and_reason().0));
            if let Err(e) = &result {
                tracing::info!(run_id = %run_id, error = %e, "extraction stream ended early");
            }
            let _ = outcome_tx.send(result.map_err(Status::from));
        });
        Ok(RecordStream { records, outcome: Some(outcome), task })
    }

    async fn start_incremental(
        &self,
        request: Request<pb::ExtractIncrementalRequest>,
        started: Instant,
    ) -> Result<RecordStream<pb::ChangeRecord>, Status> {
        use crate::incremental::source::SdkInventorySource;
        use crate::incremental::{self, IncrementalOptions, Output, SchemaInference, StateLocation};
        self.refuse_when_draining()?;
        let deadline = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| tokio::time::Instant::from_std(started) + d);
        let req = request.into_inner();
        let settings = convert::connection_settings(req.connection.as_ref(), &self.config.connection)?;
        let spec = convert::inventory_spec(req.inventory.as_ref())?;
        let cfg = &self.config.incremental;
        let state = match (req.state_url.is_empty(), &cfg.state_dir) {
            (false, _) => {
                let kms = (!req.state_kms_key_id.is_empty()).then(|| req.state_kms_key_id.clone());
                StateLocation::s3(&req.state_url, kms)
                    .map_err(|e| ServiceError::invalid("state_url", e.to_string()))?
            }
            (true, _) if !req.state_kms_key_id.is_empty() => {
                return Err(ServiceError::invalid("state_kms_key_id", "only used with state_url").into());
            }
            (true, Some(dir)) => StateLocation::Local(dir.clone()),
            (true, None) => {
                return Err(ServiceError::invalid(
                    "state_url",
                    "required: this server has no incremental.state_dir",
                )
                .into());
            }
        };
        let options = IncrementalOptions { dry_run: req.dry_run, ..cfg.read_options() };
        let permit = self
            .extractions
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Busy { running: self.config.limits.max_concurrent_extractions })?;
        let aws = self.contexts.get(&settings).await?;
        let stats = Arc::new(RequestStats::default());
        let source = Arc::new(SdkInventorySource::from_aws(&aws, stats.clone()));
        let inference = SchemaInference {
            services: self.extraction_services(&aws, stats),
            limits: convert::extract_limits(req.limits.as_ref(), &self.config.limits),
        };
        let buffer = self.config.limits.stream_buffer as usize;
        let (tx, records) = mpsc::channel(buffer);
        let (outcome_tx, outcome) = oneshot::channel();
        let stop_streams = self.stop_streams.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let _active = ActiveExtraction::start();
            let mut call = m::CallRecorder::new("ExtractIncremental", started);
            let (engine_tx, mut engine_rx) = mpsc::channel::<Output>(16);
            // Records go to the client's stream; a commit is answered once the stream has taken
            // every record (all of the channel's slots are free again), so the state advances
            // only over changes handed to the client.
            let forward = async move {
                while let Some(message) = engine_rx.recv().await {
                    match message {
                        Output::Record(record) => {
                            if tx.send(*record).await.is_err() {
                                return;
                            }
                            metrics::counter!(m::RECORDS_STREAMED, "method" => "ExtractIncremental")
                                .increment(1);
                        }
                        Output::Commit(ack) => {
                            let drained = tx.reserve_many(tx.max_capacity()).await.map(drop);
                            let _ = ack.send(drained.map_err(|_| "the client went away".to_string()));
                        }
                    }
                }
            };
            let run = incremental::run(source, state, spec, options, Some(inference), engine_tx);
            let work = async move {
                let (result, ()) = tokio::join!(run, forward);
                result
            };
            let deadline_passed = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let result: Result<(), ServiceError> = tokio::select! {
                r = work => r.map(|_| ()).map_err(from_incremental_error),
                _ = stop_streams.cancelled() => Err(ServiceError::ShuttingDown),
                _ = deadline_passed => Err(ServiceError::DeadlineExceeded),
            };
            call.finish(result.as_ref().err().map_or(tonic::Code::Ok, |e| e.code_and_reason().0));
            if let Err(e) = &result {
                tracing::info!(error = %e, "incremental stream ended early");
            }
            let _ = outcome_tx.send(result.map_err(Status::from));
        });
        Ok(RecordStream { records, outcome: Some(outcome), task })
    }

    async fn check(&self, req: pb::CheckAccessRequest) -> Result<pb::CheckAccessResponse, ServiceError> {
        use crate::aws::identity::load_base_context;
        use crate::check::{CheckOptions, CheckScope, CheckServices, RoleProbe, run_check};
        self.refuse_when_draining()?;
        let settings = convert::connection_settings(req.connection.as_ref(), &self.config.connection)?;
        if req.targets.is_empty() {
            return Err(ServiceError::invalid("targets", "at least one bucket or s3:// URI is required"));
        }
        let targets = crate::extract::targets::parse_targets(&req.targets)
            .map_err(|e| ServiceError::invalid(format!("targets[{}]", e.index), e.to_string()))?;
        let sampling = convert::user_identity(req.sampling_user.as_ref(), "sampling_user")?;
        let aws = self.contexts.get(&settings).await?;
        let (role, base) = match &settings.role_arn {
            Some(role_arn) => {
                let base = load_base_context(&settings).await.map_err(from_config_error)?;
                let role = RoleProbe {
                    role_arn: role_arn.clone(),
                    external_id: settings.external_id.clone(),
                    session_name: settings.session_name.clone().unwrap_or_else(|| "s3-connector".into()),
                };
                (Some(role), Some(base))
            }
            None => (None, None),
        };
        let user = match sampling {
            Some(identity) => Some(
                identity
                    .load(&aws)
                    .await
                    .map_err(|e| ServiceError::invalid("sampling_user", e.to_string()))?,
            ),
            None => None,
        };
        let stats = Arc::new(RequestStats::default());
        let services = CheckServices::from_sdk(&aws, base.as_ref(), user.as_ref(), stats);
        // The server's own SSE-C key secrets (`[sampling] sse_c_keys`, validated at start-up).
        let sse_c_key_secrets = crate::aws::ssec::secret_ids(&self.config.sampling.sse_c_keys)
            .map_err(|e| ServiceError::invalid("sampling.sse_c_keys", e.to_string()))?;
        let options = CheckOptions {
            role,
            inventory_ids: req.inventory_ids.clone(),
            sse_c_key_secrets,
            ..CheckOptions::default()
        };
        let report = run_check(&services, &CheckScope { targets }, &options)
            .await
            .map_err(|e| ServiceError::invalid("targets", e.to_string()))?;
        Ok(convert::check_report(&report))
    }

    /// A sample within the concurrency limit and the time budget. Refused at once beyond the
    /// limit (not queued); past the budget the future is dropped, which stops its S3 reads.
    /// A client that goes away drops this future too (unary calls are cancelled by tonic).
    async fn sample(&self, req: pb::SampleRowsRequest) -> Result<pb::SampleRowsResponse, ServiceError> {
        self.refuse_when_draining()?;
        let _permit = self
            .samples
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::TooManySamples { running: self.config.sampling.max_concurrent })?;
        let budget_ms = self.config.sampling.time_budget_ms;
        tokio::time::timeout(Duration::from_millis(budget_ms), self.sample_within_budget(req))
            .await
            .map_err(|_| ServiceError::SampleTimeBudget { budget_ms })?
    }

    async fn sample_within_budget(
        &self,
        req: pb::SampleRowsRequest,
    ) -> Result<pb::SampleRowsResponse, ServiceError> {
        let mut settings = convert::connection_settings(req.connection.as_ref(), &self.config.connection)?;
        // The user is the identity: the connection's role fields play no part.
        settings.role_arn = None;
        settings.external_id = None;
        settings.session_name = None;
        settings.session_duration = None;
        let (bucket, key) = convert::sample_uri(&req.uri)?;
        let user = convert::user_identity(req.user.as_ref(), "user")?;
        let options = convert::sample_options(&req, self.config.sampling.max_rows)?;
        let aws = self.contexts.get(&settings).await?;
        // SSE-C keys only travel over TLS (or to an explicitly allowed loopback endpoint).
        let sse_c = match &self.sse_c {
            Some(keys) => {
                crate::aws::ssec::check_transport(
                    settings.endpoint_url.as_deref(),
                    self.config.sampling.allow_sse_c_over_loopback_http,
                )
                .map_err(|e| ServiceError::invalid("connection.endpoint_url", e.to_string()))?;
                Some(keys.clone())
            }
            None => None,
        };
        let stats = Arc::new(RequestStats::default());
        let reader = crate::sample::reader_for(
            &aws,
            user,
            self.config.sampling.allow_service_identity,
            sse_c,
            self.cse.clone(),
            stats,
        )
        .await
        .map_err(|e| match e {
            crate::sample::ReaderError::NoUser => ServiceError::invalid(
                "user",
                "a user identity (role or web identity) is required: samples never run as the service",
            ),
            crate::sample::ReaderError::Invalid(reason) => ServiceError::invalid("user", reason),
            crate::sample::ReaderError::Identity { code, message } => {
                ServiceError::UserIdentity { code, message }
            }
        })?;
        let (store, principal) = (reader.store, reader.principal);
        let region = aws.region();
        let sample =
            crate::sample::sample_uri(store.as_ref(), &bucket, &key, principal.as_deref(), &region, &options)
                .await
                .map_err(|failure| {
                    convert::from_sample_failure(failure, &bucket, &key, principal.as_deref())
                })?;
        Ok(crate::output::records::sample_response(&sample))
    }

    fn generate(
        &self,
        req: &pb::GeneratePoliciesRequest,
    ) -> Result<pb::GeneratePoliciesResponse, ServiceError> {
        self.refuse_when_draining()?;
        let setup = convert::policy_setup(req.setup.as_ref())?;
        let docs = policy::generate(&setup).map_err(convert::from_policy_error)?;
        let t = &docs.targets;
        let attach = |name: &str| -> String {
            match name {
                "connectorIdentityPolicy" => format!("identity policy of role {}", t.connector_role_name),
                "connectorTrustPolicy" => format!("trust policy of role {}", t.connector_role_name),
                "inventoryKeyPolicyStatement" => {
                    format!(
                        "statement of the key policy of {}",
                        t.inventory_key_arn.as_deref().unwrap_or("the report key")
                    )
                }
                "inventoryDestinationBucketPolicy" => format!(
                    "bucket policy of {}",
                    t.inventory_destination_bucket.as_deref().unwrap_or("the inventory destination")
                ),
                "lambdaRolePolicy" => {
                    format!(
                        "identity policy of role {}",
                        t.lambda_role_name.as_deref().unwrap_or("the Lambda role")
                    )
                }
                "samplingPolicy" => format!("identity policy of {}", t.sampling_principals.join(", ")),
                other => other.to_string(),
            }
        };
        let documents = docs
            .named()
            .into_iter()
            .map(|(name, doc)| pb::PolicyDocument {
                name: name.to_string(),
                attach_to: attach(name),
                document: json_to_struct(doc),
            })
            .collect();
        Ok(pb::GeneratePoliciesResponse { documents, text: policy::render_text(&docs) })
    }

    fn capabilities(&self) -> pb::GetCapabilitiesResponse {
        let formats = [
            FileFormat::Csv,
            FileFormat::Tsv,
            FileFormat::Psv,
            FileFormat::JsonLines,
            FileFormat::Json,
            FileFormat::Parquet,
            FileFormat::Avro,
            FileFormat::Orc,
        ];
        let compressions = [Compression::Gzip, Compression::Zstd, Compression::Bzip2];
        let encryption = [
            EncryptionType::None,
            EncryptionType::SseS3,
            EncryptionType::SseKms,
            EncryptionType::DsseKms,
            EncryptionType::SseC,
            EncryptionType::ClientSide,
        ];
        let l = &self.config.limits;
        let defaults = convert::extract_limits(None, l);
        let max = pb::ExtractLimits {
            listing_concurrency: l.max_listing_concurrency,
            inference_concurrency: l.max_inference_concurrency,
            schema_files: l.max_schema_files,
            schema_candidates: l.max_schema_files,
            encryption_probes: Some(l.max_encryption_probes),
            max_read_bytes: l.max_read_bytes_limit,
            max_decompressed_bytes: l.max_decompressed_bytes_limit,
            max_records: l.max_records_limit,
        };
        pb::GetCapabilitiesResponse {
            version: version().to_string(),
            schema_version: crate::output::records::SCHEMA_VERSION.to_string(),
            file_formats: formats.iter().map(|f| f.as_str().to_string()).collect(),
            compressions: compressions.iter().map(|c| c.as_str().to_string()).collect(),
            encryption_modes: encryption.iter().map(|e| e.as_str().to_string()).collect(),
            // Server-side encryption S3 undoes for the user; SSE-C and client-side decryption
            // only as configured.
            sample_decryption: sample_decryption(self.sse_c.is_some(), self.cse.as_deref()),
            extract_decryption: cse_formats(self.extract_cse.as_deref()),
            implemented_rpcs: IMPLEMENTED_RPCS.iter().map(|s| s.to_string()).collect(),
            limits: Some(pb::ServerLimits {
                max_concurrent_extractions: l.max_concurrent_extractions,
                default_extract_limits: Some(convert::limits_message(&defaults)),
                max_extract_limits: Some(max),
                max_sample_rows: self.config.sampling.max_rows,
                stream_buffer: l.stream_buffer,
                service_identity_sampling: self.config.sampling.allow_service_identity,
                max_concurrent_samples: self.config.sampling.max_concurrent,
                sample_time_budget_ms: self.config.sampling.time_budget_ms,
            }),
        }
    }
}

/// What sampling decrypts: what S3 undoes for the reader, SSE-C with configured keys, and the
/// client-side formats of [`cse_formats`].
fn sample_decryption(sse_c: bool, cse: Option<&crate::cse::ClientSideDecryption>) -> Vec<String> {
    let mut modes: Vec<String> =
        ["NONE", "SSE_S3", "SSE_KMS", "DSSE_KMS"].iter().map(|s| s.to_string()).collect();
    if sse_c {
        modes.push("SSE_C".into());
    }
    modes.extend(cse_formats(cse));
    modes
}

/// Client-side formats decrypted under `cse` (none without it): V2 and V3, V1 by opt-in.
fn cse_formats(cse: Option<&crate::cse::ClientSideDecryption>) -> Vec<String> {
    let Some(cse) = cse else { return Vec::new() };
    let mut formats = vec!["CSE_V2".to_string(), "CSE_V3".to_string()];
    if cse.allows_v1() {
        formats.insert(0, "CSE_V1".into());
    }
    formats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        for bad in ["", "S", "5", "5x", "123456789S", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_stream_yields_every_record_then_the_outcome() {
        let (tx, records) = mpsc::channel(4);
        let (outcome_tx, outcome) = oneshot::channel();
        let task = tokio::spawn(async move {
            for i in 0..3u32 {
                tx.send(i).await.unwrap();
            }
            drop(tx);
            outcome_tx.send(Err(Status::unavailable("shutting down"))).unwrap();
        });
        let stream = RecordStream { records, outcome: Some(outcome), task };
        let items: Vec<Result<u32, Status>> = futures::StreamExt::collect(stream).await;
        assert_eq!(items.len(), 4);
        assert_eq!(items.iter().filter_map(|r| r.as_ref().ok()).copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(items[3].as_ref().unwrap_err().code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn dropping_the_stream_aborts_the_producer() {
        let (tx, records) = mpsc::channel::<u32>(1);
        let (_outcome_tx, outcome) = oneshot::channel();
        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        struct Guard(Option<oneshot::Sender<()>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.send(());
                }
            }
        }
        // Captured, not created inside: the task may be aborted before it first runs.
        let guard = Guard(Some(dropped_tx));
        let task = tokio::spawn(async move {
            let _guard = guard;
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        let stream = RecordStream { records, outcome: Some(outcome), task };
        drop(stream);
        dropped_rx.await.expect("the producer's state was dropped");
    }
}
