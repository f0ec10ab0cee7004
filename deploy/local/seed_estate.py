#!/usr/bin/env python3
"""Seed the s3-connector sample estate (or a benchmark bucket) into a local S3 emulator.

Runs in the moto venv (.cache/venvs/moto) for both emulators:

    seed_estate.py --endpoint http://127.0.0.1:PORT --flavor moto|localstack \
        [--region us-east-1] [--seed 42] --expected PATH
    seed_estate.py ... --bench-objects 20000 --bench-datasets 40 [--bench-bucket bench-estate]

The estate is described in deploy/local/README.md. After uploading, the script writes the
"expected file" (JSON) that the Rust extraction tests compare against, verifies the object
counts with ListObjectsV2 and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import base64
import bz2
import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import random
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.pop("AWS_PROFILE", None)

import boto3  # noqa: E402
import fastavro  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.orc as pa_orc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import zstandard  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hiro", "Ines", "Jon", "Kai",
         "Lena", "Marta", "Nils", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Vik"]
LAST = ["Adams", "Baker", "Chen", "Diaz", "Eriksen", "Fischer", "García", "Hughes", "Ito",
        "Jones", "Kowalski", "López", "Müller", "Nakamura", "O'Brien", "Patel", "Rossi", "Silva"]
CITIES = [("Lisbon", "1100-148"), ("Berlin", "10115"), ("Austin", "73301"), ("Osaka", "530-0001"),
          ("Toronto", "M5H 2N2"), ("Nairobi", "00100"), ("Lyon", "69001"), ("Denver", "80202")]
PRODUCTS = ["widget", "gadget", "sprocket", "flange", "gizmo", "doohickey", "bracket", "valve"]
NOTES = ["", "", "vip", "called, left voicemail", "prefers email", "", "late payer", 'said "hi"']
LEVELS = ["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]

# Canonical column lists (see README "Expected file").
COL = lambda name, typ: {"name": name, "type": typ}  # noqa: E731

SALES_SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("customer", pa.struct([("name", pa.string()), ("tier", pa.string())])),
    ("items", pa.list_(pa.string())),
    ("amount", pa.decimal128(10, 2)),
    ("sold_at", pa.timestamp("ms")),
    ("is_return", pa.bool_()),
])
SALES_COLS = [COL("id", "int64"), COL("customer", "struct<name:string,tier:string>"),
              COL("items", "list<string>"), COL("amount", "decimal(10,2)"),
              COL("sold_at", "timestamp"), COL("is_return", "boolean")]
EVENTS_COLS = [COL("event_id", "string"), COL("ts", "timestamp_tz"),
               COL("user", "struct<id:int64,name:string>"), COL("tags", "list<string>"),
               COL("value", "double")]
CUSTOMERS_CSV_COLS = [COL("id", "int64"), COL("name", "string"), COL("signup_date", "date"),
                      COL("balance", "decimal"), COL("active", "boolean"),
                      COL("updated_at", "timestamp"), COL("note", "string")]
ORDERS_COLS = [COL("order_id", "int64"), COL("sku", "string"), COL("qty", "int64"),
               COL("price", "double"), COL("ordered_at", "timestamp_tz")]
AVRO_SCHEMA = {
    "type": "record", "name": "Customer", "namespace": "estate",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "email", "type": ["null", "string"]},
        {"name": "created", "type": {"type": "int", "logicalType": "date"}},
        {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
            {"name": "city", "type": "string"}, {"name": "zip", "type": "string"}]}},
    ],
}
AVRO_COLS = [COL("id", "int64"), COL("name", "string"), COL("email", "string"),
             COL("created", "date"), COL("address", "struct<city:string,zip:string>")]
MIXED_COLS = [COL("id", "int64"), COL("product", "string"), COL("qty", "int64"),
              COL("updated_at", "timestamp")]
METRICS_COLS = [COL("host", "string"), COL("cpu", "double"), COL("mem", "int64"),
                COL("at", "timestamp")]
LOGS_SCHEMA = pa.schema([("level", pa.string()), ("msg", pa.string()),
                         ("ts", pa.timestamp("ms")), ("code", pa.int32())])
LOGS_COLS = [COL("level", "string"), COL("msg", "string"), COL("ts", "timestamp"),
             COL("code", "int32")]
ARCHIVE_COLS = [COL("k", "string"), COL("v", "int64")]
DOCS_COLS = [COL("a", "int64"), COL("b", "struct<c:string>"), COL("d", "list<int64>")]
PLAIN_COLS = [COL("id", "int64"), COL("city", "string"), COL("temp_c", "double"),
              COL("day", "date")]


# ----------------------------------------------------------------------------- helpers

def name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def csv_bytes(header, rows, delimiter=",") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def orc_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pa_orc.write_table(table, buf, compression="zlib")
    return buf.getvalue()


def rand_ts(rng: random.Random, day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day) + dt.timedelta(seconds=rng.randrange(86400))


def frac_float(rng: random.Random, lo: float, hi: float) -> float:
    """A float that always has a fractional part when printed (e.g. 1.5, 12.125)."""
    while True:
        v = round(rng.uniform(lo, hi), rng.choice([1, 2, 3]))
        if v != int(v):
            return v


# ----------------------------------------------------------------------------- plan

class Plan:
    """Objects to upload plus the expected-file bookkeeping."""

    def __init__(self, flavor: str):
        self.flavor = flavor
        self.buckets: dict[str, dict] = {}
        self.bucket_order: list[str] = []
        self.datasets: list[dict] = []
        self.uploads: list[dict] = []  # {bucket,key,body,extra,writer}
        self.sink = None  # optional callable(upload) used instead of collecting uploads
        self.cse_objects: list[dict] = []  # client-side encrypted objects and their plaintext

    def bucket(self, name: str, enc_type: str, kms_key_arn=None, bucket_key=False, configure=None):
        self.buckets[name] = {
            "name": name,
            "default_encryption": {"type": enc_type, "kms_key_arn": kms_key_arn,
                                   "bucket_key_enabled": bool(bucket_key)},
            "object_count": 0, "junk_count": 0, "dataset_count": 0,
            "_configure": configure,
        }
        self.bucket_order.append(name)

    def dataset(self, bucket, prefix, fmt, columns, enc_types, kms_arns=(), partition_keys=(),
                partition_values=None, problems=(), broken=False, schema_available=None):
        if schema_available is None:
            schema_available = columns is not None and not broken and not problems
        ds = {
            "bucket": bucket, "prefix": prefix, "format": fmt, "compressions": [],
            "partition_keys": list(partition_keys),
            "partition_values": {k: sorted(v) for k, v in (partition_values or {}).items()},
            "file_count": 0, "total_bytes": 0,
            "schema_available": bool(schema_available),
            "columns": columns if schema_available else None,
            "encryption": {"types": sorted(set(enc_types)), "kms_key_arns": sorted(set(kms_arns)),
                           "mixed": len(set(kms_arns)) > 1 or len(set(enc_types)) > 1},
            "problems": list(problems), "broken": bool(broken),
        }
        self.datasets.append(ds)
        self.buckets[bucket]["dataset_count"] += 1
        return ds

    def cse_object(self, bucket, key, version, header, rows, columns, context=None, **more):
        """Records what a client-side encrypted object holds, for the decryption tests."""
        entry = {"bucket": bucket, "key": key, "version": version, "header": header,
                 "row_count": len(rows), "first_rows": [[str(v) for v in r] for r in rows[:3]],
                 "columns": columns, "encryption_context": context or {}}
        entry.update(more)
        self.cse_objects.append(entry)

    def put(self, bucket, key, body: bytes, ds=None, junk=False, compression="none",
            extra=None, writer="plain", corrupt=False):
        upload = {"bucket": bucket, "key": key, "body": body, "extra": extra or {}, "writer": writer}
        if self.sink is not None:
            self.sink(upload)  # streaming mode (bench): upload while generating
        else:
            self.uploads.append(upload)
        b = self.buckets[bucket]
        b["object_count"] += 1
        if junk:
            b["junk_count"] += 1
        if ds is not None:
            ds["file_count"] += 1
            # The S3 Encryption Client stores ciphertext + the 16-byte GCM tag.
            ds["total_bytes"] += len(body) + (16 if writer.startswith("cse") else 0)
            if self.sink is None:
                ds.setdefault("_keys", []).append(key)
            if compression not in ds["compressions"]:
                ds["compressions"] = sorted(ds["compressions"] + [compression])
            if corrupt:
                ds.setdefault("corrupt_keys", []).append(key)


# ----------------------------------------------------------------------------- estate

CSE_CSV_COLS = [COL("id", "int64"), COL("name", "string"), COL("active", "boolean")]
CSE_JSONL_COLS = [COL("id", "int64"), COL("secret", "string")]
CSE_PARQUET_COLS = [COL("id", "int64"), COL("code", "string"), COL("amount", "double")]
CSE_CONTEXT = {"department": "finance", "dataset": "orders"}
# S3 requires 5 MiB parts (but the last); the S3EC refuses smaller chunks.
CSE_PART_SIZE = 5 * 1024 * 1024


def build_cse_extras(plan: Plan, bk: str):
    """Client-side encrypted objects for the decryption tests, all under KMS key A: a V3 object
    written by multipart upload, V2 and V3 objects with a custom encryption context, a Parquet
    file with several row groups (big enough that ranged reads matter), and a V3 object whose key
    commitment (x-amz-d) was rewritten after the upload. Own RNG: the rest of the estate keeps its
    data."""
    rng = random.Random(0xC5E)
    cse = lambda: plan.dataset(bk, prefix, fmt, None, enc_types=["CLIENT_SIDE"],  # noqa: E731
                               problems=["CLIENT_SIDE_ENCRYPTED"])
    header = ["id", "name", "active"]

    prefix, fmt = "cse-multipart/", "csv"
    ds = cse()
    rows, size, i = [], 0, 0
    while size < CSE_PART_SIZE + 512 * 1024:  # two parts
        row = [i, name(rng), rng.choice(["true", "false"])]
        rows.append(row)
        size += len(f"{row[0]},{row[1]},{row[2]}\n")
        i += 1
    key = "cse-multipart/big-0000.csv"
    body = csv_bytes(header, rows)
    plan.put(bk, key, body, ds, writer="cse-v3-multipart")
    plan.cse_object(bk, key, "v3", header, rows, CSE_CSV_COLS, multipart=True, plaintext_size=len(body))

    prefix, fmt = "cse-context/", "csv"
    ds = cse()
    for version in ("v2", "v3"):
        rows = [[i, name(rng), rng.choice(["true", "false"])] for i in range(rng.randint(10, 20))]
        key = f"cse-context/{version}-0000.csv"
        plan.put(bk, key, csv_bytes(header, rows), ds, writer=f"cse-{version}",
                 extra={"EncryptionContext": dict(CSE_CONTEXT)})
        plan.cse_object(bk, key, version, header, rows, CSE_CSV_COLS, context=dict(CSE_CONTEXT))

    prefix, fmt = "cse-parquet/", "parquet"
    ds = cse()
    n_rows, group = 60_000, 10_000
    ids = list(range(n_rows))
    codes = [f"{rng.getrandbits(64):016x}" for _ in ids]
    amounts = [rng.uniform(0, 1000) for _ in ids]
    table = pa.table({"id": pa.array(ids, pa.int64()), "code": pa.array(codes, pa.string()),
                      "amount": pa.array(amounts, pa.float64())})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none", row_group_size=group)
    body = buf.getvalue()
    key = "cse-parquet/part-0000.parquet"
    plan.put(bk, key, body, ds, writer="cse-v3")
    rows = [[ids[j], codes[j], amounts[j]] for j in range(3)]
    plan.cse_object(bk, key, "v3", ["id", "code", "amount"], rows, CSE_PARQUET_COLS,
                    row_groups=n_rows // group, plaintext_size=len(body))
    plan.cse_objects[-1]["row_count"] = n_rows

    prefix, fmt = "cse-tampered/", "csv"
    ds = cse()
    rows = [[i, name(rng), rng.choice(["true", "false"])] for i in range(12)]
    key = "cse-tampered/cse-0000.csv"
    plan.put(bk, key, csv_bytes(header, rows), ds, writer="cse-v3-tampered")
    plan.cse_object(bk, key, "v3", header, rows, CSE_CSV_COLS, tampered="x-amz-d")

def build_estate(plan: Plan, rng: random.Random, keys: dict, ssec_key: bytes, region: str):
    flavor = plan.flavor
    A, B, C = keys["A"], keys["B"], keys["C"]

    # ---------------------------------------------------------------- estate-sse-s3
    bk = "estate-sse-s3"
    plan.bucket(bk, "SSE_S3", configure={"SSEAlgorithm": "AES256"})
    sse_s3 = dict(enc_types=["SSE_S3"])

    sales = plan.dataset(bk, "sales/", "parquet", SALES_COLS, partition_keys=["year", "month"],
                         partition_values={"year": ["2023", "2024"], "month": ["01", "02", "03"]},
                         **sse_s3)
    next_id = 1
    valid_sample = None
    for year in (2023, 2024):
        for month in (1, 2, 3):
            for part in range(2):
                rows = []
                for _ in range(rng.randint(40, 80)):
                    day = dt.date(year, month, rng.randint(1, 28))
                    rows.append({
                        "id": next_id,
                        "customer": None if rng.random() < 0.05 else {
                            "name": name(rng),
                            "tier": None if rng.random() < 0.2 else rng.choice(["gold", "silver", "bronze"])},
                        "items": None if rng.random() < 0.05 else
                        [rng.choice(PRODUCTS) for _ in range(rng.randint(0, 4))],
                        "amount": None if rng.random() < 0.05 else
                        Decimal(rng.randint(100, 999999)).scaleb(-2),
                        "sold_at": rand_ts(rng, day),
                        "is_return": rng.random() < 0.1,
                    })
                    next_id += 1
                body = parquet_bytes(pa.Table.from_pylist(rows, schema=SALES_SCHEMA))
                valid_sample = valid_sample or body
                plan.put(bk, f"sales/year={year}/month={month:02d}/part-{part:04d}.parquet", body, sales)
    plan.put(bk, "sales/year=2024/month=03/part-9999.parquet",
             valid_sample[: int(len(valid_sample) * 0.6)], sales, corrupt=True)

    events = plan.dataset(bk, "events/", "jsonl", EVENTS_COLS, partition_keys=["year", "month", "day"],
                          partition_values={"year": ["2024"], "month": ["01", "02"],
                                            "day": ["30", "31", "01"]}, **sse_s3)
    for day in (dt.date(2024, 1, 30), dt.date(2024, 1, 31), dt.date(2024, 2, 1)):
        for part in range(2):
            lines = []
            for _ in range(rng.randint(30, 60)):
                lines.append(json.dumps({
                    "event_id": f"evt-{rng.getrandbits(48):012x}",
                    "ts": rand_ts(rng, day).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "user": {"id": rng.randint(1, 5000), "name": None if rng.random() < 0.1 else name(rng)},
                    "tags": [] if rng.random() < 0.2 else rng.sample(["web", "mobile", "promo", "beta", "eu", "us"],
                                                                     rng.randint(1, 3)),
                    "value": frac_float(rng, 0, 500),
                }, ensure_ascii=False))
            body = gzip_bytes(("\n".join(lines) + "\n").encode("utf-8"))
            plan.put(bk, f"events/{day:%Y/%m/%d}/events-{part:04d}.jsonl.gz", body, events,
                     compression="gzip")

    raw = plan.dataset(bk, "raw/", "csv", CUSTOMERS_CSV_COLS, **sse_s3)
    cid = 1
    for n in (1, 2):
        rows = []
        for _ in range(rng.randint(25, 50)):
            signup = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(1400))
            rows.append([cid, name(rng), signup.isoformat(), f"{rng.uniform(0, 5000):.2f}",
                         rng.choice(["true", "false"]),
                         rand_ts(rng, dt.date(2024, 1, rng.randint(1, 31))).strftime("%Y-%m-%d %H:%M:%S"),
                         rng.choice(NOTES)])
            cid += 1
        plan.put(bk, f"raw/customers_{n}.csv",
                 csv_bytes(["id", "name", "signup_date", "balance", "active", "updated_at", "note"], rows), raw)

    # junk (counted in the bucket, never a dataset)
    plan.put(bk, "sales/_SUCCESS", b"", junk=True)
    plan.put(bk, "sales/year=2024/month=01/_SUCCESS", b"", junk=True)
    plan.put(bk, "sales/_temporary/0/part-0000.parquet", valid_sample, junk=True)
    plan.put(bk, "raw/.customers_1.csv.crc", b"crc\x00\x00\x00\x00\x12\x34\x56\x78", junk=True)
    plan.put(bk, "raw/customers_1.csv.crc", b"crc\x00\x00\x00\x00\x9a\xbc\xde\xf0", junk=True)
    plan.put(bk, "logs_$folder$", b"", junk=True)
    plan.put(bk, "empty-folder/", b"", junk=True)
    plan.put(bk, "raw/empty.csv", b"", junk=True)

    # broken/ : never crash, never a schema. One dataset per format.
    b_parq = plan.dataset(bk, "broken/", "parquet", None, broken=True, **sse_s3)
    b_csv = plan.dataset(bk, "broken/", "csv", None, broken=True, **sse_s3)
    b_json = plan.dataset(bk, "broken/", "jsonl", None, broken=True, **sse_s3)
    plan.put(bk, "broken/bad.parquet", valid_sample[: int(len(valid_sample) * 0.4)], b_parq, corrupt=True)
    garbage = bytearray(b"id,name,amount\n")
    for i in range(200):
        garbage += f"{i},".encode() + bytes(rng.randrange(128, 256) for _ in range(rng.randint(3, 12)))
        garbage += b"\xff\xfe\xc3\x28," + f"{rng.uniform(0, 99):.2f}\n".encode()
    plan.put(bk, "broken/garbage.csv", bytes(garbage), b_csv, corrupt=True)
    plan.put(bk, "broken/bomb.csv.gz", gzip_bomb(300 * 1024 * 1024), b_csv, compression="gzip", corrupt=True)
    line = json.dumps({"id": 1, "payload": "x" * (4 * 1024 * 1024)}).encode()[: 3 * 1024 * 1024]
    plan.put(bk, "broken/huge-line.jsonl", line, b_json, corrupt=True)

    # ---------------------------------------------------------------- estate-kms-a
    bk = "estate-kms-a"
    plan.bucket(bk, "SSE_KMS", A, bucket_key=True,
                configure={"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": A, "BucketKeyEnabled": True})
    orders = plan.dataset(bk, "orders/", "tsv", ORDERS_COLS, enc_types=["SSE_KMS"], kms_arns=[A],
                          partition_keys=["dt", "region"],
                          partition_values={"dt": ["2024-01-01", "2024-01-02", "2024-01-03"],
                                            "region": ["us east", "eu-west"]})
    oid = 1000
    for d in ("2024-01-01", "2024-01-02", "2024-01-03"):
        for region_seg in ("us%20east", "eu-west"):
            rows = []
            day = dt.date.fromisoformat(d)
            for _ in range(rng.randint(20, 40)):
                rows.append([oid, f"SKU-{rng.randint(100, 999)}", rng.randint(1, 12),
                             rng.choice([3.5, 12.125, 7.0, 19.99, 0.25, 104.1, 2.75, 55.5]),
                             rand_ts(rng, day).strftime("%Y-%m-%dT%H:%M:%SZ")])
                oid += 1
            plan.put(bk, f"orders/dt={d}/region={region_seg}/orders.tsv",
                     csv_bytes(["order_id", "sku", "qty", "price", "ordered_at"], rows, "\t"), orders)

    cust = plan.dataset(bk, "customers/", "avro", AVRO_COLS, enc_types=["SSE_KMS"], kms_arns=[A])
    aid = 1
    for n in range(3):
        recs = []
        for _ in range(rng.randint(20, 40)):
            nm = name(rng)
            city, zipc = rng.choice(CITIES)
            recs.append({"id": aid, "name": nm,
                         "email": None if rng.random() < 0.2 else
                         nm.lower().replace(" ", ".").replace("'", "") + "@example.com",
                         "created": dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(2000)),
                         "address": {"city": city, "zip": zipc}})
            aid += 1
        buf = io.BytesIO()
        fastavro.writer(buf, fastavro.parse_schema(AVRO_SCHEMA), recs, codec="deflate",
                        sync_marker=rng.randbytes(16))
        plan.put(bk, f"customers/customers-{n:04d}.avro", buf.getvalue(), cust)

    mixed = plan.dataset(bk, "mixed/", "csv", MIXED_COLS, enc_types=["SSE_KMS"], kms_arns=[A, C])
    mid = 1
    for n in range(6):
        rows = []
        for _ in range(rng.randint(15, 30)):
            rows.append([mid, rng.choice(PRODUCTS), rng.randint(0, 50),
                         rand_ts(rng, dt.date(2024, 1, rng.randint(1, 31))).strftime("%Y-%m-%d %H:%M:%S")])
            mid += 1
        extra = {} if n < 3 else {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": C}
        plan.put(bk, f"mixed/part-{n:04d}.csv", csv_bytes(["id", "product", "qty", "updated_at"], rows),
                 mixed, extra=extra)

    # ---------------------------------------------------------------- estate-kms-b
    bk = "estate-kms-b"
    plan.bucket(bk, "SSE_KMS", B, bucket_key=False,
                configure={"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/estate-b",
                           "BucketKeyEnabled": False})
    kb = dict(enc_types=["SSE_KMS"], kms_arns=[B])
    metrics = plan.dataset(bk, "metrics/", "psv", METRICS_COLS, **kb)
    zc = zstandard.ZstdCompressor(level=3)
    for n in range(3):
        rows = []
        for _ in range(rng.randint(30, 60)):
            rows.append([f"host-{rng.randint(1, 12):02d}.internal", frac_float(rng, 0, 100),
                         rng.randint(128, 65536),
                         rand_ts(rng, dt.date(2024, 1, 31)).strftime("%Y-%m-%dT%H:%M:%S")])
        plan.put(bk, f"metrics/metrics-{n:04d}.psv.zst",
                 zc.compress(csv_bytes(["host", "cpu", "mem", "at"], rows, "|")), metrics,
                 compression="zstd")
    logs = plan.dataset(bk, "logs/", "orc", LOGS_COLS, **kb)
    for n in range(2):
        rows = []
        for _ in range(rng.randint(40, 80)):
            lvl = rng.choice(LEVELS)
            rows.append({"level": lvl,
                         "msg": None if rng.random() < 0.05 else f"{lvl.lower()}: request {rng.getrandbits(32):08x} handled",
                         "ts": rand_ts(rng, dt.date(2024, 1, 31)),
                         "code": rng.choice([200, 200, 201, 204, 301, 404, 500])})
        plan.put(bk, f"logs/logs-{n:04d}.orc", orc_bytes(pa.Table.from_pylist(rows, schema=LOGS_SCHEMA)), logs)
    archive = plan.dataset(bk, "archive/", "csv", ARCHIVE_COLS, **kb)
    for n in range(2):
        rows = [[f"key-{rng.getrandbits(24):06x}", rng.randint(-1000, 100000)] for _ in range(rng.randint(40, 80))]
        plan.put(bk, f"archive/archive-{n:04d}.csv.bz2", bz2.compress(csv_bytes(["k", "v"], rows)), archive,
                 compression="bzip2")
    docs = plan.dataset(bk, "docs/", "json", DOCS_COLS, **kb)
    for n in range(2):
        arr = [{"a": rng.randint(0, 10000), "b": {"c": rng.choice(PRODUCTS)},
                "d": [rng.randint(0, 99) for _ in range(rng.randint(0, 5))]} for _ in range(rng.randint(10, 25))]
        plan.put(bk, f"docs/docs-{n:04d}.json", json.dumps(arr, indent=1).encode(), docs)

    # ---------------------------------------------------------------- estate-secure
    bk = "estate-secure"
    plan.bucket(bk, "SSE_S3", configure={"SSEAlgorithm": "AES256"})
    if flavor == "moto":
        # moto 5.2.5 ignores SSE-C entirely: the object is stored under the bucket default
        # (AES256), HEAD/GET without the key answer 200 with plaintext and no customer-algorithm
        # header. The connector can only see an ordinary SSE-S3 CSV there.
        ssec = plan.dataset(bk, "ssec/", "csv", [COL("id", "int64"), COL("name", "string"),
                                                 COL("balance", "decimal")], enc_types=["SSE_S3"])
        ssec["emulator_note"] = "moto ignores SSE-C: objects read back as SSE-S3 plaintext"
    else:
        ssec = plan.dataset(bk, "ssec/", "csv", None, enc_types=["SSE_C"], problems=["SSE_C_KEY_REQUIRED"])
    for n in range(3):
        rows = [[i, name(rng), f"{rng.uniform(0, 900):.2f}"] for i in range(rng.randint(10, 20))]
        plan.put(bk, f"ssec/secret-{n:04d}.csv", csv_bytes(["id", "name", "balance"], rows), ssec,
                 extra={"SSECustomerAlgorithm": "AES256", "SSECustomerKey": ssec_key})
    cse3 = plan.dataset(bk, "cse-v3/", "csv", None, enc_types=["CLIENT_SIDE"], problems=["CLIENT_SIDE_ENCRYPTED"])
    for n in range(2):
        rows = [[i, name(rng), rng.choice(["true", "false"])] for i in range(rng.randint(10, 20))]
        plan.put(bk, f"cse-v3/cse-{n:04d}.csv", csv_bytes(["id", "name", "active"], rows), cse3,
                 writer="cse-v3")
        plan.cse_object(bk, f"cse-v3/cse-{n:04d}.csv", "v3", ["id", "name", "active"], rows,
                        CSE_CSV_COLS)
    cse2 = plan.dataset(bk, "cse-v2/", "jsonl", None, enc_types=["CLIENT_SIDE"], problems=["CLIENT_SIDE_ENCRYPTED"])
    for n in range(2):
        records = [{"id": i, "secret": f"{rng.getrandbits(64):016x}"} for i in range(rng.randint(10, 20))]
        lines = [json.dumps(r) for r in records]
        plan.put(bk, f"cse-v2/cse-{n:04d}.jsonl", ("\n".join(lines) + "\n").encode(), cse2, writer="cse-v2")
        plan.cse_object(bk, f"cse-v2/cse-{n:04d}.jsonl", "v2", ["id", "secret"],
                        [[r["id"], r["secret"]] for r in records], CSE_JSONL_COLS)
    build_cse_extras(plan, bk)

    # ---------------------------------------------------------------- estate-plain / estate-empty
    # No default encryption is configured. moto then answers GetBucketEncryption with 404 and
    # stores objects unencrypted; LocalStack (like S3 since 2023) reports and applies AES256.
    implicit = "NONE" if flavor == "moto" else "SSE_S3"
    for bk in ("estate-plain", "estate-empty"):
        plan.bucket(bk, implicit, configure=None)
    plain = plan.dataset("estate-plain", "data/", "csv", PLAIN_COLS, enc_types=[implicit])
    for n in range(2):
        rows = [[i, rng.choice(CITIES)[0], frac_float(rng, -10, 35),
                 (dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(60))).isoformat()]
                for i in range(rng.randint(20, 40))]
        plan.put("estate-plain", f"data/weather-{n:04d}.csv", csv_bytes(["id", "city", "temp_c", "day"], rows), plain)

    # ---------------------------------------------------------------- estate-kms-broken (LocalStack)
    if flavor == "localstack":
        D, E = keys["D"], keys["E"]
        bk = "estate-kms-broken"
        plan.bucket(bk, "SSE_S3", configure={"SSEAlgorithm": "AES256"})
        dis = plan.dataset(bk, "disabled/", "csv", None, enc_types=["SSE_KMS"], kms_arns=[D],
                           problems=["KMS_KEY_DISABLED"])
        pen = plan.dataset(bk, "pending/", "csv", None, enc_types=["SSE_KMS"], kms_arns=[E],
                           problems=["KMS_KEY_PENDING_DELETION"])
        for ds, key in ((dis, D), (pen, E)):
            for n in range(2):
                rows = [[i, rng.choice(PRODUCTS), rng.randint(1, 9)] for i in range(rng.randint(10, 20))]
                plan.put(bk, f"{ds['prefix']}part-{n:04d}.csv", csv_bytes(["id", "product", "qty"], rows), ds,
                         extra={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key})


def gzip_bomb(size: int) -> bytes:
    """gzip of `size` NUL bytes, produced streaming (never holds the plaintext)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31 = gzip container, mtime 0
    chunk = bytes(1024 * 1024)
    out = []
    left = size
    while left:
        n = min(left, len(chunk))
        out.append(comp.compress(chunk[:n]))
        left -= n
    out.append(comp.flush())
    return b"".join(out)


