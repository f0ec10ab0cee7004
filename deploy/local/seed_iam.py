"""Sets up an IAM-enforcing moto (emulators.sh start moto-iam) for permission tests.

moto in IAM mode lets the first INITIAL_NO_AUTH_ACTION_COUNT requests through unchecked. This
script uses them to create:
  - bucket `locked-estate` with one CSV object;
  - user `catalog-no-list` whose policy allows s3:GetObject, s3:GetEncryptionConfiguration and
    sts:GetCallerIdentity but not s3:ListBucket;
  - for `s3-connector check`: bucket `check-estate` (SSE-KMS default under a fresh key, one
    object, an S3 Inventory configuration delivering SSE-KMS reports to `check-inventory`, a
    bucket policy that denies unencrypted uploads), a key policy with the inventory delivery
    statement, user `catalog-vendor` (may only call sts:AssumeRole and GetCallerIdentity) and
    three roles it may assume:
      * `catalog-reader`   trust requires ExternalId `check-ext-id-42`; every permission `check` needs;
      * `catalog-no-list-role`  same trust; everything but s3:ListBucket;
      * `catalog-open`     trusts the vendor without any ExternalId condition (confused deputy);
      * `catalog-sampler`  a sampling user's role: trusts the reader's session with ExternalId
                           `sampling-ext-id-7`, may only read objects;
then spends the remaining free requests so that everything after it is checked, and prints a
JSON document with the access keys (test-only credentials of a local emulator).
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


CHECK_BUCKET = "check-estate"
CHECK_DESTINATION = "check-inventory"
EXTERNAL_ID = "check-ext-id-42"
SAMPLING_EXTERNAL_ID = "sampling-ext-id-7"


def connector_policy(account, with_list=True):
    s3_bucket_actions = ["s3:GetBucketLocation", "s3:GetEncryptionConfiguration", "s3:GetInventoryConfiguration",
                         "s3:GetBucketPolicy"]
    if with_list:
        s3_bucket_actions.append("s3:ListBucket")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": s3_bucket_actions,
             "Resource": [f"arn:aws:s3:::{CHECK_BUCKET}", f"arn:aws:s3:::{CHECK_DESTINATION}"]},
            {"Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [f"arn:aws:s3:::{CHECK_BUCKET}/*", f"arn:aws:s3:::{CHECK_DESTINATION}/*"]},
            # moto evaluates KMS actions against Resource "*" (its KMS handler names no resource), so
            # a statement scoped to the key ARN never matches there; AWS would take `key_arn`.
            {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GetKeyPolicy"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["sts:GetCallerIdentity"], "Resource": "*"},
            # The connector acts for sampling users by assuming their roles.
            {"Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": f"arn:aws:iam::{account}:role/catalog-sampler"},
        ],
    }


def seed_check(kw, account):
    """The `check` scenario (see the module docstring); returns what the tests need."""
    s3 = boto3.client("s3", **kw)
    iam = boto3.client("iam", **kw)
    kms = boto3.client("kms", **kw)
    key_arn = kms.create_key(Description="check-estate key")["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "AllowS3InventoryToEncryptReports", "Effect": "Allow",
             "Principal": {"Service": "s3.amazonaws.com"}, "Action": "kms:GenerateDataKey", "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceAccount": account},
                           "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{CHECK_BUCKET}"}}},
        ],
    }))
    for bucket in (CHECK_BUCKET, CHECK_DESTINATION):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_encryption(Bucket=CHECK_BUCKET, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
         "BucketKeyEnabled": False}]})
    s3.put_object(Bucket=CHECK_BUCKET, Key="data/part-0.csv", Body=b"id,name\n1,a\n",
                  ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    s3.put_bucket_inventory_configuration(Bucket=CHECK_BUCKET, Id="daily", InventoryConfiguration={
        "Id": "daily", "IsEnabled": True, "IncludedObjectVersions": "Current",
        "Schedule": {"Frequency": "Daily"},
        "Destination": {"S3BucketDestination": {
            "Bucket": f"arn:aws:s3:::{CHECK_DESTINATION}", "Format": "CSV", "Prefix": "inventory",
            "AccountId": account, "Encryption": {"SSEKMS": {"KeyId": key_arn}}}},
    })
    s3.put_bucket_policy(Bucket=CHECK_BUCKET, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "DenyUnencryptedUploads", "Effect": "Deny", "Principal": "*",
                       "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{CHECK_BUCKET}/*",
                       "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}],
    }))

    iam.create_user(UserName="catalog-vendor")
    vendor_arn = iam.get_user(UserName="catalog-vendor")["User"]["Arn"]
    iam.put_user_policy(UserName="catalog-vendor", PolicyName="assume", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{account}:role/catalog-*"},
                      {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}],
    }))
    vendor_key = iam.create_access_key(UserName="catalog-vendor")["AccessKey"]

    def trust(with_external_id):
        statement = {"Effect": "Allow", "Principal": {"AWS": vendor_arn}, "Action": "sts:AssumeRole"}
        if with_external_id:
            statement["Condition"] = {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    roles = {}
    for name, with_external_id, with_list in (("catalog-reader", True, True), ("catalog-no-list-role", True, False),
                                              ("catalog-open", False, True)):
        roles[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(with_external_id))["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="connector",
                            PolicyDocument=json.dumps(connector_policy(account, with_list)))
    # The sampling user's role: trusts the connector's role session (the connector assumes it on the
    # user's behalf, with the platform's ExternalId) and allows reading objects only.
    reader_session = f"arn:aws:sts::{account}:assumed-role/catalog-reader/s3-connector"
    sampler_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": [vendor_arn, reader_session]}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": SAMPLING_EXTERNAL_ID}}}]}
    roles["catalog-sampler"] = iam.create_role(RoleName="catalog-sampler",
                                               AssumeRolePolicyDocument=json.dumps(sampler_trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="catalog-sampler", PolicyName="sample", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{CHECK_BUCKET}/*"},
                      {"Effect": "Allow", "Action": ["kms:Decrypt", "sts:GetCallerIdentity"], "Resource": "*"}],
    }))
    return {"bucket": CHECK_BUCKET, "sampling_external_id": SAMPLING_EXTERNAL_ID, "inventory_bucket": CHECK_DESTINATION, "key_arn": key_arn,
            "external_id": EXTERNAL_ID, "vendor_access_key_id": vendor_key["AccessKeyId"],
            "vendor_secret_access_key": vendor_key["SecretAccessKey"], "vendor_arn": vendor_arn,
            "roles": roles}


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
    account = user_arn.split(":")[4]
    check = seed_check(kw, account)

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
                   "user_arn": user_arn, "check": check}, f)
    print(f"moto-iam: bucket {BUCKET}, user {user_arn} (no s3:ListBucket); credentials -> {a.out}")


if __name__ == "__main__":
    main()
