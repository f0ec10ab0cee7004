#!/usr/bin/env bash
# The demo, from a fresh clone: installs and starts LocalStack, seeds the encrypted sample
# estate, builds the connector and runs a real extraction of every estate bucket. Records go
# to .cache/demo/estate.jsonl; the summary is printed at the end.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

emulators="$repo/deploy/local/emulators.sh"
run_dir="$repo/.cache/run"
out_dir="$repo/.cache/demo"
mkdir -p "$run_dir" "$out_dir"

cleanup() { "$emulators" stop localstack >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "==> LocalStack: install (first run only) and start"
"$emulators" setup all
"$emulators" start localstack
# shellcheck disable=SC1091
source "$run_dir/localstack.env"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN || true

echo "==> seeding the encrypted sample estate"
"$repo/.cache/venvs/moto/bin/python" "$repo/deploy/local/seed_estate.py" \
  --endpoint "$LOCALSTACK_ENDPOINT" --flavor localstack --expected "$run_dir/demo-expected.json"

echo "==> building s3-connector"
cargo build --release --locked --bin s3-connector

buckets=$("$repo/.cache/venvs/moto/bin/python" -c 'import json,sys; print(" ".join(b["name"] for b in json.load(open(sys.argv[1]))["buckets"]))' "$run_dir/demo-expected.json")
echo "==> s3-connector extract $buckets"
status=0
# shellcheck disable=SC2086
"$repo/target/release/s3-connector" extract $buckets --endpoint-url "$LOCALSTACK_ENDPOINT" \
  --output "$out_dir/estate.jsonl" || status=$?

echo
echo "records: $out_dir/estate.jsonl ($(wc -l < "$out_dir/estate.jsonl") lines); datasets:"
"$repo/.cache/venvs/moto/bin/python" - "$out_dir/estate.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "dataset" in r:
        d = r["dataset"]; e = d.get("encryption", {})
        types = ",".join(c["type"] for c in e.get("counts", [])) or "-"
        keys = ",".join(k.rsplit("/", 1)[-1][:8] for k in e.get("kmsKeyArns", [])) or "-"
        cols = len(d.get("schema", {}).get("fields", []))
        flag = " MIXED" if e.get("mixedKeys") or e.get("mixedTypes") else ""
        print(f"  s3://{d['bucket']}/{d.get('prefix','')}  {d['format']:8} files={d.get('fileCount','0'):>3} cols={cols:>2} enc={types} keys={keys}{flag}")
    elif "problem" in r:
        p = r["problem"]
        print(f"  ! {p['code']}: {p['message']}")
PY
exit "$status"
