#!/usr/bin/env bash
# Static checks of the deployment artefacts (run by scripts/test.sh):
#   - cfn-lint (PyPI, pinned in deploy/cloudformation/requirements-cfn-lint.txt, venv under
#     .cache/venvs/cfn-lint) on the CloudFormation template; warnings fail too;
#   - terraform fmt -check and terraform validate on deploy/terraform, when a terraform binary
#     is installed (providers from $TF_PLUGIN_DIR, default /opt/tf-plugins when present,
#     otherwise from the registry). Without terraform the step says so and is skipped.
# The IAM statements themselves are compared with the policy engine by lambda/tests/deploy.rs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

requirements="$repo/deploy/cloudformation/requirements-cfn-lint.txt"
venv="$repo/.cache/venvs/cfn-lint"
stamp="$venv.stamp"
hash="$( { python3 -c 'import sys; print(sys.version)'; cat "$requirements"; } | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/cfn-lint" || "$(cat "$stamp" 2>/dev/null)" != "$hash" ]]; then
    echo "==> installing cfn-lint into $venv"
    rm -rf "$venv" "$stamp"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    echo "$hash" >"$stamp"
fi
echo "==> cfn-lint $("$venv/bin/cfn-lint" --version | awk '{print $2}') deploy/cloudformation"
"$venv/bin/cfn-lint" -- deploy/cloudformation/*.json

if ! command -v terraform >/dev/null 2>&1; then
    echo "==> terraform not installed: deploy/terraform NOT validated (install terraform >= 1.5 to check it)"
    exit 0
fi
echo "==> terraform fmt -check / validate deploy/terraform"
# Validate a copy so that no .terraform/ or lock file lands in the module directory.
work="$repo/.cache/terraform-validate"
rm -rf "$work"
mkdir -p "$work"
cp deploy/terraform/*.tf "$work/"
# An empty CLI configuration keeps a missing one from warning on every command.
if [[ ! -f "${TF_CLI_CONFIG_FILE:-$HOME/.terraformrc}" ]]; then
    : >"$work/terraformrc"
    export TF_CLI_CONFIG_FILE="$work/terraformrc"
fi
plugin_dir="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
init_args=(-input=false -backend=false -no-color)
[[ -d "$plugin_dir" ]] && init_args+=("-plugin-dir=$plugin_dir")
terraform fmt -check -diff deploy/terraform
(cd "$work" && terraform init "${init_args[@]}" >"$work/init.log" 2>&1) || { cat "$work/init.log"; exit 1; }
(cd "$work" && terraform validate -no-color)
