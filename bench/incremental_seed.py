"""Seeds a two-day pair of N-object CSV inventory reports into moto (for a timing figure)."""
import gzip, hashlib, io, json, sys, boto3
endpoint, n = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
dest, src = "bench-inc-dest", "bench-inc-src"
for b in (dest, src):
    try: s3.create_bucket(Bucket=b)
    except Exception: pass
def report(stamp, created, rows, parts=4):
    entries = []
    per = (len(rows) + parts - 1) // parts
    for i in range(parts):
        text = "".join(rows[i*per:(i+1)*per]).encode()
        data = gzip.compress(text)
        key = f"inv/{src}/daily/data/{stamp}-{i}.csv.gz"
        s3.put_object(Bucket=dest, Key=key, Body=data)
        entries.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    m = json.dumps({"sourceBucket": src, "destinationBucket": f"arn:aws:s3:::{dest}", "version": "2016-11-30",
        "creationTimestamp": str(created), "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, EncryptionStatus", "files": entries}).encode()
    s3.put_object(Bucket=dest, Key=f"inv/{src}/daily/{stamp}/manifest.json", Body=m)
    s3.put_object(Bucket=dest, Key=f"inv/{src}/daily/{stamp}/manifest.checksum", Body=hashlib.md5(m).hexdigest().encode())
def row(i, etag="e", enc="SSE-S3"):
    return f'"{src}","table{i % 50}/dt%3D2024-01-{1 + i % 28:02d}/part+{i:08d}.parquet","{1000 + i}","2024-01-01T00:00:00.000Z","{etag}","STANDARD","{enc}"\n'
day1 = [row(i) for i in range(n)]
day2 = [row(i, "e2", "SSE-KMS") if i % 100 == 0 else row(i) for i in range(n // 100, n + n // 100)]
report("2024-01-01T00-00Z", 1704067200000, day1)
report("2024-01-02T00-00Z", 1704153600000, day2)
print("seeded", n)
