#!/usr/bin/env bash
# Local AWS emulators (moto, LocalStack) for the s3-connector tests, demo and benchmark.
#
#   emulators.sh setup  [moto|localstack|all]   create/refresh the pinned venvs (idempotent)
#   emulators.sh start  moto|localstack          start one emulator on a free loopback port
#   emulators.sh stop   [moto|localstack|moto-iam|all]  stop (tolerant if not running)
#   emulators.sh start  moto-iam                 moto with IAM enforcement (see seed_iam.py)
#   emulators.sh status                          show what is running
#   emulators.sh seed   moto|localstack [seed_estate.py args...]
#                                                seed the sample estate into a running emulator
#
# Everything lives under <repo>/.cache (repo = two levels above this script):
#   .cache/venvs/{moto,localstack}   virtualenvs (Python 3.11)
#   .cache/run/<name>.log|.env       emulator log and endpoint/pid file
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_DIR="$REPO_ROOT/.cache"
VENV_DIR="$CACHE_DIR/venvs"
RUN_DIR="$CACHE_DIR/run"
READY_TIMEOUT="${EMULATOR_READY_TIMEOUT:-90}"

log() { printf '[emulators] %s\n' "$*" >&2; }
die() { printf '[emulators] ERROR: %s\n' "$*" >&2; exit 1; }

# Python 3.11 interpreter used to build the venvs. Override with PYTHON=/path/to/python3.11.
pick_python() {
    local cand
    for cand in "${PYTHON:-}" python3 python3.11; do
        [[ -n "$cand" ]] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            echo "$cand"
            return 0
        fi
    done
    die "no Python 3.11 found (tried \$PYTHON, python3, python3.11); set PYTHON=/path/to/python3.11"
}

req_files() {
    case "$1" in
        moto) echo "$SCRIPT_DIR/requirements-moto.txt" ;;
        localstack) echo "$SCRIPT_DIR/requirements-localstack.txt $SCRIPT_DIR/constraints-localstack-4.7.0.txt" ;;
        *) die "unknown emulator '$1' (expected moto or localstack)" ;;
    esac
}

setup_one() {
    local kind="$1" venv="$VENV_DIR/$1" stamp="$VENV_DIR/$1.stamp" py hash files
    files="$(req_files "$kind")"
    py="$(pick_python)"
    # shellcheck disable=SC2086
    hash="$( { "$py" -c 'import sys; print(sys.version)'; cat $files; } | sha256sum | cut -d' ' -f1)"
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
        log "$kind venv up to date ($venv)"
        return 0
    fi
    log "creating $kind venv in $venv (this takes ~30-60 s)"
    rm -rf "$venv" "$stamp"
    mkdir -p "$VENV_DIR"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    if [[ "$kind" == moto ]]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            -r "$SCRIPT_DIR/requirements-moto.txt"
    else
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            -r "$SCRIPT_DIR/requirements-localstack.txt" \
            -c "$SCRIPT_DIR/constraints-localstack-4.7.0.txt"
    fi
    echo "$hash" >"$stamp"
    log "$kind venv ready"
}

kinds_of() {
    case "${1:-all}" in
        all) echo "moto localstack" ;;
        moto | localstack | moto-iam) echo "$1" ;;
        *) die "unknown emulator '$1' (expected moto, moto-iam, localstack or all)" ;;
    esac
}

upper() { echo "$1" | tr '[:lower:]-' '[:upper:]_'; }

# moto-iam is moto with IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT): same venv as moto.
venv_of() { case "$1" in moto-iam) echo moto ;; *) echo "$1" ;; esac; }

env_file() { echo "$RUN_DIR/$1.env"; }

# Prints the pid recorded for a kind, or nothing.
recorded_pid() {
    local f var
    f="$(env_file "$1")"
    var="$(upper "$1")_PID"
    [[ -f "$f" ]] || return 0
    sed -n "s/^export ${var}=\([0-9][0-9]*\)\$/\1/p" "$f" | head -n1
}

