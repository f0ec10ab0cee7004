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
# Extra `extract` options, e.g. EXTRACT_OPTS="--encryption-probes 2".
read -r -a EXTRACT_ARGS <<< "${EXTRACT_OPTS:-}"
emulators="$repo/deploy/local/emulators.sh"
out="$repo/bench/out"
mkdir -p "$out"
# KEEP_EMULATOR=1 leaves LocalStack running and seeded, and a later run with it reuses it.
cleanup() { [[ "${KEEP_EMULATOR:-0}" == 1 ]] || "$emulators" stop localstack >/dev/null 2>&1 || true; }
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
py="$repo/.cache/venvs/moto/bin/python"

"$emulators" setup all
if [[ "${KEEP_EMULATOR:-0}" == 1 && -f "$out/bench-expected.json" && -f "$repo/.cache/run/localstack.env" ]]; then
  # shellcheck disable=SC1091
  source "$repo/.cache/run/localstack.env"
  echo "==> reusing LocalStack at $LOCALSTACK_ENDPOINT"
else
  "$emulators" start localstack
  # shellcheck disable=SC1091
  source "$repo/.cache/run/localstack.env"
  echo "==> seeding $objects objects in $datasets datasets"
  "$py" "$repo/deploy/local/seed_estate.py" --endpoint "$LOCALSTACK_ENDPOINT" --flavor localstack \
    --bench-objects "$objects" --bench-datasets "$datasets" --bench-bucket bench-estate --expected "$out/bench-expected.json"
fi

echo "==> building (release)"
cargo build --release --locked --bin s3-connector --example bare_list

"$py" "$repo/bench/extract_bench.py" --endpoint "$LOCALSTACK_ENDPOINT" --bucket bench-estate --server-pid "${LOCALSTACK_PID:-0}" \
  --connector "$repo/target/release/s3-connector" --bare-list "$repo/target/release/examples/bare_list" \
  --expected "$out/bench-expected.json" --out "$out" -- "${EXTRACT_ARGS[@]}"
