//! Edge cases of full extraction against a real emulator: empty and missing buckets, scoping
//! by prefix and glob, explicit path templates.

use s3_connector_e2e::{Estate, Flavor, u64_field};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_bucket_gives_a_bucket_record_and_no_datasets() {
    let estate = Estate::get(Flavor::Moto);
    let run = estate.extract(&["estate-empty"]).await;
    assert_eq!(run.error, None);
    assert_eq!(run.exit_code, 0);
    let b = run.bucket("estate-empty").expect("bucket record");
    assert_eq!(u64_field(b, "objectCount"), 0);
    assert_eq!(u64_field(b, "datasetCount"), 0);
    assert_eq!(b["listed"], true);
    assert!(run.of_kind("dataset").is_empty());
    assert!(run.of_kind("problem").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_problem_and_the_other_buckets_still_run() {
    let estate = Estate::get(Flavor::Moto);
    let run = estate.extract(&["no-such-bucket-here", "estate-plain"]).await;
    assert_eq!(run.error, None, "a missing bucket is not a fatal error for the others");
    assert_eq!(run.exit_code, 2, "exit code 2: some bucket could not be listed");
    let problems = run.of_kind("problem");
    let missing = problems
        .iter()
        .find(|p| p["bucket"] == "no-such-bucket-here")
        .expect("problem for the missing bucket");
    assert_eq!(missing["code"], "BUCKET_NOT_FOUND");
    assert_eq!(
        run.bucket("no-such-bucket-here").expect("bucket record")["listed"].as_bool(),
        None,
        "false is omitted in proto3 JSON"
    );
    assert!(run.dataset("estate-plain", "data/", "csv").is_some(), "the other bucket was extracted");
    let summary = run.of_kind("summary")[0];
    assert_eq!(summary["completed"].as_bool(), None, "false is omitted in proto3 JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_limits_the_run() {
    let estate = Estate::get(Flavor::Moto);
    let run = estate.extract(&["s3://estate-sse-s3/raw/"]).await;
    assert_eq!(run.exit_code, 0, "{:?}", run.error);
    let names: Vec<String> =
        run.of_kind("dataset").iter().map(|d| d["prefix"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names, vec!["raw/".to_string()]);
    assert_eq!(run.bucket("estate-sse-s3").unwrap()["prefixes"][0], "raw/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_globs_scope_the_keys() {
    let estate = Estate::get(Flavor::Moto);
    let run =
        estate.extract(&["estate-sse-s3", "--include", "sales/**", "--exclude", "**/year=2023/**"]).await;
    assert_eq!(run.exit_code, 0, "{:?}", run.error);
    let datasets = run.of_kind("dataset");
    assert_eq!(datasets.len(), 1, "only the sales dataset");
    let sales = datasets[0];
    assert_eq!(sales["prefix"], "sales/");
    let year =
        sales["partitioning"]["keys"].as_array().unwrap().iter().find(|k| k["name"] == "year").unwrap();
    assert_eq!(year["minValue"], "2024");
    assert_eq!(year["maxValue"], "2024");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_overrides_the_heuristics() {
    let estate = Estate::get(Flavor::Moto);
    // Without the template, events/2024/01/31 is one dataset with date partitions; the template
    // makes each year folder a table of its own, partitioned by month and day.
    let run = estate
        .extract(&[
            "s3://estate-sse-s3/events/",
            "--template",
            "s3://estate-sse-s3/events/{table}/{month}/{day}/*",
        ])
        .await;
    assert_eq!(run.exit_code, 0, "{:?}", run.error);
    let datasets = run.of_kind("dataset");
    assert_eq!(datasets.len(), 1, "{datasets:?}");
    let d = datasets[0];
    assert_eq!(d["name"], "2024");
    assert_eq!(d["partitioning"]["style"], "TEMPLATE");
    let keys: Vec<&str> =
        d["partitioning"]["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["month", "day"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_fatal_error_with_a_clear_message() {
    let estate = Estate {
        flavor: Flavor::Moto,
        endpoint: "http://127.0.0.1:9".into(),
        expected: Estate::get(Flavor::Moto).expected,
    };
    let run = estate.extract(&["estate-plain", "--max-attempts", "1"]).await;
    assert_eq!(run.exit_code, 1);
    let error = run.error.expect("a fatal error");
    assert!(error.contains("cannot reach AWS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extraction_can_run_through_an_assumed_role() {
    let estate = Estate::get(Flavor::Moto);
    let account = estate.expected.account_id.clone();
    let role = format!("arn:aws:iam::{account}:role/catalog-reader");
    let run = estate
        .extract(&[
            "estate-plain",
            "--role-arn",
            &role,
            "--external-id",
            "customer-42",
            "--session-duration",
            "900",
        ])
        .await;
    assert_eq!(run.error, None);
    assert_eq!(run.exit_code, 0);
    assert!(run.dataset("estate-plain", "data/", "csv").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_role_settings_are_refused_before_any_request() {
    let estate = Estate::get(Flavor::Moto);
    let run = estate.extract(&["estate-plain", "--role-arn", "arn:aws:s3:::not-a-role"]).await;
    assert_eq!(run.exit_code, 1);
    assert!(
        run.error.as_deref().unwrap_or("").contains("invalid role ARN 'arn:aws:s3:::not-a-role'"),
        "{:?}",
        run.error
    );
    let run = estate
        .extract(&[
            "estate-plain",
            "--role-arn",
            "arn:aws:iam::123456789012:role/r",
            "--external-id",
            "has spaces",
        ])
        .await;
    assert_eq!(run.exit_code, 1);
    assert!(run.error.as_deref().unwrap_or("").contains("invalid ExternalId"), "{:?}", run.error);
}

#[test]
fn a_bucket_the_caller_may_not_list_names_the_principal_and_the_missing_permission() {
    // moto with IAM enforcement; the user's policy lacks s3:ListBucket.
    let locked = s3_connector_e2e::LockedEstate::get();
    let run = s3_connector_e2e::extract_as(
        &locked.endpoint,
        &locked.access_key_id,
        &locked.secret_access_key,
        &[&locked.bucket],
    );
    assert_eq!(run.exit_code, 2, "completed, but a bucket could not be listed: {:?}", run.error);
    let problems = run.of_kind("problem");
    let denied = problems.iter().find(|p| p["code"] == "BUCKET_ACCESS_DENIED").expect("BUCKET_ACCESS_DENIED");
    assert_eq!(denied["principal"], locked.user_arn.as_str());
    assert_eq!(denied["operation"], "s3:ListBucket");
    let statement = &denied["remediation"]["policyStatement"];
    assert_eq!(statement["Action"][0], "s3:ListBucket");
    assert_eq!(statement["Resource"], format!("arn:aws:s3:::{}", locked.bucket));
    assert_eq!(run.bucket(&locked.bucket).expect("bucket record")["listed"].as_bool(), None, "listed: false");
    assert!(run.of_kind("dataset").is_empty());
    // The secret never appears in the output.
    for r in &run.records {
        assert!(!r.to_string().contains(&locked.secret_access_key));
    }
}
