#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the emulators (pinned Python venvs),
# starts moto and LocalStack on free loopback ports, seeds the sample estate on each, runs
# formatting and lint checks and every Rust test, then stops the emulators.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

emulators="$repo/deploy/local/emulators.sh"
run_dir="$repo/.cache/run"

# A /dev/null that is a regular file (something renamed a file over it) feeds cargo's own
# rustc probes garbage; say so instead of failing obscurely. Checked again at the end, so a
# test that replaces it fails the suite.
devnull_ok() {
    [ -c /dev/null ] || { echo "error: /dev/null is not a character device; restore it with: rm /dev/null && mknod -m 666 /dev/null c 1 3" >&2; return 1; }
}
devnull_ok
mkdir -p "$run_dir"

cleanup() { "$emulators" stop all >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "==> emulators: install (first run only) and start"
"$emulators" setup all
"$emulators" start moto
"$emulators" start localstack
"$emulators" start moto-iam
# shellcheck disable=SC1091
source "$run_dir/moto.env"
# shellcheck disable=SC1091
source "$run_dir/moto-iam.env"
# shellcheck disable=SC1091
source "$run_dir/localstack.env"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 || true
seed_python="$repo/.cache/venvs/moto/bin/python"

echo "==> seeding the sample estate"
"$seed_python" "$repo/deploy/local/seed_estate.py" --endpoint "$MOTO_ENDPOINT" --flavor moto --expected "$run_dir/moto-expected.json"
"$seed_python" "$repo/deploy/local/seed_estate.py" --endpoint "$LOCALSTACK_ENDPOINT" --flavor localstack --expected "$run_dir/localstack-expected.json"
# Many small datasets: gRPC cancellation, deadline and concurrency tests need runs that last.
"$seed_python" "$repo/deploy/local/seed_estate.py" --endpoint "$MOTO_ENDPOINT" --flavor moto --bench-objects 400 --bench-datasets 300 --bench-bucket grpc-many --expected "$run_dir/moto-many-expected.json"
"$seed_python" "$repo/deploy/local/seed_iam.py" --endpoint "$MOTO_IAM_ENDPOINT" --out "$run_dir/moto-iam-user.json"

export S3C_MOTO_ENDPOINT="$MOTO_ENDPOINT" S3C_MOTO_EXPECTED="$run_dir/moto-expected.json"
export S3C_LOCALSTACK_ENDPOINT="$LOCALSTACK_ENDPOINT" S3C_LOCALSTACK_EXPECTED="$run_dir/localstack-expected.json"
export S3C_MOTO_MANY_BUCKET=grpc-many S3C_MOTO_MANY_DATASETS=300
export S3C_MOTO_IAM_ENDPOINT="$MOTO_IAM_ENDPOINT" S3C_MOTO_IAM_USER="$run_dir/moto-iam-user.json"

# A one-shot run gains nothing from incremental caches; they cost ~1.5 GB of disk.
export CARGO_INCREMENTAL=0

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> deployment artefacts (cfn-lint, terraform validate)"
"$repo/scripts/check-deploy.sh"
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
# Some end-to-end tests run the real binary as a separate process (own credentials): cargo
# builds it for the connector's integration tests, with the same features as the tests (a
# separate `cargo build` would compile the AWS crates a second time).
export S3C_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/s3-connector"
cargo test --workspace --locked

echo "==> deployment manifests"
# The Kubernetes manifests parse, and the ConfigMap's serve.toml is a valid configuration.
"$seed_python" - "$repo/deploy/k8s" "$run_dir/k8s-serve.toml" <<'PY'
import glob, sys, yaml
docs = [d for f in sorted(glob.glob(sys.argv[1] + "/*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
kinds = sorted(d["kind"] for d in docs)
assert {"ConfigMap", "CronJob", "Deployment", "Service"} <= set(kinds), kinds
cm = next(d for d in docs if d["kind"] == "ConfigMap")
open(sys.argv[2], "w").write(cm["data"]["serve.toml"])
print("manifests:", ", ".join(kinds))
PY
"$S3C_BIN" serve --config "$run_dir/k8s-serve.toml" --print-config > /dev/null

echo "==> /dev/null is still a device"
devnull_ok
