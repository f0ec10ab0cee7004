"""Sampling benchmark: generates a Parquet file and a CSV.gz file of a target size
(deterministic, seeded), uploads them to an S3 endpoint, runs `s3-connector sample --stats`
on each and reports the bytes fetched and requests made. Run by bench/sample_bench.sh."""

import argparse
import datetime as dt
import gzip
import json
import os
import random
import subprocess
import sys
import time

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from boto3.s3.transfer import TransferConfig

MB = 1024 * 1024
NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hiro", "Ines", "Jon", "Kai", "Lena"]
SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("customer", pa.string()),
    ("amount", pa.float64()),
    ("sold_at", pa.timestamp("ms")),
    ("note", pa.string()),
])
EPOCH = dt.datetime(2024, 1, 1)


def rows(rng: random.Random, start: int, n: int):
    ids = list(range(start, start + n))
    return {
        "id": ids,
        "customer": [rng.choice(NAMES) for _ in ids],
        "amount": [rng.randrange(0, 1_000_000) / 100 for _ in ids],
        "sold_at": [EPOCH + dt.timedelta(seconds=rng.randrange(0, 31_536_000)) for _ in ids],
        # 40 hex characters: close to incompressible, like ids and hashes in real tables.
        "note": [rng.getrandbits(160).to_bytes(20, "big").hex() for _ in ids],
    }


def make_parquet(path: str, size: int, row_group_rows: int, seed: int) -> dict:
    rng = random.Random(seed)
    written = 0
    groups = 0
    with pq.ParquetWriter(path, SCHEMA, compression="snappy") as writer:
        while os.path.exists(path) and os.path.getsize(path) < size or groups == 0:
            writer.write_table(pa.table(rows(rng, written, row_group_rows), schema=SCHEMA),
                               row_group_size=row_group_rows)
            written += row_group_rows
            groups += 1
    return {"rows": written, "row_groups": groups}


def make_csv_gz(path: str, size: int, seed: int) -> dict:
    rng = random.Random(seed)
    written = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) as gz:
        gz.write(b"id,customer,amount,sold_at,note\n")
        while raw.tell() < size:
            batch = rows(rng, written, 20_000)
            lines = "".join(
                f"{i},{c},{a:.2f},{t:%Y-%m-%d %H:%M:%S},{n}\n"
                for i, c, a, t, n in zip(batch["id"], batch["customer"], batch["amount"],
                                         batch["sold_at"], batch["note"]))
            gz.write(lines.encode())
            written += 20_000
    return {"rows": written}


def sample(connector: str, endpoint: str, uri: str, extra: list) -> dict:
    cmd = [connector, "sample", uri, "--rows", "100", "--as-service", "--stats",
           "--endpoint-url", endpoint, "--region", "us-east-1", *extra]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"sample failed ({out.returncode}): {out.stderr}")
    stats = next(json.loads(line)["sampleStats"] for line in out.stderr.splitlines()
                 if line.startswith('{"sampleStats"'))
    rows = len(json.loads(out.stdout)["rows"])
    return {"rows": rows, "requests": stats["requests"], "bytes": stats["bytesFetched"], "wall_s": round(wall, 2)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--connector", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size-mb", type=int, default=200)
    p.add_argument("--row-group-rows", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    size = a.size_mb * MB
    files = {}
    pq_path = os.path.join(a.out, f"sample-{a.size_mb}mb-rg{a.row_group_rows}.parquet")
    gz_path = os.path.join(a.out, f"sample-{a.size_mb}mb.csv.gz")
    if not os.path.exists(pq_path):
        print(f"==> generating {pq_path}", flush=True)
        make_parquet(pq_path + ".tmp", size, a.row_group_rows, a.seed)
        os.rename(pq_path + ".tmp", pq_path)
    if not os.path.exists(gz_path):
        print(f"==> generating {gz_path}", flush=True)
        make_csv_gz(gz_path + ".tmp", size, a.seed)
        os.rename(gz_path + ".tmp", gz_path)
    meta = pq.ParquetFile(pq_path).metadata
    files["parquet"] = {"path": pq_path, "size": os.path.getsize(pq_path),
                        "rows": meta.num_rows, "row_groups": meta.num_row_groups}
    files["csv.gz"] = {"path": gz_path, "size": os.path.getsize(gz_path)}

    s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name="us-east-1")
    bucket = "sample-bench"
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    transfer = TransferConfig(multipart_chunksize=64 * MB, max_concurrency=4)
    for kind, f in files.items():
        key = os.path.basename(f["path"])
        print(f"==> uploading {key} ({f['size'] / MB:.1f} MiB)", flush=True)
        s3.upload_file(f["path"], bucket, key, Config=transfer)
        f["uri"] = f"s3://{bucket}/{key}"

    runs = [
        ("parquet, all columns, head", files["parquet"], []),
        ("parquet, 2 columns, head", files["parquet"], ["--columns", "id,amount"]),
        ("parquet, all columns, random", files["parquet"], ["--mode", "random", "--seed", "1"]),
        ("csv.gz, head", files["csv.gz"], []),
        ("csv.gz, random", files["csv.gz"], ["--mode", "random", "--seed", "1"]),
    ]
    results = []
    print()
    print(f"{'run':<32} {'rows':>5} {'requests':>24} {'bytes fetched':>14} {'% of file':>9} {'wall s':>7}")
    for name, f, extra in runs:
        r = sample(a.connector, a.endpoint, f["uri"], extra)
        pct = 100.0 * r["bytes"] / f["size"]
        reqs = ",".join(f"{k}={v}" for k, v in r["requests"].items())
        print(f"{name:<32} {r['rows']:>5} {reqs:>24} {r['bytes']:>14,} {pct:>8.2f}% {r['wall_s']:>7}")
        results.append({"run": name, "file_size": f["size"], **r, "percent_of_file": round(pct, 3)})
    print()
    for kind, f in files.items():
        print(f"{kind}: {f['size']:,} bytes" + (f", {f['rows']:,} rows in {f['row_groups']} row groups"
                                                 if kind == "parquet" else ""))
    with open(os.path.join(a.out, "sample-bench.json"), "w") as fh:
        json.dump({"files": files, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
