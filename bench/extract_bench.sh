#!/usr/bin/env bash
# Extraction benchmark (not a test): seeds ~20,000 objects in ~40 datasets on LocalStack, runs
# `s3-connector extract` and, on the same endpoint in the same run, a bare paginated
# ListObjectsV2 of the same bucket. Reports wall times, peak RSS and S3 requests by kind.
# Usage: bench/extract_bench.sh [OBJECTS] [DATASETS]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
objects="${1:-20000}"
datasets="${2:-40}"
emulators="$repo/deploy/local/emulators.sh"
out="$repo/bench/out"
mkdir -p "$out"
cleanup() { "$emulators" stop localstack >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$emulators" setup all
"$emulators" start localstack
# shellcheck disable=SC1091
source "$repo/.cache/run/localstack.env"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
py="$repo/.cache/venvs/moto/bin/python"

echo "==> seeding $objects objects in $datasets datasets"
"$py" "$repo/deploy/local/seed_estate.py" --endpoint "$LOCALSTACK_ENDPOINT" --flavor localstack \
  --bench-objects "$objects" --bench-datasets "$datasets" --bench-bucket bench-estate --expected "$out/bench-expected.json"

echo "==> building (release)"
cargo build --release --locked --bin s3-connector --example bare_list

"$py" "$repo/bench/extract_bench.py" --endpoint "$LOCALSTACK_ENDPOINT" --bucket bench-estate \
  --connector "$repo/target/release/s3-connector" --bare-list "$repo/target/release/examples/bare_list" \
  --expected "$out/bench-expected.json" --out "$out"