# ----------------------------------------------------------------------------- bench

def build_bench(plan: Plan, rng: random.Random, n_objects: int, n_datasets: int, bucket: str, key_arn: str):
    """One SSE-KMS bucket with n_datasets datasets, n_objects objects in total (incl. junk)."""
    n_datasets = max(1, min(n_datasets, n_objects))
    junk = [i for i in range(n_datasets) if i % 10 == 0][: max(0, n_objects - n_datasets)]
    n_data = n_objects - len(junk)
    kinds = ["csv", "jsonl", "parquet"]
    per, rem = divmod(n_data, n_datasets)
    bench_parquet_schema = pa.schema([("id", pa.int64()), ("name", pa.string()),
                                      ("score", pa.float64()), ("at", pa.timestamp("ms"))])
    enc = dict(enc_types=["SSE_KMS"], kms_arns=[key_arn])
    next_id = 1
    for i in range(n_datasets):
        kind = kinds[i % 3]
        count = per + (1 if i < rem else 0)
        prefix = f"ds{i:04d}-{kind}/"
        if kind == "csv":
            days = sorted({f"2024-01-{(f % 28) + 1:02d}" for f in range(count)})
            ds = plan.dataset(bucket, prefix, "csv",
                              [COL("id", "int64"), COL("name", "string"), COL("amount", "decimal"),
                               COL("created_at", "timestamp")],
                              partition_keys=["dt"], partition_values={"dt": days} if count else {}, **enc)
        elif kind == "jsonl":
            ds = plan.dataset(bucket, prefix, "jsonl",
                              [COL("id", "int64"), COL("event", "string"), COL("value", "double"),
                               COL("ts", "timestamp_tz")], **enc)
        else:
            ds = plan.dataset(bucket, prefix, "parquet",
                              [COL("id", "int64"), COL("name", "string"), COL("score", "double"),
                               COL("at", "timestamp")], **enc)
        for f in range(count):
            nrows = rng.randint(25, 90)
            base = dt.datetime(2024, 1, (f % 28) + 1)
            if kind == "csv":
                rows = [[next_id + r, name(rng), f"{rng.uniform(0, 999):.2f}",
                         (base + dt.timedelta(seconds=rng.randrange(86400))).strftime("%Y-%m-%d %H:%M:%S")]
                        for r in range(nrows)]
                plan.put(bucket, f"{prefix}dt={base:%Y-%m-%d}/part-{f:05d}.csv",
                         csv_bytes(["id", "name", "amount", "created_at"], rows), ds)
            elif kind == "jsonl":
                lines = [json.dumps({"id": next_id + r, "event": rng.choice(["view", "click", "buy"]),
                                     "value": frac_float(rng, 0, 100),
                                     "ts": (base + dt.timedelta(seconds=rng.randrange(86400))).strftime(
                                         "%Y-%m-%dT%H:%M:%SZ")}) for r in range(nrows // 2)]
                plan.put(bucket, f"{prefix}part-{f:05d}.jsonl", ("\n".join(lines) + "\n").encode(), ds)
            else:
                rows = {"id": list(range(next_id, next_id + nrows)),
                        "name": [name(rng) for _ in range(nrows)],
                        "score": [rng.uniform(0, 1) for _ in range(nrows)],
                        "at": [base + dt.timedelta(seconds=rng.randrange(86400)) for _ in range(nrows)]}
                plan.put(bucket, f"{prefix}part-{f:05d}.parquet",
                         parquet_bytes(pa.table(rows, schema=bench_parquet_schema)), ds)
            next_id += nrows
        if i in junk:
            plan.put(bucket, f"{prefix}_SUCCESS", b"", junk=True)


# ----------------------------------------------------------------------------- AWS side

def clients(endpoint: str, region: str, pool: int):
    cfg = Config(region_name=region, s3={"addressing_style": "path"},
                 retries={"max_attempts": 8, "mode": "standard"}, max_pool_connections=pool,
                 parameter_validation=False,
                 request_checksum_calculation="when_required",
                 response_checksum_validation="when_required")
    sess = boto3.session.Session(region_name=region)
    mk = lambda svc: sess.client(svc, endpoint_url=endpoint, config=cfg)  # noqa: E731
    s3 = mk("s3")
    # List the way the Rust SDK does (no EncodingType=url); see raw_list_pages().
    from botocore.handlers import set_list_objects_encoding_type_url
    s3.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", set_list_objects_encoding_type_url)
    return s3, mk("kms"), mk("sts"), mk


def create_key(kms, label: str) -> str:
    meta = kms.create_key(Description=f"s3-connector estate key {label}", KeyUsage="ENCRYPT_DECRYPT",
                          KeySpec="SYMMETRIC_DEFAULT", Tags=[{"TagKey": "estate", "TagValue": label}])
    return meta["KeyMetadata"]["Arn"]


def ensure_alias(kms, alias: str, key_arn: str):
    key_id = key_arn.rsplit("/", 1)[1]
    try:
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    except ClientError as e:
        if e.response["Error"]["Code"] != "AlreadyExistsException":
            raise
        kms.update_alias(AliasName=alias, TargetKeyId=key_id)


def empty_bucket(s3, bucket: str):
    for page in raw_list_pages(s3, bucket):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(objs), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objs[i:i + 1000], "Quiet": True})


