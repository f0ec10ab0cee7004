#!/usr/bin/env bash
# Day-over-day S3 Inventory diff: this project's pipeline vs DuckDB on the same report files.
# See bench/README.md. Environment: OBJECTS (default 5000000), FILES (10), FORMATS ("csv parquet"),
# THREADS (2), SKIP_DUCKDB=1 to run ours only.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
objects="${OBJECTS:-5000000}"
files="${FILES:-10}"
formats="${FORMATS:-csv parquet}"
threads="${THREADS:-2}"
out="$repo/bench/out/inventory"
target="${CARGO_TARGET_DIR:-$repo/target}"

echo "==> building (release)"
cargo build --release --locked -p inventory-gen --bin inventory-gen
cargo build --release --locked -p s3-connector-domain --example inventory_bench

if [[ -z "${SKIP_DUCKDB:-}" ]]; then
    venv="$repo/.cache/venvs/bench"
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
        echo "==> DuckDB venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "duckdb==1.5.6"
    fi
fi

for format in $formats; do
    dest="$out/$format-$objects/dest"
    state="$out/$format-$objects/state"
    "$repo/bench/inventory_reports.sh" "$format" "$objects" "$files" "$threads"
    rm -rf "$state"
    echo "==> ours: day 1 (first run: builds the snapshot), then day 2 (the day-over-day diff)"
    "$target/release/examples/inventory_bench" --dest "$dest" --state "$state" --threads "$threads" --report 2024-01-02T00-00Z
    "$target/release/examples/inventory_bench" --dest "$dest" --state "$state" --threads "$threads" --report 2024-01-03T00-00Z
    if [[ -z "${SKIP_DUCKDB:-}" ]]; then
        day1=inventory/src-bucket/daily/2024-01-02T00-00Z/manifest.json
        day2=inventory/src-bucket/daily/2024-01-03T00-00Z/manifest.json
        echo "==> DuckDB: both reports, full outer join, counts only"
        "$venv/bin/python" "$repo/bench/inventory_duckdb.py" "$dest" "$day1" "$day2"
        echo "==> DuckDB: both reports, full outer join, change rows written to Parquet and fsynced (no MD5s, no state)"
        rm -rf "$out/$format-$objects/duckdb-changes"
        "$venv/bin/python" "$repo/bench/inventory_duckdb.py" "$dest" "$day1" "$day2" --changes "$out/$format-$objects/duckdb-changes"
        echo "==> DuckDB: the same job as ours (MD5s checked, new state and change rows written, fsynced; states in lz4)"
        rm -rf "$out/$format-$objects/duckdb-state"
        "$venv/bin/python" "$repo/bench/inventory_duckdb.py" "$dest" "$day1" "$day2" --stateful "$out/$format-$objects/duckdb-state"
    fi
done
