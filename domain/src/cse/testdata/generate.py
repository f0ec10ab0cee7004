"""Generate interop fixtures for domain/src/cse with AWS's own S3 Encryption Client (Python).

Usage: moto_server -H 127.0.0.1 -p PORT &  then
       PYTHONDONTWRITEBYTECODE=1 python generate.py http://127.0.0.1:PORT OUTDIR

Every fixture records what a reader sees: the user metadata as boto3 returns it (names without
`x-amz-meta-`), the raw ciphertext body, the KMS key id, and the plaintext data key obtained by
KMS Decrypt of the EDK with the stored encryption context (on moto).  Large objects keep only
windows of the ciphertext plus the tag; their plaintext is regenerated deterministically.
"""

import base64
import hashlib
import io
import json
import os
import sys

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy

endpoint, outdir = sys.argv[1], sys.argv[2]
common = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
s3 = boto3.client("s3", **common)
kms = boto3.client("kms", **common)
BUCKET = "cse-fixtures"
s3.create_bucket(Bucket=BUCKET)
key_id = kms.create_key(Description="cse fixtures")["KeyMetadata"]["Arn"]


def client(version):
    if version == "v3":
        cfg = S3EncryptionClientConfig(keyring=KmsKeyring(kms_client=kms, kms_key_id=key_id))
    else:
        cfg = S3EncryptionClientConfig(
            keyring=KmsKeyring(kms_client=kms, kms_key_id=key_id),
            encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
        )
    # A fresh boto3 client per S3EC: the plugin registers event handlers on it.
    return S3EncryptionClient(wrapped_s3_client=boto3.client("s3", **common), config=cfg)


def b64(b):
    return base64.b64encode(b).decode()


def data_key(meta):
    edk = base64.b64decode(meta.get("x-amz-3") or meta["x-amz-key-v2"])
    ctx = json.loads(meta.get("x-amz-t") or meta.get("x-amz-matdesc") or "{}")
    return kms.decrypt(CiphertextBlob=edk, EncryptionContext=ctx)["Plaintext"]


def raw(key):
    obj = s3.get_object(Bucket=BUCKET, Key=key)
    return obj["Body"].read(), obj["Metadata"]


def check_roundtrip(c, key, plaintext, context=None):
    extra = {"EncryptionContext": context} if context else {}
    got = c.get_object(Bucket=BUCKET, Key=key, **extra)["Body"].read()
    assert got == plaintext, key


def save(name, doc):
    path = os.path.join(outdir, name + ".json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    print(name, os.path.getsize(path), "bytes")


def small(name, version, plaintext, context=None):
    c = client(version)
    kwargs = {"Bucket": BUCKET, "Key": name, "Body": plaintext}
    if context:
        kwargs["EncryptionContext"] = context
    c.put_object(**kwargs)
    check_roundtrip(c, name, plaintext, context)
    body, meta = raw(name)
    save(name, {
        "name": name,
        "client": "amazon-s3-encryption-client-python 4.0.0",
        "format": version,
        "kms_key_id": key_id,
        "metadata": meta,
        "content_length": len(body),
        "ciphertext_b64": b64(body),
        "plaintext_b64": b64(plaintext),
        "data_key_b64": b64(data_key(meta)),
    })


def csv_rows(n_bytes):
    """Deterministic CSV; the Rust tests rebuild it with the same rule."""
    out = bytearray(b"id,value,name\n")
    i = 0
    while len(out) < n_bytes:
        out += f"{i},{(i * 7919) % 100003},name_{i}\n".encode()
        i += 1
    return bytes(out[:n_bytes])


def large(name, version, n_bytes):
    c = client(version)
    plaintext = csv_rows(n_bytes)
    c.upload_fileobj(io.BytesIO(plaintext), BUCKET, name)
    check_roundtrip(c, name, plaintext)
    body, meta = raw(name)
    assert len(body) == n_bytes + 16
    win = 4096
    offsets = [0, 5 * 1024 * 1024 - 1000, 8 * 1024 * 1024 - 2048, n_bytes - win]
    save(name, {
        "name": name,
        "client": "amazon-s3-encryption-client-python 4.0.0 (multipart upload_fileobj, 8 MiB parts)",
        "format": version,
        "kms_key_id": key_id,
        "metadata": meta,
        "content_length": len(body),
        "plaintext_rule": "csv_rows",
        "plaintext_len": n_bytes,
        "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
        "ciphertext_windows": [{"offset": o, "ciphertext_b64": b64(body[o:o + win])} for o in offsets],
        "tag_b64": b64(body[-16:]),
        "data_key_b64": b64(data_key(meta)),
    })


def parquet_bytes():
    n = 400
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "city": pa.array([["Oslo", "Lima", "Pune", "Kyiv"][i % 4] for i in range(n)]),
        "amount": pa.array([i * 1.25 for i in range(n)], pa.float64()),
        "ok": pa.array([i % 3 == 0 for i in range(n)]),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


small("v3_csv", "v3", csv_rows(5000))
small("v3_parquet", "v3", parquet_bytes())
small("v3_context_csv", "v3", csv_rows(777), {"department": "finance", "dataset": "orders"})
small("v3_empty", "v3", b"")
small("v2_csv_context", "v2", csv_rows(3001), {"department": "finance", "dataset": "orders"})
small("v2_parquet", "v2", parquet_bytes())
large("v2_multipart", "v2", 9 * 1024 * 1024 + 12345)
large("v3_multipart", "v3", 9 * 1024 * 1024 + 54321)
