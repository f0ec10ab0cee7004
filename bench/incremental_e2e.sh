#!/usr/bin/env bash
# The day-over-day inventory diff through the product itself: the release `s3-connector
# incremental` binary reading a generated report pair from moto over HTTP (manifest, checksum,
# data files, its own S3 client), writing change records as JSON Lines. See bench/README.md.
# Environment: OBJECTS (default 1000000), FILES (10), FORMATS ("csv parquet"), EXTRA_ARGS (more
# `incremental` options, e.g. "--columnar-memory-bytes 30000000"), DAY1_TO_NULL=1 (day 1's
# records, every object ADDED, go to /dev/null uncounted: for 50M objects they are ~12 GB),
# INFERENCE=1 (schemas of the changed datasets inferred again, as by default: the source
# bucket holds no objects here, so each dataset's sample reads end in problem records; what is
# measured is the second pass over the snapshot), S3C_BIN (another build to run).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
objects="${OBJECTS:-1000000}"
files="${FILES:-10}"
formats="${FORMATS:-csv parquet}"
out="$repo/bench/out/inventory"
target="${CARGO_TARGET_DIR:-$repo/target}"
emulators="$repo/deploy/local/emulators.sh"
python="$repo/.cache/venvs/moto/bin/python"

echo "==> building (release)"
cargo build --release --locked -p inventory-gen --bin inventory-gen
cargo build --release --locked -p s3-connector

"$emulators" setup moto
"$emulators" start moto
trap '"$emulators" stop moto >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
source "$repo/.cache/run/moto.env"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

for format in $formats; do
    dest="$out/$format-$objects/dest"
    # The same cache as inventory_bench.sh: a report pair generated once.
    "$repo/bench/inventory_reports.sh" "$format" "$objects" "$files"
    expected="$out/$format-$objects/expected.json"

    # One bucket pair per format: moto keeps objects in memory, so the other format's reports
    # are deleted first.
    echo "==> uploading the reports to moto"
    "$python" - "$MOTO_ENDPOINT" "$dest" <<'PY'
import os, sys, boto3
endpoint, root = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
for bucket in ("inventory-dest", "src-bucket"):
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
for folder, _, names in os.walk(root):
    for name in names:
        path = os.path.join(folder, name)
        key = os.path.relpath(path, root)
        if key != ".complete":
            s3.upload_file(path, "inventory-dest", key)
PY

    inference=(--no-schema-inference)
    [[ -n "${INFERENCE:-}" ]] && inference=()
    state="$(mktemp -d)"
    for report in 2024-01-02T00-00Z 2024-01-03T00-00Z; do
        records="$out/$format-$objects/e2e-changes-$report.jsonl"
        # To stdout, sent to /dev/null (not `-o /dev/null`: -o writes FILE.partial and renames
        # it over FILE).
        output=(-o "$records")
        if [[ -n "${DAY1_TO_NULL:-}" && "$report" == 2024-01-02T00-00Z ]]; then
            output=()
            records=""
        fi
        echo "==> s3-connector incremental, report $report"
        /usr/bin/time -f "wall %e s, user %U s, sys %S s, peak RSS %M KB" -o "$state.time" \
            "${S3C_BIN:-$target/release/s3-connector}" incremental s3://inventory-dest/inventory/ \
            --source-bucket src-bucket --configuration-id daily --report "$report" \
            --state-dir "$state" --endpoint-url "$MOTO_ENDPOINT" "${inference[@]}" \
            "${output[@]}" ${EXTRA_ARGS:-} > /dev/null
        cat "$state.time"
        [[ -z "$records" ]] && continue
        # Object change records by kind, against the generator's own counts (day 2).
        "$python" - "$records" "$expected" "$report" <<'PY'
import collections, json, sys
records, expected, report = sys.argv[1:4]
kinds = collections.Counter()
with open(records) as f:
    for line in f:
        record = json.loads(line)
        if "object" in record:
            kinds[record["object"]["kind"]] += 1
got = {"added": kinds["ADDED"], "removed": kinds["REMOVED"], "changed": kinds["CHANGED"]}
print("    object changes:", json.dumps(got))
if report.endswith("03T00-00Z"):
    want = json.load(open(expected))
    ok = all(got[k] == want[k] for k in got)
    print("    as generated:", "yes" if ok else f"NO (expected {want})")
    sys.exit(0 if ok else 1)
PY
    done
    rm -rf "$state" "$state.time"
done