def prepare_bucket(s3, b: dict, region: str):
    name = b["name"]
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        empty_bucket(s3, name)  # re-seed: start from an empty bucket
        try:
            s3.delete_bucket_encryption(Bucket=name)
        except ClientError:
            pass
    conf = b.get("_configure")
    if conf:
        conf = dict(conf)
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": conf.pop("SSEAlgorithm")}}
        if "KMSMasterKeyID" in conf:
            rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] = conf.pop("KMSMasterKeyID")
        if "BucketKeyEnabled" in conf:
            rule["BucketKeyEnabled"] = conf.pop("BucketKeyEnabled")
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [rule]})


class Uploader:
    """Thread-pool uploader. submit() blocks when too many uploads are in flight."""

    def __init__(self, s3, mk, key_a: str, workers: int):
        self.s3, self.mk, self.key_a = s3, mk, key_a
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.slots = threading.BoundedSemaphore(workers * 8)
        self.futures = []
        self.cse = {}
        self.cse_lock = threading.Lock()

    def _cse_client(self, mode: str):
        # The S3 Encryption Client hooks events on the client it wraps, so each mode gets its own.
        with self.cse_lock:
            mode = "cse-v2" if mode.startswith("cse-v2") else "cse-v3"
            if mode not in self.cse:
                from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
                from s3_encryption.materials.kms_keyring import KmsKeyring
                from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy
                keyring = KmsKeyring(self.mk("kms"), self.key_a)
                if mode == "cse-v3":
                    cfg = S3EncryptionClientConfig(keyring=keyring)  # default: V3 committing suite
                else:  # V2 format: AES-GCM without KDF, kms+context wrapping
                    cfg = S3EncryptionClientConfig(
                        keyring=keyring,
                        encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
                        commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT)
                self.cse[mode] = (S3EncryptionClient(self.mk("s3"), cfg), threading.Lock())
            return self.cse[mode]

    def _one(self, u):
        try:
            if u["writer"] == "plain":
                self.s3.put_object(Bucket=u["bucket"], Key=u["key"], Body=u["body"], **u["extra"])
            else:
                client, lock = self._cse_client(u["writer"])
                with lock:  # the S3EC keeps per-call state in thread-locals; keep it simple
                    if u["writer"].endswith("-multipart"):
                        client.upload_fileobj(io.BytesIO(u["body"]), u["bucket"], u["key"],
                                              multipart_chunksize=CSE_PART_SIZE, **u["extra"])
                    else:
                        client.put_object(Bucket=u["bucket"], Key=u["key"], Body=u["body"], **u["extra"])
                if u["writer"].endswith("-tampered"):
                    self._tamper_commitment(u["bucket"], u["key"])
        finally:
            self.slots.release()

    def _tamper_commitment(self, bucket: str, key: str):
        """Rewrites the object's V3 key commitment (x-amz-d) in place: one bit flipped."""
        meta = self.s3.head_object(Bucket=bucket, Key=key)["Metadata"]
        raw = bytearray(base64.b64decode(meta["x-amz-d"]))
        raw[-1] ^= 0x01
        meta["x-amz-d"] = base64.b64encode(bytes(raw)).decode()
        self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                            Metadata=meta, MetadataDirective="REPLACE")

    def submit(self, u):
        self.slots.acquire()
        self.futures.append(self.pool.submit(self._one, u))

    def wait(self):
        self.pool.shutdown(wait=True)
        for f in self.futures:
            f.result()  # raise the first failure, if any


