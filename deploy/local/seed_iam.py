"""Sets up an IAM-enforcing moto (emulators.sh start moto-iam) for permission tests.

moto in IAM mode lets the first INITIAL_NO_AUTH_ACTION_COUNT requests through unchecked. This
script uses them to create:
  - bucket `locked-estate` with one CSV object;
  - user `catalog-no-list` whose policy allows s3:GetObject, s3:GetEncryptionConfiguration and
    sts:GetCallerIdentity but not s3:ListBucket;
then spends the remaining free requests so that everything after it is checked, and prints a
JSON document with the user's access key (test-only credentials of a local emulator).
"""
import argparse
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

BUCKET = "locked-estate"
USER = "catalog-no-list"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetEncryptionConfiguration"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["sts:GetCallerIdentity"], "Resource": "*"},
    ],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    kw = dict(endpoint_url=a.endpoint, region_name=a.region, aws_access_key_id="test", aws_secret_access_key="test", config=cfg)
    s3 = boto3.client("s3", **kw)
    iam = boto3.client("iam", **kw)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="data/part-0.csv", Body=b"id,name\n1,a\n2,b\n")
    iam.create_user(UserName=USER)
    iam.put_user_policy(UserName=USER, PolicyName="no-list", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    user_arn = iam.get_user(UserName=USER)["User"]["Arn"]

    # Spend the remaining free requests: once an unknown key is refused, auth is enforced.
    bogus = boto3.client("s3", endpoint_url=a.endpoint, region_name=a.region, aws_access_key_id="AKIAUNKNOWNUNKNOWN00",
                         aws_secret_access_key="x", config=cfg)
    for _ in range(10_000):
        try:
            bogus.list_buckets()
        except ClientError as e:
            if e.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch"):
                break
            raise
    else:
        sys.exit("moto-iam never started enforcing authentication")

    with open(a.out, "w") as f:
        json.dump({"bucket": BUCKET, "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"],
                   "user_arn": user_arn}, f)
    print(f"moto-iam: bucket {BUCKET}, user {user_arn} (no s3:ListBucket); credentials -> {a.out}")


if __name__ == "__main__":
    main()
