#!/usr/bin/env bash
# gRPC load check (not a test): 50 concurrent ExtractMetadata streams (back to back) plus 200
# GetCapabilities calls per second for 60 s against `s3-connector serve` in front of the seeded
# sample estate. Reports p50/p99 latency per method, calls by gRPC code (errors other than the
# configured RESOURCE_EXHAUSTED should be 0) and the server's peak RSS.
# Usage: bench/grpc_load.sh [STREAMS] [RPS] [SECONDS]   (EMULATOR=moto|localstack, default moto;
#        MAX_EXTRACTIONS=N sets limits.max_concurrent_extractions, default 16)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
streams="${1:-50}"
rps="${2:-200}"
seconds="${3:-60}"
kind="${EMULATOR:-moto}"
emulators="$repo/deploy/local/emulators.sh"
out="$repo/bench/out"
mkdir -p "$out"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  "$emulators" stop "$kind" >/dev/null 2>&1 || true
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
py="$repo/.cache/venvs/moto/bin/python"

"$emulators" setup all
"$emulators" start "$kind"
# shellcheck disable=SC1091
source "$repo/.cache/run/$kind.env"
endpoint_var="$(echo "$kind" | tr a-z- A-Z_)_ENDPOINT"
endpoint="${!endpoint_var}"
echo "==> seeding the sample estate on $kind ($endpoint)"
"$py" "$repo/deploy/local/seed_estate.py" --endpoint "$endpoint" --flavor "$kind" --expected "$out/grpc-load-expected.json"
mapfile -t buckets < <("$py" -c 'import json,sys; [print(b["name"]) for b in json.load(open(sys.argv[1]))["buckets"]]' "$out/grpc-load-expected.json")

echo "==> building (release)"
cargo build --release --locked --bin s3-connector --example grpc_load

token="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
cat > "$out/grpc-load-serve.toml" <<TOML
[server]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
[connection]
endpoint_url = "$endpoint"
region = "us-east-1"
[limits]
max_concurrent_extractions = ${MAX_EXTRACTIONS:-16}
TOML
S3_CONNECTOR_TOKEN="$token" "$repo/target/release/s3-connector" serve --config "$out/grpc-load-serve.toml" \
  > "$out/grpc-load-serve.out" 2> "$out/grpc-load-serve.log" &
server_pid=$!
for _ in $(seq 1 200); do
  grep -q '^listening ' "$out/grpc-load-serve.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$out/grpc-load-serve.log"; exit 1; }
  sleep 0.05
done
addr="$(sed -n 's/^listening grpc=\([^ ]*\).*/\1/p' "$out/grpc-load-serve.out")"
metrics="$(sed -n 's/.* metrics=\([^ ]*\).*/\1/p' "$out/grpc-load-serve.out")"
echo "==> load: $streams streams + $rps GetCapabilities/s for ${seconds}s against $addr (${#buckets[@]} buckets per extraction)"
S3_CONNECTOR_TOKEN="$token" "$repo/target/release/examples/grpc_load" --addr "$addr" \
  --streams "$streams" --rps "$rps" --seconds "$seconds" "${buckets[@]}" > "$out/grpc-load.json"
peak_kib="$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")"
curl -s "http://$metrics/metrics" > "$out/grpc-load-metrics.txt" 2>/dev/null || true
"$py" - "$out/grpc-load.json" "$peak_kib" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); peak = int(sys.argv[2])
for name, m in r.items():
    print(f"{name:16} calls {m['calls']:6}  p50 {m['p50_ms']:8.1f} ms  p99 {m['p99_ms']:8.1f} ms  "
          f"max {m['max_ms']:8.1f} ms  errors (beyond RESOURCE_EXHAUSTED) {m['errors_beyond_resource_exhausted']}  codes {m['codes']}")
print(f"server peak RSS {peak / 1024:.1f} MiB")
r["server_peak_rss_kib"] = peak
json.dump(r, open(sys.argv[1], "w"), indent=2)
PY
echo "==> figures in $out/grpc-load.json"