def raw_list_pages(s3, bucket: str):
    """ListObjectsV2 pages *without* botocore's automatic EncodingType=url.

    LocalStack 4.7.0 compares the URL-encoded key with the decoded continuation token when
    EncodingType=url is sent, so keys containing '=' (Hive partitions) after a page boundary are
    silently skipped. The Rust SDK does not send EncodingType unless asked, so list like it does.
    """
    kw = {"Bucket": bucket}
    while True:
        page = s3.list_objects_v2(**kw)
        yield page
        if not page.get("IsTruncated"):
            return
        kw["ContinuationToken"] = page["NextContinuationToken"]


def verify_counts(s3, plan: Plan) -> list[str]:
    """Object counts per bucket and (when known) byte totals per dataset, from ListObjectsV2."""
    errors = []
    sizes = {}
    for name in plan.bucket_order:
        n = 0
        for page in raw_list_pages(s3, name):
            n += page.get("KeyCount", len(page.get("Contents", [])))
            for o in page.get("Contents", []):
                sizes[(name, o["Key"])] = o["Size"]
        want = plan.buckets[name]["object_count"]
        if n != want:
            errors.append(f"{name}: listed {n} objects, expected {want}")
    for ds in plan.datasets:
        if "_keys" not in ds:
            continue
        got = sum(sizes.get((ds["bucket"], k), -10**12) for k in ds["_keys"])
        if got != ds["total_bytes"]:
            errors.append(f"{ds['bucket']}/{ds['prefix']} ({ds['format']}): listed {got} bytes, "
                          f"expected {ds['total_bytes']}")
    return errors


