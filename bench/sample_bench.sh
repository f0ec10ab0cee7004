#!/usr/bin/env bash
# Sampling benchmark (not a test): generates a ~200 MB Parquet file and a ~200 MB CSV.gz
# (deterministic, cached in bench/out/), uploads them to a moto started here, runs
# `s3-connector sample --rows 100 --stats` on each and reports requests and bytes fetched.
# Usage: bench/sample_bench.sh [SIZE_MB] [ROW_GROUP_ROWS]
# PROFILE=debug uses target/debug (no release build); S3C_BIN=path uses that binary (no build);
# KEEP_EMULATOR=1 leaves moto running. The figures (bytes, requests) do not depend on the profile.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
size_mb="${1:-200}"
row_group_rows="${2:-50000}"
profile="${PROFILE:-release}"
emulators="$repo/deploy/local/emulators.sh"
out="$repo/bench/out"
mkdir -p "$out"
cleanup() { [[ "${KEEP_EMULATOR:-0}" == 1 ]] || "$emulators" stop moto >/dev/null 2>&1 || true; }
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 || true
py="$repo/.cache/venvs/moto/bin/python"

"$emulators" setup moto
"$emulators" start moto
# shellcheck disable=SC1091
source "$repo/.cache/run/moto.env"

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
connector="${S3C_BIN:-$target_dir/$profile/s3-connector}"
if [[ -z "${S3C_BIN:-}" ]]; then
  if [[ "$profile" == release ]]; then
    echo "==> building (release)"
    cargo build --release --locked --bin s3-connector
  else
    cargo build --locked --bin s3-connector
  fi
fi

"$py" "$repo/bench/sample_bench.py" --endpoint "$MOTO_ENDPOINT" --connector "$connector" \
  --out "$out" --size-mb "$size_mb" --row-group-rows "$row_group_rows"
