//! The gRPC service end to end: the real `s3-connector serve` process, a real tonic client, a
//! real emulator behind it.

use std::collections::BTreeMap;

use futures::StreamExt;
use s3_connector_e2e::grpc::{ServerProcess, TOKEN, TokenInterceptor, config_for, metric_sum};
use s3_connector_e2e::{Estate, Flavor};
use s3_connector_proto::v1 as pb;
use serde_json::Value;
use tonic::Code;
use tonic_types::StatusExt;

fn scope(targets: &[&str]) -> Option<pb::ExtractScope> {
    Some(pb::ExtractScope { targets: targets.iter().map(|t| t.to_string()).collect(), ..Default::default() })
}

/// Records as proto3 JSON without what differs between two runs of the same scope (run id,
/// timestamps, request counts, which depend on retries).
fn normalized(records: impl IntoIterator<Item = Value>) -> BTreeMap<String, Vec<String>> {
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mut record in records {
        let obj = record.as_object_mut().expect("record object");
        obj.remove("runId");
        let (kind, mut body) = obj
            .iter()
            .find(|(k, _)| *k != "schemaVersion")
            .map(|(k, v)| (k.clone(), v.clone()))
            .expect("record body");
        if kind == "summary" {
            let s = body.as_object_mut().expect("summary");
            for volatile in ["startedAt", "finishedAt", "requests", "bytesFetched"] {
                s.remove(volatile);
            }
        }
        by_kind.entry(kind).or_default().push(body.to_string());
    }
    for list in by_kind.values_mut() {
        list.sort();
    }
    by_kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_extraction_equals_the_cli_output() {
    let estate = Estate::get(Flavor::LocalStack);
    let buckets: Vec<&str> = estate.expected.buckets.iter().map(|b| b.name.as_str()).collect();
    let cli = estate.extract(&buckets).await;
    assert_eq!(cli.error, None);

    let server = ServerProcess::start(&config_for(&estate.endpoint, ""));
    let mut client = server.client().await;
    let request = pb::ExtractMetadataRequest { scope: scope(&buckets), ..Default::default() };
    let mut stream = client.extract_metadata(request).await.expect("stream starts").into_inner();
    let mut streamed = Vec::new();
    while let Some(item) = stream.next().await {
        let record = item.expect("no error mid-stream");
        assert_eq!(record.schema_version, "catalog.s3.v1");
        streamed.push(serde_json::to_value(&record).expect("proto3 JSON"));
    }
    assert!(streamed.last().and_then(|r| r.get("summary")).is_some(), "the summary is the last record");
    let from_cli = normalized(cli.records.clone());
    let from_grpc = normalized(streamed);
    assert_eq!(from_cli.keys().collect::<Vec<_>>(), from_grpc.keys().collect::<Vec<_>>());
    for (kind, cli_records) in &from_cli {
        assert_eq!(&from_grpc[kind], cli_records, "{kind} records differ between the CLI and gRPC");
    }
    assert!(from_cli["dataset"].len() >= 10, "the estate has datasets to compare");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_and_tokens_are_enforced() {
    let estate = Estate::get(Flavor::Moto);
    let server = ServerProcess::start(&config_for(&estate.endpoint, ""));
    let channel = server.channel().await;

    // Health needs no token (probes cannot send one).
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "catalog.s3.v1.ConnectorService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap_or_else(|e| panic!("health of '{service}': {e}"))
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "'{service}'"
        );
    }

    // Reflection lists the service (with the token).
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection =
        ServerReflectionClient::with_interceptor(channel.clone(), TokenInterceptor(Some(TOKEN.into())));
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"catalog.s3.v1.ConnectorService".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");

    // The API needs the token: missing and wrong tokens are UNAUTHENTICATED.
    use s3_connector_proto::v1::connector_service_client::ConnectorServiceClient;
    for token in [None, Some("wrong-token-wrong-token".to_string())] {
        let mut client =
            ConnectorServiceClient::with_interceptor(channel.clone(), TokenInterceptor(token.clone()));
        let err = client.get_capabilities(pb::GetCapabilitiesRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "token {token:?}");
    }
    let caps =
        server.client().await.get_capabilities(pb::GetCapabilitiesRequest {}).await.expect("ok").into_inner();
    assert_eq!(caps.schema_version, "catalog.s3.v1");
    assert!(caps.file_formats.contains(&"parquet".to_string()), "{:?}", caps.file_formats);
    assert!(caps.implemented_rpcs.contains(&"ExtractMetadata".to_string()));
    assert!(caps.implemented_rpcs.contains(&"CheckAccess".to_string()));
    assert_eq!(caps.limits.expect("limits").max_concurrent_extractions, 4);

    // HTTP probes for platforms whose gRPC probes cannot speak TLS.
    assert_eq!(server.http_get("/livez").0, 200);
    assert_eq!(server.http_get("/readyz").0, 200);

    let metrics = server.scrape();
    assert!(metric_sum(&metrics, "s3_connector_unauthenticated_total", &[]) >= 2.0, "{metrics}");
    assert!(
        metric_sum(
            &metrics,
            "s3_connector_grpc_requests_total",
            &[("method", "GetCapabilities"), ("code", "Ok")]
        ) >= 1.0,
        "{metrics}"
    );
}

