#!/usr/bin/env bash
# Generates, once, the seeded day-1/day-2 inventory report pair the inventory benchmarks share
# (bench/out/inventory/FORMAT-OBJECTS/: dest/ in AWS's layout, expected.json with the day-2
# changes), with the release inventory-gen, which the caller builds.
# Usage: inventory_reports.sh FORMAT OBJECTS FILES [THREADS]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
format="$1" objects="$2" files="$3" threads="${4:-2}"
out="$repo/bench/out/inventory/$format-$objects"
target="${CARGO_TARGET_DIR:-$repo/target}"
if [[ ! -f "$out/dest/.complete" ]]; then
    echo "==> generating $objects objects x 2 days, $files $format files each"
    rm -rf "$out/dest"
    "$target/release/inventory-gen" --out "$out/dest" --objects "$objects" --files "$files" --format "$format" \
        --threads "$threads" --expected "$out/expected.json"
    touch "$out/dest/.complete"
fi
echo "==> expected changes: $(tr -d ' \n' < "$out/expected.json")"