recorded_endpoint() {
    local f var
    f="$(env_file "$1")"
    var="$(upper "$1")_ENDPOINT"
    [[ -f "$f" ]] || return 0
    sed -n "s/^export ${var}=\(.*\)\$/\1/p" "$f" | head -n1
}

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# True when PID is alive *and* still runs from this kind's venv (guards against pid reuse).
ours() {
    alive "$2" && ps -o args= -p "$2" 2>/dev/null | grep -qF "$VENV_DIR/$(venv_of "$1")/"
}

stop_one() {
    local kind="$1" pid i
    pid="$(recorded_pid "$kind")"
    if ours "$kind" "$pid"; then
        log "stopping $kind (pid/pgid $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            alive "$pid" || break
            sleep 0.2
        done
        if alive "$pid"; then
            log "$kind did not exit on TERM; sending KILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        # Give stragglers in the group a moment, then make sure none remain.
        sleep 0.2
        kill -KILL -- "-$pid" 2>/dev/null || true
    else
        log "$kind not running"
    fi
    rm -f "$(env_file "$kind")"
}

free_port() {
    "$(pick_python)" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# probe KIND URL -> exit 0 when ready
probe() {
    "$(pick_python)" - "$1" "$2" <<'PY'
import json, sys, urllib.request, urllib.error
kind, url = sys.argv[1], sys.argv[2]
try:
    if kind in ("moto", "moto-iam"):
        try:
            urllib.request.urlopen(url + "/", timeout=2).read()
        except urllib.error.HTTPError:
            pass  # any HTTP answer means the server is up
        sys.exit(0)
    with urllib.request.urlopen(url + "/_localstack/health", timeout=2) as r:
        services = json.load(r).get("services", {})
    ok = all(services.get(s) in ("available", "running") for s in ("s3", "kms"))
    sys.exit(0 if ok else 1)
except Exception:
    sys.exit(1)
PY
}

start_one() {
    local kind="$1" port endpoint pid name logf deadline venv
    setup_one "$(venv_of "$kind")"
    stop_one "$kind" 2>/dev/null || true
    mkdir -p "$RUN_DIR"
    venv="$VENV_DIR/$(venv_of "$kind")"
    port="$(free_port)"
    endpoint="http://127.0.0.1:$port"
    name="$(upper "$kind")"
    logf="$RUN_DIR/$kind.log"
    : >"$logf"
    # Job control on: the background job gets its own process group (pgid == pid),
    # so `stop` can kill the emulator together with any children it spawns, and
    # whatever started this script can end its own group without taking the emulator along.
    set -m
    if [[ "$kind" == moto ]]; then
        nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >>"$logf" 2>&1 </dev/null &
        pid=$!
    elif [[ "$kind" == moto-iam ]]; then
        # The first requests are free for set-up (seed_iam.py uses them, then burns the rest).
        INITIAL_NO_AUTH_ACTION_COUNT="${MOTO_IAM_FREE_ACTIONS:-200}" \
            nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >>"$logf" 2>&1 </dev/null &
        pid=$!
    else
        local lsdir="$RUN_DIR/localstack"
        # Host-mode state goes under FILESYSTEM_ROOT; volume, temp and S3 spill dirs are ours too.
        rm -rf "$lsdir/s3-storage"
        mkdir -p "$lsdir/fs" "$lsdir/volume" "$lsdir/tmp" "$lsdir/s3-storage"
        (
            cd "$lsdir"
            export GATEWAY_LISTEN="127.0.0.1:$port" SERVICES="s3,kms,sts,iam,secretsmanager" \
                S3_SKIP_KMS_KEY_VALIDATION=0 DNS_ADDRESS=0 DISABLE_EVENTS=1 \
                LOCALSTACK_TELEMETRY_DISABLED=1 SKIP_SSL_CERT_DOWNLOAD=1 PERSISTENCE=0 \
                FILESYSTEM_ROOT="$lsdir/fs" LOCALSTACK_VOLUME_DIR="$lsdir/volume" TMPDIR="$lsdir/tmp"
            # Same as `python -m localstack.runtime.main`, except that S3 bodies > 512 KiB spill to
            # this instance's own directory instead of the fixed, machine-wide
            # /tmp/localstack-s3-storage (which parallel instances would share).
            export LOCALSTACK_S3_SPILL_DIR="$lsdir/s3-storage"
            # The default gateway binds 0.0.0.0 whatever GATEWAY_LISTEN says; hypercorn honours
            # 127.0.0.1 but is 20-30 % slower. Opt in with LOCALSTACK_LOOPBACK_ONLY=1.
            if [[ "${LOCALSTACK_LOOPBACK_ONLY:-0}" == 1 ]]; then export GATEWAY_SERVER=hypercorn; fi
            exec nohup "$venv/bin/python" -c '
import os, runpy
import localstack.services.s3.provider as s3_provider
s3_provider.DEFAULT_S3_TMP_DIR = os.environ["LOCALSTACK_S3_SPILL_DIR"]
runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
' >>"$logf" 2>&1 </dev/null
        ) &
        pid=$!
    fi
    set +m
    {
        echo "export ${name}_ENDPOINT=$endpoint"
        echo "export ${name}_PID=$pid"
        echo "export ${name}_PORT=$port"
        echo "export ${name}_LOG=$logf"
    } >"$(env_file "$kind")"
    deadline=$((SECONDS + READY_TIMEOUT))
    until probe "$kind" "$endpoint"; do
        if ! alive "$pid"; then
            log "$kind exited during start-up; last log lines ($logf):"
            tail -n 40 "$logf" >&2 || true
            rm -f "$(env_file "$kind")"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "$kind not ready after ${READY_TIMEOUT}s at $endpoint; last log lines ($logf):"
            tail -n 40 "$logf" >&2 || true
            stop_one "$kind" || true
            exit 1
        fi
        sleep 0.3
    done
    log "$kind ready at $endpoint (pid $pid, env $(env_file "$kind"))"
    echo "$endpoint"
}

status_all() {
    local kind pid ep
    for kind in moto localstack moto-iam; do
        pid="$(recorded_pid "$kind")"
        ep="$(recorded_endpoint "$kind")"
        if ours "$kind" "$pid"; then
            if probe "$kind" "$ep"; then
                echo "$kind: running  endpoint=$ep pid=$pid"
            else
                echo "$kind: starting/unhealthy  endpoint=$ep pid=$pid"
            fi
        else
            echo "$kind: stopped"
        fi
        if [[ -f "$VENV_DIR/$kind.stamp" ]]; then
            echo "  venv: $VENV_DIR/$kind (installed)"
        else
            echo "  venv: $VENV_DIR/$kind (not installed)"
        fi
    done
}

seed_one() {
    local kind="$1" ep
    shift
    ep="$(recorded_endpoint "$kind")"
    [[ -n "$ep" ]] || die "$kind is not running (run: $0 start $kind)"
    setup_one moto
    exec "$VENV_DIR/moto/bin/python" "$SCRIPT_DIR/seed_estate.py" --endpoint "$ep" --flavor "$kind" \
        --expected "$RUN_DIR/expected-$kind.json" "$@"
}

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    setup) for k in $(kinds_of "${1:-all}"); do setup_one "$(venv_of "$k")"; done ;;
    start)
        [[ $# -ge 1 && ("$1" == moto || "$1" == localstack || "$1" == moto-iam) ]] || die "usage: $0 start moto|moto-iam|localstack"
        start_one "$1"
        ;;
    stop)
        if [[ "${1:-all}" == all ]]; then kinds="moto localstack moto-iam"; else kinds="$(kinds_of "$1")"; fi
        for k in $kinds; do stop_one "$k"; done
        ;;
    status) status_all ;;
    seed)
        [[ $# -ge 1 && ("$1" == moto || "$1" == localstack) ]] || die "usage: $0 seed moto|localstack [args]"
        seed_one "$@"
        ;;
    *) usage ;;
esac
