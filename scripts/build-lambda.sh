#!/usr/bin/env bash
# Builds the inventory-forwarding Lambda as a `provided.al2023` zip with cargo-lambda (PyPI,
# pinned, in a venv under .cache/venvs; it brings Zig, which links against the older glibc
# that Amazon Linux 2023 has instead of the build machine's).
#
#   scripts/build-lambda.sh [arm64|x86_64]      default arm64 (Graviton)
#
# Output: ${CARGO_TARGET_DIR:-target}/lambda/bootstrap/bootstrap.zip (a single `bootstrap`).
# Not part of scripts/test.sh: a cold release build of the AWS SDK takes about 10 minutes on
# 2 cores (see lambda/README.md); the suite builds and tests the same crate in debug.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

arch="${1:-arm64}"
case "$arch" in
    arm64) triple=aarch64-unknown-linux-gnu ;;
    x86_64) triple=x86_64-unknown-linux-gnu ;;
    *) echo "usage: $0 [arm64|x86_64]" >&2; exit 2 ;;
esac

cargo_lambda_version=1.9.2
venv="$repo/.cache/venvs/cargo-lambda"
stamp="$venv.stamp"
if [[ ! -x "$venv/bin/cargo-lambda" || "$(cat "$stamp" 2>/dev/null)" != "$cargo_lambda_version" ]]; then
    echo "==> installing cargo-lambda $cargo_lambda_version into $venv"
    rm -rf "$venv" "$stamp"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "cargo-lambda==$cargo_lambda_version"
    echo "$cargo_lambda_version" >"$stamp"
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple"
fi

out="${CARGO_TARGET_DIR:-$repo/target}/lambda"
echo "==> cargo lambda build --release ($triple)"
PATH="$venv/bin:$PATH" cargo lambda build --release --locked \
    --package s3-connector-lambda --bin bootstrap \
    --target "$triple" --output-format zip --lambda-dir "$out"
zip="$out/bootstrap/bootstrap.zip"
# The workspace's release profile keeps line tables (useful for the CLI's backtraces); the
# function does not need them: strip symbols and debug info (~62 MB -> ~13 MB unzipped) with
# LLVM's objcopy, which handles either architecture.
objcopy=""
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed | grep -q '^llvm-tools' || rustup component add llvm-tools
    objcopy="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
fi
if [[ -x "$objcopy" ]]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && unzip -q "$zip" && "$objcopy" --strip-all bootstrap)
    rm -f "$zip"
    # Python's zipfile keeps the executable bit Lambda needs.
    python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[2], "bootstrap")' "$zip" "$work/bootstrap"
else
    echo "==> llvm-objcopy not found (rustup component llvm-tools): zip left unstripped"
fi
unzip -l "$zip"
ls -l "$zip"
echo "==> upload $zip and point the CloudFormation/Terraform LambdaCode parameters at it (architecture $arch)"