fn field_violation(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let bad = details.bad_request().unwrap_or_else(|| panic!("no BadRequest detail in {status:?}"));
    bad.field_violations[0].field.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_name_the_field() {
    let estate = Estate::get(Flavor::Moto);
    let server = ServerProcess::start(&config_for(&estate.endpoint, ""));
    let mut client = server.client().await;
    let connection = |c: pb::ConnectionSettings| Some(c);
    let cases: Vec<(pb::ExtractMetadataRequest, &str)> = vec![
        (
            pb::ExtractMetadataRequest {
                connection: connection(pb::ConnectionSettings {
                    role_arn: "arn:aws:iam::12345:role/short-account".into(),
                    ..Default::default()
                }),
                scope: scope(&["estate-plain"]),
                ..Default::default()
            },
            "connection.role_arn",
        ),
        (
            pb::ExtractMetadataRequest {
                connection: connection(pb::ConnectionSettings {
                    role_arn: "arn:aws:iam::123456789012:role/catalog".into(),
                    external_id: "spaces are not allowed".into(),
                    ..Default::default()
                }),
                scope: scope(&["estate-plain"]),
                ..Default::default()
            },
            "connection.external_id",
        ),
        (
            pb::ExtractMetadataRequest {
                scope: scope(&["estate-plain", "Not_A_Bucket"]),
                ..Default::default()
            },
            "scope.targets[1]",
        ),
        (pb::ExtractMetadataRequest::default(), "scope"),
    ];
    for (request, field) in cases {
        let err = client.extract_metadata(request).await.expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert_eq!(field_violation(&err), field);
        assert!(err.message().contains(field), "{}", err.message());
    }

    // An endpoint the server does not allow is refused before any request leaves.
    let request = pb::ExtractMetadataRequest {
        connection: connection(pb::ConnectionSettings {
            endpoint_url: "http://169.254.169.254".into(),
            ..Default::default()
        }),
        scope: scope(&["estate-plain"]),
        ..Default::default()
    };
    let err = client.extract_metadata(request).await.expect_err("endpoint");
    assert_eq!(err.code(), Code::PermissionDenied);

    // GeneratePolicies names the setup field.
    let err = client
        .generate_policies(pb::GeneratePoliciesRequest {
            setup: Some(pb::PolicySetup {
                account_id: "12".into(),
                region: "us-east-1".into(),
                connector_role_name: "catalog".into(),
                trusted_principal: "111122223333".into(),
                external_id: "external-id-1".into(),
                source_buckets: vec![pb::PolicySourceBucket {
                    name: "data-bucket".into(),
                    kms_key_arn: String::new(),
                }],
                ..Default::default()
            }),
        })
        .await
        .expect_err("bad account id");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(field_violation(&err), "setup.account_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_policies_returns_the_documents_of_the_policy_command() {
    let estate = Estate::get(Flavor::Moto);
    let server = ServerProcess::start(&config_for(&estate.endpoint, ""));
    let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let response = server
        .client()
        .await
        .generate_policies(pb::GeneratePoliciesRequest {
            setup: Some(pb::PolicySetup {
                account_id: "123456789012".into(),
                region: "us-east-1".into(),
                connector_role_name: "catalog-reader".into(),
                trusted_principal: "111122223333".into(),
                external_id: "customer-42".into(),
                source_buckets: vec![pb::PolicySourceBucket {
                    name: "data-bucket".into(),
                    kms_key_arn: key.into(),
                }],
                inventory: Some(pb::PolicyInventory {
                    destination_bucket: "inventory-bucket".into(),
                    destination_prefix: "reports".into(),
                    report_kms_key_arn: key.into(),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("policies")
        .into_inner();
    let names: Vec<&str> = response.documents.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "connectorIdentityPolicy",
            "connectorTrustPolicy",
            "inventoryKeyPolicyStatement",
            "inventoryDestinationBucketPolicy"
        ]
    );
    let trust =
        serde_json::to_value(response.documents[1].document.as_ref().expect("document")).expect("json");
    assert_eq!(trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"], "customer-42");
    let identity =
        serde_json::to_value(response.documents[0].document.as_ref().expect("document")).expect("json");
    assert!(identity.to_string().contains("kms:Decrypt"), "{identity}");
    assert!(response.text.contains("catalog-reader"));
}

/// The bucket the suite seeds with many small datasets for cancellation tests.
fn many_datasets() -> (String, u64) {
    let bucket = std::env::var("S3C_MOTO_MANY_BUCKET")
        .unwrap_or_else(|_| panic!("S3C_MOTO_MANY_BUCKET is not set: run the suite with scripts/test.sh"));
    let datasets: u64 =
        std::env::var("S3C_MOTO_MANY_DATASETS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(datasets >= 100, "S3C_MOTO_MANY_DATASETS must name at least 100 datasets");
    (bucket, datasets)
}

/// Scrapes until no extraction runs (each scrape is a round trip; no fixed sleeps).
fn wait_until_idle(server: &ServerProcess) -> String {
    for _ in 0..2000 {
        let text = server.scrape();
        if metric_sum(&text, "s3_connector_active_extractions", &[]) == 0.0 {
            return text;
        }
        std::thread::yield_now();
    }
    panic!("the extraction never stopped:\n{}", server.scrape());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_stops_the_s3_work() {
    let estate = Estate::get(Flavor::Moto);
    let (bucket, datasets) = many_datasets();
    // Small buffers and sequential work, so the extraction waits for the client early.
    let server = ServerProcess::start(&config_for(
        &estate.endpoint,
        "stream_buffer = 1\nlisting_concurrency = 1\ninference_concurrency = 1\nencryption_probes = 0",
    ));
    let mut client = server.client().await;
    let request = pb::ExtractMetadataRequest { scope: scope(&[&bucket]), ..Default::default() };
    let mut stream = client.extract_metadata(request).await.expect("stream").into_inner();
    let first = stream.next().await.expect("a record").expect("ok");
    assert!(first.record.is_some());
    assert!(metric_sum(&server.scrape(), "s3_connector_active_extractions", &[]) >= 1.0, "running");
    drop(stream);

    let after = wait_until_idle(&server);
    let gets = metric_sum(&after, "s3_connector_aws_requests_total", &[("operation", "GetObject")]);
    // A complete run reads at least one object per dataset.
    assert!(
        gets < (datasets / 2) as f64,
        "{gets} GETs after cancelling: the run went on (a full run needs >= {datasets})"
    );
    // Nothing is left running: another round trip later, the counts have not moved.
    server.client().await.get_capabilities(pb::GetCapabilitiesRequest {}).await.expect("ok");
    let later = server.scrape();
    assert_eq!(
        metric_sum(&later, "s3_connector_aws_requests_total", &[]),
        metric_sum(&after, "s3_connector_aws_requests_total", &[]),
        "no S3 requests after the stream ended"
    );
    assert_eq!(
        metric_sum(
            &later,
            "s3_connector_grpc_requests_total",
            &[("method", "ExtractMetadata"), ("code", "Cancelled")]
        ),
        1.0,
        "{later}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_the_stream_with_deadline_exceeded() {
    let estate = Estate::get(Flavor::Moto);
    let (bucket, _) = many_datasets();
    let server = ServerProcess::start(&config_for(
        &estate.endpoint,
        "listing_concurrency = 1\ninference_concurrency = 1",
    ));
    let mut client = server.client().await;
    let mut request =
        tonic::Request::new(pb::ExtractMetadataRequest { scope: scope(&[&bucket]), ..Default::default() });
    // Far shorter than a sequential run over hundreds of datasets can take.
    request.set_timeout(std::time::Duration::from_millis(300));
    let outcome = match client.extract_metadata(request).await {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => break status,
                    None => panic!("the stream completed despite the deadline"),
                }
            }
        }
    };
    assert_eq!(outcome.code(), Code::DeadlineExceeded, "{outcome:?}");
    wait_until_idle(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_extractions_beyond_the_limit_are_resource_exhausted() {
    let estate = Estate::get(Flavor::Moto);
    let (bucket, _) = many_datasets();
    let server = ServerProcess::start(&config_for(
        &estate.endpoint,
        "max_concurrent_extractions = 1\nstream_buffer = 1\nlisting_concurrency = 1\ninference_concurrency = 1",
    ));
    let mut client = server.client().await;
    let request = pb::ExtractMetadataRequest { scope: scope(&[&bucket]), ..Default::default() };
    let mut first = client.extract_metadata(request.clone()).await.expect("first stream").into_inner();
    first.next().await.expect("a record").expect("ok");
    let err = client.extract_metadata(request.clone()).await.expect_err("second stream refused");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.get_error_details().error_info().expect("info").reason, "TOO_MANY_EXTRACTIONS");
    drop(first);
    wait_until_idle(&server);
    // The slot is free again.
    let mut again = client.extract_metadata(request).await.expect("slot freed").into_inner();
    again.next().await.expect("a record").expect("ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_in_flight_streams_cleanly() {
    let estate = Estate::get(Flavor::Moto);
    let (bucket, _) = many_datasets();
    let server = ServerProcess::start(&config_for(
        &estate.endpoint,
        "stream_buffer = 1\nlisting_concurrency = 1\ninference_concurrency = 1",
    ));
    let mut client = server.client().await;
    let request = pb::ExtractMetadataRequest { scope: scope(&[&bucket]), ..Default::default() };
    let mut stream = client.extract_metadata(request).await.expect("stream").into_inner();
    stream.next().await.expect("a record").expect("ok");
    let reader = tokio::spawn(async move {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    });
    let (status, stderr) = tokio::task::spawn_blocking(move || server.terminate()).await.expect("terminate");
    assert!(status.success(), "exit {status}: {stderr}");
    // The stream either finished within the grace period or was ended with UNAVAILABLE: never
    // a broken connection without a status.
    if let Some(status) = reader.await.expect("reader") {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
}

#[test]
fn plain_text_on_a_public_address_is_refused_without_insecure() {
    let config = "[server]\nlisten = \"0.0.0.0:0\"\nmetrics_listen = \"\"\n";
    let failure = match ServerProcess::try_start(config, &[]) {
        Err(f) => f,
        Ok(_) => panic!("a plain-text public listener must be refused"),
    };
    assert!(!failure.status.success());
    assert!(failure.stderr.contains("refusing plain-text"), "{}", failure.stderr);

    let server = ServerProcess::try_start(config, &["--insecure"]).unwrap_or_else(|f| panic!("{}", f.stderr));
    let (_, stderr) = server.terminate();
    assert!(stderr.contains("--insecure"), "a warning is logged: {stderr}");
}

#[test]
fn configuration_errors_name_the_key_and_the_file() {
    let failure = match ServerProcess::try_start("[limits]\nstream_bufer = 2\n", &[]) {
        Err(f) => f,
        Ok(_) => panic!("an unknown key must be refused"),
    };
    assert!(failure.stderr.contains("stream_bufer"), "{}", failure.stderr);
    assert!(failure.stderr.contains("serve.toml"), "{}", failure.stderr);

    let dir = tempfile::tempdir().unwrap();
    let failure = match ServerProcess::try_start_in(dir, "[server]\nlisten = \"127.0.0.1:0\"\n", &[], None) {
        Err(f) => f,
        Ok(_) => panic!("no token must be refused"),
    };
    assert!(failure.stderr.contains("S3_CONNECTOR_TOKEN"), "{}", failure.stderr);
}

mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

    struct Pki {
        ca_pem: String,
        server: (String, String),
        client: (String, String),
        stranger: (String, String),
    }

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(names: &[&str], issuer: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn pki() -> Pki {
        let authority = ca("s3-connector test CA");
        let other = ca("some other CA");
        Pki {
            ca_pem: authority.pem(),
            server: leaf(&["localhost", "127.0.0.1"], &authority),
            client: leaf(&["catalog-platform"], &authority),
            stranger: leaf(&["stranger"], &other),
        }
    }

    async fn call(
        server: &ServerProcess,
        pki: &Pki,
        identity: Option<&(String, String)>,
    ) -> Result<(), String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let port = server.grpc_addr.rsplit(':').next().unwrap();
        let channel = Channel::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client =
            s3_connector_proto::v1::connector_service_client::ConnectorServiceClient::with_interceptor(
                channel,
                TokenInterceptor(Some(TOKEN.into())),
            );
        client.get_capabilities(pb::GetCapabilitiesRequest {}).await.map(|_| ()).map_err(|e| e.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mtls_rejects_clients_without_a_ca_signed_certificate() {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in
            [("server.pem", &pki.server.0), ("server.key", &pki.server.1), ("ca.pem", &pki.ca_pem)]
        {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"\"\ntls_cert_file = \"{0}/server.pem\"\n\
             tls_key_file = \"{0}/server.key\"\ntls_client_ca_file = \"{0}/ca.pem\"\n",
            dir.path().display()
        );
        let server = ServerProcess::try_start_in(dir, &config, &[], Some(TOKEN))
            .unwrap_or_else(|f| panic!("{}", f.stderr));

        call(&server, &pki, Some(&pki.client)).await.expect("a CA-signed client certificate is accepted");
        assert!(call(&server, &pki, None).await.is_err(), "no client certificate: refused");
        assert!(
            call(&server, &pki, Some(&pki.stranger)).await.is_err(),
            "a certificate from another CA: refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_access_reports_disabled_and_pending_deletion_keys() {
    let estate = Estate::get(Flavor::LocalStack);
    let server = ServerProcess::start(&config_for(&estate.endpoint, ""));
    let mut client = server.client().await;
    let report = client
        .check_access(pb::CheckAccessRequest {
            targets: vec!["estate-kms-broken".into(), "estate-kms-a".into()],
            ..Default::default()
        })
        .await
        .expect("check runs")
        .into_inner();
    for (letter, code) in [("D", "KMS_KEY_DISABLED"), ("E", "KMS_KEY_PENDING_DELETION")] {
        let key = &estate.expected.keys[letter];
        let decrypt = report
            .probes
            .iter()
            .find(|p| p.probe == "DECRYPT" && &p.resource == key)
            .unwrap_or_else(|| panic!("no DECRYPT probe of {key}: {:#?}", report.probes));
        assert_eq!(decrypt.status, "FAIL");
        assert_eq!(decrypt.problem_code, code);
        assert_eq!(decrypt.bucket, "estate-kms-broken");
        assert!(
            report.findings.iter().any(|f| f.code == code && &f.resource == key),
            "{:#?}",
            report.findings
        );
    }
    let key_a = &estate.expected.keys["A"];
    assert!(report.probes.iter().any(|p| p.probe == "DECRYPT" && &p.resource == key_a && p.status == "PASS"));
    let readiness = report.readiness.expect("readiness");
    assert!(!readiness.extraction.expect("extraction").ready, "a bucket with unusable keys is not ready");

    // Bad arguments are named before any AWS call.
    let err = client
        .check_access(pb::CheckAccessRequest { targets: vec!["Bad_Bucket".into()], ..Default::default() })
        .await
        .expect_err("invalid bucket");
    assert_eq!(field_violation(&err), "targets[0]");
    let err = client
        .check_access(pb::CheckAccessRequest {
            targets: vec!["estate-kms-a".into()],
            sampling_user: Some(pb::UserIdentity {
                identity: Some(pb::user_identity::Identity::Role(pb::AssumeRoleIdentity {
                    role_arn: "not-an-arn".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })
        .await
        .expect_err("invalid sampling role");
    assert_eq!(field_violation(&err), "sampling_user.role.role_arn");
}

fn sample_request(uri: &str, rows: u32) -> pb::SampleRowsRequest {
    pb::SampleRowsRequest { uri: uri.into(), max_rows: rows, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rows_needs_a_user_identity_unless_the_operator_allows_the_service() {
    let estate = Estate::get(Flavor::Moto);
    let server = ServerProcess::start(&config_for(&estate.endpoint, ""));
    let err =
        server.client().await.sample_rows(sample_request("s3://estate-sse-s3/raw/", 5)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(field_violation(&err), "user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rows_reads_typed_rows_of_csv_json_lines_and_parquet_datasets() {
    let estate = Estate::get(Flavor::Moto);
    let config = format!("{}\n[sampling]\nallow_service_identity = true\n", config_for(&estate.endpoint, ""));
    let server = ServerProcess::start(&config);
    let mut client = server.client().await;
    for (prefix, format) in [("raw/", "csv"), ("events/", "jsonl"), ("sales/", "parquet")] {
        let expected = estate
            .expected
            .datasets
            .iter()
            .find(|d| d.bucket == "estate-sse-s3" && d.prefix == prefix && d.format == format)
            .unwrap_or_else(|| panic!("expected dataset {prefix}"));
        let response = client
            .sample_rows(sample_request(&format!("s3://estate-sse-s3/{prefix}"), 3))
            .await
            .unwrap_or_else(|e| panic!("sample of {prefix}: {e:?}"))
            .into_inner();
        let names: Vec<&str> = response.schema.iter().map(|f| f.name.as_str()).collect();
        let expected_names: Vec<&str> = expected.columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(names, expected_names, "{prefix}");
        assert_eq!(response.rows.len(), 3, "{prefix}");
        assert!(response.rows.iter().all(|r| r.values.len() == names.len()), "{prefix}");
        assert_eq!(response.encryption, "SSE_S3", "{prefix}");
        // The first column is an id in every dataset: a number, present.
        let first = response.rows[0].values[0].value.as_ref().and_then(|v| v.kind.as_ref());
        assert!(
            matches!(
                first,
                Some(pbjson_types::value::Kind::NumberValue(_))
                    | Some(pbjson_types::value::Kind::StringValue(_))
            ),
            "{prefix}: {first:?}"
        );
    }
    // Projection and truncation.
    let response = client
        .sample_rows(pb::SampleRowsRequest {
            uri: "s3://estate-sse-s3/raw/".into(),
            max_rows: 2,
            columns: vec!["name".into()],
            max_value_bytes: 1,
            ..Default::default()
        })
        .await
        .expect("projected sample")
        .into_inner();
    assert_eq!(response.schema.len(), 1);
    assert!(
        response.rows.iter().all(|r| r.values[0].truncated),
        "names longer than one byte are cut and marked"
    );
    let err = client
        .sample_rows(pb::SampleRowsRequest {
            uri: "s3://estate-sse-s3/raw/".into(),
            columns: vec!["no_such_column".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.get_error_details().error_info().expect("info").reason, "SAMPLE_UNKNOWN_COLUMN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rows_explains_denials_with_the_problem_code_and_key() {
    let estate = Estate::get(Flavor::LocalStack);
    let config = format!("{}\n[sampling]\nallow_service_identity = true\n", config_for(&estate.endpoint, ""));
    let server = ServerProcess::start(&config);
    let mut client = server.client().await;
    for (uri, code, grpc) in [
        ("s3://estate-kms-broken/disabled/", "KMS_KEY_DISABLED", Code::FailedPrecondition),
        ("s3://estate-kms-broken/pending/", "KMS_KEY_PENDING_DELETION", Code::FailedPrecondition),
        ("s3://estate-secure/ssec/", "SSE_C_KEY_REQUIRED", Code::FailedPrecondition),
        ("s3://estate-secure/cse-v2/", "CLIENT_SIDE_ENCRYPTED", Code::FailedPrecondition),
        ("s3://estate-sse-s3/no-such-prefix/", "NO_DATA_FILES", Code::NotFound),
    ] {
        let err = client.sample_rows(sample_request(uri, 5)).await.expect_err(uri);
        assert_eq!(err.code(), grpc, "{uri}: {err:?}");
        let details = err.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, code, "{uri}");
        assert!(info.metadata.get("resource").is_some_and(|r| r.starts_with(uri)), "{uri}: {info:?}");
        if code.starts_with("KMS_") {
            assert!(
                info.metadata.get("kms_key_arn").is_some_and(|a| a.starts_with("arn:aws:kms:")),
                "{uri}: {info:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rows_reads_sse_c_objects_with_the_configured_key() {
    let estate = Estate::get(Flavor::LocalStack);
    let key = estate.expected.ssec_key_b64.clone().expect("the estate records its SSE-C key");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ssec.key");
    std::fs::write(&key_file, &key).unwrap();
    let config = format!(
        "{}\n[sampling]\nallow_service_identity = true\nallow_sse_c_over_loopback_http = true\n\
         sse_c_keys = [\"estate-secure/ssec/=file:{}\"]\n",
        config_for(&estate.endpoint, ""),
        key_file.display()
    );
    let server = ServerProcess::try_start_in(dir, &config, &[], Some(TOKEN))
        .unwrap_or_else(|f| panic!("{}", f.stderr));
    let response = server
        .client()
        .await
        .sample_rows(sample_request("s3://estate-secure/ssec/", 2))
        .await
        .expect("rows of the SSE-C dataset")
        .into_inner();
    assert_eq!(response.rows.len(), 2);
    assert_eq!(response.encryption, "SSE_C");
}

/// An S3 endpoint that accepts connections and never answers: a request to it ends only when
/// the caller gives up, so budgets, limits and cancellation are observable without timing.
struct BlackHole {
    endpoint: String,
    accepted: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                if tx.send(stream).is_err() {
                    break;
                }
            }
        });
        BlackHole { endpoint, accepted: tokio::sync::Mutex::new(rx) }
    }

    /// The next connection the server opens to S3 (the timeout only guards against a hang).
    async fn next_connection(&self) -> std::net::TcpStream {
        let mut rx = self.accepted.lock().await;
        tokio::time::timeout(std::time::Duration::from_secs(120), rx.recv())
            .await
            .expect("the server connects to S3")
            .expect("listener running")
    }
}

/// Blocks until the peer closes the connection: the request on it was abandoned.
async fn closed_by_peer(mut stream: std::net::TcpStream) {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        // Only a guard against hanging forever; the assertion is that the peer closes.
        stream.set_read_timeout(Some(std::time::Duration::from_secs(120))).expect("timeout");
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("the server kept the abandoned S3 request open: {e}"),
            }
        }
    })
    .await
    .expect("join");
}

fn reason(status: &tonic::Status) -> String {
    status.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_past_its_time_budget_is_deadline_exceeded_and_its_reads_stop() {
    let hole = BlackHole::start();
    let config = format!(
        "{}\n[sampling]\nallow_service_identity = true\ntime_budget_ms = 300\n",
        config_for(&hole.endpoint, "")
    );
    let server = ServerProcess::start(&config);
    let mut client = server.client().await;
    let call = tokio::spawn(async move { client.sample_rows(sample_request("s3://hole/data.csv", 5)).await });
    // The S3 read started (and will never be answered) ...
    let connection = hole.next_connection().await;
    // ... so only the budget can end the call.
    let err = call.await.expect("join").expect_err("no answer from S3");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(reason(&err), "SAMPLE_TIME_BUDGET_EXCEEDED");
    assert!(err.message().contains("300 ms"), "{}", err.message());
    // The read was dropped with the budget, not left running.
    closed_by_peer(connection).await;
    let text = server.scrape();
    assert_eq!(
        metric_sum(
            &text,
            "s3_connector_grpc_requests_total",
            &[("method", "SampleRows"), ("code", "DeadlineExceeded")]
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_beyond_the_concurrency_limit_are_refused_and_a_client_leaving_frees_its_slot() {
    let hole = BlackHole::start();
    let config = format!(
        "{}\n[sampling]\nallow_service_identity = true\nmax_concurrent = 1\ntime_budget_ms = 600000\n",
        config_for(&hole.endpoint, "")
    );
    let server = ServerProcess::start(&config);
    let request = sample_request("s3://hole/data.csv", 5);

    // The first sample holds the only slot: its S3 read is in flight (never answered).
    let mut first_client = server.client().await;
    let first_request = request.clone();
    let first = tokio::spawn(async move { first_client.sample_rows(first_request).await });
    let first_connection = hole.next_connection().await;

    let mut client = server.client().await;
    let err = client.sample_rows(request.clone()).await.expect_err("no slot left");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err), "TOO_MANY_SAMPLES");

    // The first client goes away: the server drops its sample, with the S3 read ...
    first.abort();
    closed_by_peer(first_connection).await;
    // ... and the slot: the next sample gets as far as S3. (The slot is released as the
    // sample is dropped, which may be a moment after the connection closes: a refusal in
    // between is retried.)
    for attempt in 1.. {
        assert!(attempt < 1000, "the slot was never released");
        let mut c = client.clone();
        let r = request.clone();
        let mut call = tokio::spawn(async move { c.sample_rows(r).await });
        tokio::select! {
            _connection = hole.next_connection() => {
                call.abort();
                break;
            }
            result = &mut call => {
                let err = result.expect("join").expect_err("S3 never answers");
                assert_eq!(reason(&err), "TOO_MANY_SAMPLES", "{err:?}");
            }
        }
    }
}

/// Streams an extraction of `targets` and keeps its records as proto3 JSON.
async fn extract_over_grpc(server: &ServerProcess, targets: &[&str]) -> s3_connector_e2e::RunResult {
    let request = pb::ExtractMetadataRequest { scope: scope(targets), ..Default::default() };
    let mut stream =
        server.client().await.extract_metadata(request).await.expect("stream starts").into_inner();
    let mut records = Vec::new();
    while let Some(item) = stream.next().await {
        records.push(serde_json::to_value(item.expect("no error mid-stream")).expect("proto3 JSON"));
    }
    s3_connector_e2e::RunResult { exit_code: 0, error: None, records }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_metadata_decrypts_client_side_objects_when_the_extraction_keys_allow_it() {
    let estate = Estate::get(Flavor::Moto);
    let cse = estate.expected.cse.as_ref().expect("the estate has client-side encrypted objects");
    let bucket = cse.objects[0].bucket.clone();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ssec.key");
    std::fs::write(&key_file, estate.expected.ssec_key_b64.clone().expect("SSE-C key")).unwrap();

    // Without [extraction] keys: client-side datasets keep their problem and have no schema;
    // capabilities say nothing is decrypted beyond what S3 undoes.
    let plain = ServerProcess::start(&config_for(&estate.endpoint, ""));
    let caps =
        plain.client().await.get_capabilities(pb::GetCapabilitiesRequest {}).await.unwrap().into_inner();
    assert_eq!(caps.sample_decryption, ["NONE", "SSE_S3", "SSE_KMS", "DSSE_KMS"]);
    assert!(caps.extract_decryption.is_empty(), "{:?}", caps.extract_decryption);
    let run = extract_over_grpc(&plain, &[&bucket]).await;
    let ds = run.dataset(&bucket, "cse-v3/", "csv").expect("the cse-v3 dataset");
    assert!(!ds["schema"]["available"].as_bool().unwrap_or(false), "{ds}");
    assert!(run.problem_codes(&bucket, "cse-v3/").contains(&"CLIENT_SIDE_ENCRYPTED".to_string()));
    drop(plain);

    // With them: real schemas, and the wrapping KMS key among the dataset's keys.
    let config = format!(
        "{}\n[extraction]\ncse_kms = true\n\n[sampling]\ncse_kms = true\nallow_sse_c_over_loopback_http = true\n\
         sse_c_keys = [\"estate-secure/ssec/=file:{}\"]\n",
        config_for(&estate.endpoint, ""),
        key_file.display()
    );
    let server = ServerProcess::try_start_in(dir, &config, &[], Some(TOKEN))
        .unwrap_or_else(|f| panic!("{}", f.stderr));
    let caps =
        server.client().await.get_capabilities(pb::GetCapabilitiesRequest {}).await.unwrap().into_inner();
    for mode in ["SSE_C", "CSE_V2", "CSE_V3"] {
        assert!(caps.sample_decryption.contains(&mode.to_string()), "{mode}: {:?}", caps.sample_decryption);
    }
    assert!(!caps.sample_decryption.contains(&"CSE_V1".to_string()), "V1 only by opt-in");
    assert_eq!(caps.extract_decryption, ["CSE_V2", "CSE_V3"]);
    let run = extract_over_grpc(&server, &[&bucket]).await;
    for (prefix, format, columns) in
        [("cse-v3/", "csv", vec!["id", "name", "active"]), ("cse-v2/", "jsonl", vec!["id", "secret"])]
    {
        let ds = run.dataset(&bucket, prefix, format).unwrap_or_else(|| panic!("dataset {prefix}"));
        assert_eq!(ds["schema"]["available"], Value::Bool(true), "{prefix}: {ds}");
        let names: Vec<&str> =
            ds["schema"]["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, columns, "{prefix}");
        assert_eq!(ds["encryption"]["counts"][0]["type"], "CLIENT_SIDE", "{prefix}: {ds}");
        assert_eq!(s3_connector_e2e::strings(&ds["encryption"]["kmsKeyArns"]), [cse.kms_key_arn.as_str()]);
        assert!(!run.problem_codes(&bucket, prefix).contains(&"CLIENT_SIDE_ENCRYPTED".to_string()));
    }
}
