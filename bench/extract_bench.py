"""Runs the extraction and the bare listing alternately and reports the figures.

Peak RSS comes from getrusage(RUSAGE_CHILDREN) of each child process alone (one child per
measurement process), request counts from the run's own summary record.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def measured(cmd):
    """Runs cmd in a fresh child of a fresh process, returning (seconds, peak_rss_kib, stdout)."""
    probe = (
        "import resource,subprocess,sys,time,json;"
        "t=time.monotonic();p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
        "d=time.monotonic()-t;"
        "print(json.dumps({'rc':p.returncode,'seconds':d,"
        "'rss_kib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        "'stdout':p.stdout,'stderr':p.stderr[-2000:]}))"
    )
    p = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def server_cpu_seconds(pid):
    """User + system CPU time of the emulator process (all its threads) so far, or None."""
    if not pid:
        return None
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_with_server(cmd, pid):
    """measured(cmd), plus the emulator's CPU seconds spent meanwhile."""
    before = server_cpu_seconds(pid)
    r = measured(cmd)
    after = server_cpu_seconds(pid)
    r["server_cpu"] = None if before is None or after is None else after - before
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--connector", required=True)
    ap.add_argument("--bare-list", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server-pid", type=int, default=0, help="emulator pid, to report its CPU time per run")
    ap.add_argument("extra", nargs="*", help="extra extract options (after --)")
    a = ap.parse_args()
    expected = json.load(open(a.expected))
    records_path = os.path.join(a.out, "bench-records.jsonl")
    extract_cmd = [a.connector, "extract", a.bucket, "--endpoint-url", a.endpoint, "--no-progress", "-q", "-o", records_path, *a.extra]
    bare_cmd = [a.bare_list, "--endpoint-url", a.endpoint, a.bucket]

    extract_runs, bare_runs = [], []
    for _ in range(a.rounds):
        r = measured_with_server(bare_cmd, a.server_pid)
        if r["rc"] != 0:
            sys.exit(f"bare listing failed: {r['stderr']}")
        bare_runs.append(r)
        r = measured_with_server(extract_cmd, a.server_pid)
        if r["rc"] != 0:
            sys.exit(f"extract failed ({r['rc']}): {r['stderr']}")
        extract_runs.append(r)

    summary = None
    datasets = 0
    for line in open(records_path):
        rec = json.loads(line)
        if "summary" in rec:
            summary = rec["summary"]
        if "dataset" in rec:
            datasets += 1
    requests = {r["operation"]: int(r["count"]) for r in summary.get("requests", [])}
    bare_objects = json.loads(bare_runs[-1]["stdout"])["objects"]
    extract_s = statistics.median(r["seconds"] for r in extract_runs)
    bare_s = statistics.median(r["seconds"] for r in bare_runs)
    result = {
        "extract_options": a.extra,
        "objects_listed": int(summary.get("objectCount", 0)),
        "objects_bare_list": bare_objects,
        "datasets": datasets,
        "expected_datasets": expected.get("dataset_count") or len(expected.get("datasets", [])),
        "extract_seconds_median": round(extract_s, 3),
        "extract_seconds_all": [round(r["seconds"], 3) for r in extract_runs],
        "bare_list_seconds_median": round(bare_s, 3),
        "bare_list_seconds_all": [round(r["seconds"], 3) for r in bare_runs],
        "ratio_extract_to_bare": round(extract_s / bare_s, 2) if bare_s else None,
        # The emulator's CPU time per run: LocalStack handles requests one at a time, so when
        # this is close to the wall time, the run waits on the server, not on the client.
        "server_cpu_seconds_extract": [round(r["server_cpu"], 2) for r in extract_runs if r["server_cpu"] is not None],
        "server_cpu_seconds_bare_list": [round(r["server_cpu"], 2) for r in bare_runs if r["server_cpu"] is not None],
        "extract_peak_rss_mib": round(max(r["rss_kib"] for r in extract_runs) / 1024, 1),
        "requests": requests,
        "gets_per_dataset": round(requests.get("GetObject", 0) / datasets, 2) if datasets else None,
        "heads_per_dataset": round(requests.get("HeadObject", 0) / datasets, 2) if datasets else None,
        "bytes_fetched": int(summary.get("bytesFetched", 0)),
        "problems": {p["code"]: int(p["count"]) for p in summary.get("problems", [])},
    }
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    ok = (
        result["ratio_extract_to_bare"] is not None and result["ratio_extract_to_bare"] <= 1.5
        and (result["gets_per_dataset"] or 0) <= 2 and result["extract_peak_rss_mib"] < 150
    )
    print("targets (<=1.5x bare listing, <=2 GETs/dataset, <150 MiB RSS):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
