#!/usr/bin/env python3
"""Print what a seeded emulator actually answers for the encryption edge cases.

    observe.py --endpoint URL --expected PATH [--json OUT]

Runs in the moto venv. For each case it prints the HTTP status, the error code (if any) and
the encryption-related response headers, straight from botocore's raw response. It also
HEADs the first object of every dataset and reports the SSE header it carries, so the
expected file can be checked against the emulator's real behaviour.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

INTERESTING = ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
               "x-amz-server-side-encryption-bucket-key-enabled",
               "x-amz-server-side-encryption-customer-algorithm",
               "x-amz-server-side-encryption-customer-key-md5", "content-length")


def call(fn, **kw):
    """Return {status, code, headers, meta} for an S3 call without raising."""
    try:
        r = fn(**kw)
        status, code = r["ResponseMetadata"]["HTTPStatusCode"], None
        headers = r["ResponseMetadata"]["HTTPHeaders"]
        if "Body" in r:
            r["Body"].read()
    except ClientError as e:
        status = e.response["ResponseMetadata"].get("HTTPStatusCode")
        code = e.response.get("Error", {}).get("Code")
        headers = e.response["ResponseMetadata"].get("HTTPHeaders", {})
    out = {"status": status, "code": code}
    out.update({h: headers[h] for h in INTERESTING if h in headers})
    meta = sorted(h for h in headers if h.startswith("x-amz-meta-"))
    if meta:
        out["meta_keys"] = meta
    return out


def first_key(s3, bucket, prefix, fmt=None):
    exts = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv", "tsv": ".tsv", "psv": ".psv",
            "json": ".json", "avro": ".avro", "orc": ".orc"}
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        if o["Size"] and (fmt is None or exts[fmt] in o["Key"]):
            return o["Key"]
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--json", help="also write the observations here")
    args = ap.parse_args()
    exp = json.load(open(args.expected))
    cfg = Config(region_name=exp["region"], s3={"addressing_style": "path"},
                 request_checksum_calculation="when_required", response_checksum_validation="when_required",
                 retries={"max_attempts": 1})
    s3 = boto3.client("s3", endpoint_url=args.endpoint, config=cfg)
    obs: dict = {"flavor": exp["flavor"], "cases": {}, "datasets": [], "bucket_encryption": {}}
    cases = obs["cases"]
    sk = base64.b64decode(exp["ssec_key_b64"])

    k = first_key(s3, "estate-secure", "ssec/")
    cases["ssec HEAD without key"] = call(s3.head_object, Bucket="estate-secure", Key=k)
    cases["ssec GET without key"] = call(s3.get_object, Bucket="estate-secure", Key=k)
    cases["ssec HEAD with key"] = call(s3.head_object, Bucket="estate-secure", Key=k,
                                       SSECustomerAlgorithm="AES256", SSECustomerKey=sk)
    cases["ssec GET wrong key"] = call(s3.get_object, Bucket="estate-secure", Key=k,
                                       SSECustomerAlgorithm="AES256", SSECustomerKey=b"\x01" * 32)
    for bucket, prefix in (("estate-kms-a", "orders/"), ("estate-kms-a", "mixed/part-0003"),
                           ("estate-kms-b", "metrics/")):
        k = first_key(s3, bucket, prefix)
        cases[f"HEAD {bucket}/{k}"] = call(s3.head_object, Bucket=bucket, Key=k)
        cases[f"GET {bucket}/{k}"] = call(s3.get_object, Bucket=bucket, Key=k)
    for prefix in ("cse-v3/", "cse-v2/"):
        k = first_key(s3, "estate-secure", prefix)
        cases[f"HEAD estate-secure/{k}"] = call(s3.head_object, Bucket="estate-secure", Key=k)
    if exp["flavor"] == "localstack":
        for prefix in ("disabled/", "pending/"):
            k = first_key(s3, "estate-kms-broken", prefix)
            cases[f"HEAD estate-kms-broken/{k}"] = call(s3.head_object, Bucket="estate-kms-broken", Key=k)
            cases[f"GET estate-kms-broken/{k}"] = call(s3.get_object, Bucket="estate-kms-broken", Key=k)

    for b in exp["buckets"]:
        try:
            rules = s3.get_bucket_encryption(Bucket=b["name"])["ServerSideEncryptionConfiguration"]["Rules"]
            obs["bucket_encryption"][b["name"]] = rules
        except ClientError as e:
            obs["bucket_encryption"][b["name"]] = {
                "status": e.response["ResponseMetadata"].get("HTTPStatusCode"),
                "code": e.response["Error"].get("Code")}

    for ds in exp["datasets"]:
        k = first_key(s3, ds["bucket"], ds["prefix"], ds["format"])
        kw = {}
        if "SSE_C" in ds["encryption"]["types"]:
            kw = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": sk}
        r = call(s3.head_object, Bucket=ds["bucket"], Key=k, **kw)
        obs["datasets"].append({"key": f"{ds['bucket']}/{k}", "expected": ds["encryption"], "head": r})

    json.dump(obs, sys.stdout, indent=1)
    print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(obs, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