def write_expected(path: str, doc: dict):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--flavor", required=True, choices=["moto", "localstack"])
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--expected", required=True, help="where to write the expected-file JSON")
    ap.add_argument("--workers", type=int, default=None, help="upload threads (default 16, bench 32)")
    ap.add_argument("--bench-objects", type=int, default=None)
    ap.add_argument("--bench-datasets", type=int, default=None)
    ap.add_argument("--bench-bucket", default="bench-estate")
    ap.add_argument("--no-verify", action="store_true", help="skip the ListObjectsV2 count check")
    args = ap.parse_args(argv)
    bench = args.bench_objects is not None or args.bench_datasets is not None
    if bench and not (args.bench_objects and args.bench_datasets):
        ap.error("--bench-objects and --bench-datasets go together (both > 0)")
    workers = args.workers or (32 if bench else 16)

    t0 = time.monotonic()
    rng = random.Random(args.seed)
    s3, kms, sts, mk = clients(args.endpoint, args.region, max(64, workers * 2))
    account = sts.get_caller_identity()["Account"]
    plan = Plan(args.flavor)

    if bench:
        key = create_key(kms, "BENCH")
        keys = {"BENCH": key}
        plan.bucket(args.bench_bucket, "SSE_KMS", key, bucket_key=True,
                    configure={"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key, "BucketKeyEnabled": True})
        prepare_bucket(s3, plan.buckets[args.bench_bucket], args.region)
        t_up = time.monotonic()
        up = Uploader(s3, mk, "", workers)
        plan.sink = up.submit  # generate and upload concurrently
        build_bench(plan, rng, args.bench_objects, args.bench_datasets, args.bench_bucket, key)
        up.wait()
        t_up = time.monotonic() - t_up
        ssec_key = None
    else:
        keys = {label: create_key(kms, label) for label in ("A", "B", "C")}
        ensure_alias(kms, "alias/estate-b", keys["B"])
        if args.flavor == "localstack":
            keys["D"] = create_key(kms, "D")
            keys["E"] = create_key(kms, "E")
        ssec_key = hashlib.sha256(f"s3-connector-estate-ssec-{args.seed}".encode()).digest()
        build_estate(plan, rng, keys, ssec_key, args.region)
        for name in plan.bucket_order:
            prepare_bucket(s3, plan.buckets[name], args.region)
        t_up = time.monotonic()
        up = Uploader(s3, mk, keys["A"], workers)
        for u in plan.uploads:
            up.submit(u)
        up.wait()
        t_up = time.monotonic() - t_up

    if not bench:
        # The SSE-C key as Secrets Manager secrets (plain base64, and a JSON field) for the
        # `secretsmanager:` key source (LocalStack community has secretsmanager: emulators.sh).
        sm = boto3.client("secretsmanager", endpoint_url=args.endpoint, region_name=args.region)
        b64 = base64.b64encode(ssec_key).decode()
        for secret_id, value in (("estate/ssec-key", b64), ("estate/ssec-key-json", json.dumps({"sse_c": b64}))):
            try:
                sm.create_secret(Name=secret_id, SecretString=value)
            except ClientError as e:
                if e.response["Error"]["Code"] != "ResourceExistsException":
                    raise
                sm.put_secret_value(SecretId=secret_id, SecretString=value)

    if not bench and args.flavor == "localstack":
        kms.disable_key(KeyId=keys["D"])
        kms.schedule_key_deletion(KeyId=keys["E"], PendingWindowInDays=7)

    errors = [] if args.no_verify else verify_counts(s3, plan)

    doc = {"flavor": args.flavor, "region": args.region, "account_id": account, "keys": keys}
    if bench:
        doc["bench"] = True
    else:
        doc["key_b_alias"] = "alias/estate-b"
        doc["ssec_key_b64"] = base64.b64encode(ssec_key).decode()
        doc["ssec_secrets"] = ["estate/ssec-key", "estate/ssec-key-json#sse_c"]
        doc["cse"] = {"kms_key_arn": keys["A"], "objects": plan.cse_objects}
    doc["buckets"] = [{k: v for k, v in plan.buckets[n].items() if not k.startswith("_")}
                      for n in plan.bucket_order]
    doc["datasets"] = [{k: v for k, v in ds.items() if not k.startswith("_")} for ds in plan.datasets]
    write_expected(args.expected, doc)

    total = sum(b["object_count"] for b in plan.buckets.values())
    secs = time.monotonic() - t0
    print(f"seeded {args.flavor}{' bench' if bench else ''}: {len(plan.bucket_order)} buckets, "
          f"{total} objects, {len(plan.datasets)} datasets in {secs:.1f} s "
          f"(uploads {t_up:.1f} s, {total / max(t_up, 1e-9):.0f} obj/s); expected -> {args.expected}")
    for e in errors:
        print(f"VERIFY FAILED: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
