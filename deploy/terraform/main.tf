# Inventory on the source buckets, the inventory bucket, the forwarding Lambda and its
# destination bucket, and the connector role. IAM statements (Sids and actions) mirror
# `s3-connector policy` (domain/src/policy); lambda/tests/deploy.rs checks that they do.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  s3_via     = "s3.${local.region}.${data.aws_partition.current.dns_suffix}"

  report_is_kms      = var.report_encryption == "SSE-KMS"
  create_report_key  = local.report_is_kms && var.report_key_arn == null
  report_key_arn     = local.report_is_kms ? coalesce(var.report_key_arn, try(aws_kms_key.report[0].arn, null)) : null
  dest_is_kms        = var.destination_encryption == "SSE-KMS"
  create_dest_key    = local.dest_is_kms && var.destination_key_arn == null
  dest_key_arn       = local.dest_is_kms ? coalesce(var.destination_key_arn, try(aws_kms_key.destination[0].arn, null)) : null
  source_bucket_arns = [for b in var.source_buckets : "arn:${local.partition}:s3:::${b}"]

  inventory_bucket_arn  = "arn:${local.partition}:s3:::${var.inventory_bucket_name}"
  inventory_objects_arn = var.inventory_prefix == "" ? "${local.inventory_bucket_arn}/*" : "${local.inventory_bucket_arn}/${var.inventory_prefix}/*"
  dest_bucket_arn       = "arn:${local.partition}:s3:::${var.destination_bucket_name}"
  dest_objects_arn      = var.destination_prefix == "" ? "${local.dest_bucket_arn}/*" : "${local.dest_bucket_arn}/${var.destination_prefix}/*"
  connector_key_arns    = distinct(concat(var.source_kms_key_arns, local.report_is_kms ? [local.report_key_arn] : []))

  # S3 delivers inventory on behalf of the source buckets: SourceAccount/SourceArn stop another
  # account's inventory from using the key or the bucket (confused deputy).
  inventory_delivery_condition = {
    StringEquals = { "aws:SourceAccount" = local.account_id }
    ArnLike      = { "aws:SourceArn" = local.source_bucket_arns }
  }
  inventory_key_statement = {
    Sid       = "AllowS3InventoryToEncryptReports"
    Effect    = "Allow"
    Principal = { Service = "s3.amazonaws.com" }
    Action    = "kms:GenerateDataKey"
    Resource  = "*"
    Condition = local.inventory_delivery_condition
  }
  key_admin_statement = {
    Sid       = "EnableIamPolicies"
    Effect    = "Allow"
    Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
    Action    = "kms:*"
    Resource  = "*"
  }
}

# --- keys -------------------------------------------------------------------------------------

resource "aws_kms_key" "report" {
  count               = local.create_report_key ? 1 : 0
  description         = "S3 Inventory reports of the catalogued buckets"
  enable_key_rotation = true
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.key_admin_statement, local.inventory_key_statement]
  })
}

resource "aws_kms_key" "destination" {
  count               = local.create_dest_key ? 1 : 0
  description         = "Key B: forwarded inventory reports in the connector's destination bucket"
  enable_key_rotation = true
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.key_admin_statement]
  })
}

# --- inventory bucket and the inventory configurations -------------------------------------

resource "aws_s3_bucket" "inventory" {
  bucket = var.inventory_bucket_name
}

resource "aws_s3_bucket_ownership_controls" "inventory" {
  bucket = aws_s3_bucket.inventory.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "inventory" {
  bucket                  = aws_s3_bucket.inventory.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "inventory" {
  bucket = aws_s3_bucket.inventory.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.report_is_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.report_key_arn
    }
    bucket_key_enabled = local.report_is_kms
  }
}

resource "aws_s3_bucket_policy" "inventory" {
  bucket = aws_s3_bucket.inventory.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AllowS3InventoryDelivery"
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "s3:PutObject"
      Resource  = local.inventory_objects_arn
      Condition = {
        StringEquals = {
          "aws:SourceAccount" = local.account_id
          "s3:x-amz-acl"      = "bucket-owner-full-control"
        }
        ArnLike = { "aws:SourceArn" = local.source_bucket_arns }
      }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.inventory]
}

# A standalone resource: existing source buckets need no import (unlike CloudFormation).
resource "aws_s3_bucket_inventory" "source" {
  for_each                 = toset(var.source_buckets)
  bucket                   = each.value
  name                     = var.inventory_config_id
  included_object_versions = "Current"
  optional_fields          = ["Size", "LastModifiedDate", "ETag", "StorageClass", "EncryptionStatus", "BucketKeyStatus", "IsMultipartUploaded", "ChecksumAlgorithm"]

  schedule {
    frequency = var.inventory_frequency
  }

  destination {
    bucket {
      bucket_arn = aws_s3_bucket.inventory.arn
      account_id = local.account_id
      format     = var.inventory_format
      prefix     = var.inventory_prefix == "" ? null : var.inventory_prefix
      encryption {
        dynamic "sse_kms" {
          for_each = local.report_is_kms ? [local.report_key_arn] : []
          content {
            key_id = sse_kms.value
          }
        }
        dynamic "sse_s3" {
          for_each = local.report_is_kms ? [] : [true]
          content {}
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_policy.inventory]
}

# --- destination bucket ---------------------------------------------------------------------

resource "aws_s3_bucket" "destination" {
  bucket = var.destination_bucket_name
}

resource "aws_s3_bucket_ownership_controls" "destination" {
  bucket = aws_s3_bucket.destination.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "destination" {
  bucket                  = aws_s3_bucket.destination.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "destination" {
  bucket = aws_s3_bucket.destination.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.dest_is_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.dest_key_arn
    }
    bucket_key_enabled = local.dest_is_kms
  }
}

# --- the forwarding Lambda --------------------------------------------------------------------

resource "aws_iam_role" "forwarder" {
  name = var.function_name
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "forwarder" {
  name = "inventory-forwarder"
  role = aws_iam_role.forwarder.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Sid      = "ReadInventoryReports"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = local.inventory_objects_arn
      }],
      local.report_is_kms ? [{
        Sid       = "DecryptInventoryReports"
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = local.report_key_arn
        Condition = { StringEquals = { "kms:ViaService" = local.s3_via } }
      }] : [],
      [
        {
          # GetObject: the idempotency check and the latest pointer read back what was written.
          Sid      = "WriteForwardedReports"
          Effect   = "Allow"
          Action   = ["s3:GetObject", "s3:PutObject"]
          Resource = local.dest_objects_arn
        },
        {
          # HeadObject needs ListBucket to get 404 (not 403) for a copy that is not there yet.
          Sid      = "CheckForwardedReports"
          Effect   = "Allow"
          Action   = "s3:ListBucket"
          Resource = local.dest_bucket_arn
        },
      ],
      local.dest_is_kms ? [{
        Sid       = "EncryptForwardedReports"
        Effect    = "Allow"
        Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = local.dest_key_arn
        Condition = { StringEquals = { "kms:ViaService" = local.s3_via } }
      }] : [],
      [
        {
          Sid      = "CreateLogGroup"
          Effect   = "Allow"
          Action   = "logs:CreateLogGroup"
          Resource = "arn:${local.partition}:logs:${local.region}:${local.account_id}:*"
        },
        {
          Sid      = "WriteLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${var.function_name}:*"
        },
      ],
    )
  })
}

resource "aws_cloudwatch_log_group" "forwarder" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = 90
}

resource "aws_lambda_function" "forwarder" {
  function_name    = var.function_name
  description      = "Forwards completed S3 Inventory reports into the connector's destination bucket"
  role             = aws_iam_role.forwarder.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  memory_size      = 256
  timeout          = 60

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.forwarder.name
  }

  environment {
    variables = merge(
      {
        DEST_BUCKET = aws_s3_bucket.destination.id
        DEST_PREFIX = var.destination_prefix
        DEST_SSE    = local.dest_is_kms ? "aws:kms" : "AES256"
      },
      local.dest_is_kms ? {
        DEST_KMS_KEY_ARN        = local.dest_key_arn
        DEST_BUCKET_KEY_ENABLED = tostring(var.destination_bucket_key_enabled)
      } : {},
    )
  }
}

# Retryable failures return an error; Lambda retries twice, over at most six hours.
resource "aws_lambda_function_event_invoke_config" "forwarder" {
  function_name                = aws_lambda_function.forwarder.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 21600
}

resource "aws_lambda_permission" "inventory_bucket" {
  statement_id   = "AllowInventoryBucketNotifications"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.forwarder.arn
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.inventory.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "inventory" {
  bucket = aws_s3_bucket.inventory.id
  lambda_function {
    lambda_function_arn = aws_lambda_function.forwarder.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = var.inventory_prefix == "" ? null : "${var.inventory_prefix}/"
    filter_suffix       = "manifest.checksum"
  }
  depends_on = [aws_lambda_permission.inventory_bucket]
}

# --- the connector role -------------------------------------------------------------------------

resource "aws_iam_role" "connector" {
  name                 = var.connector_role_name
  max_session_duration = 3600
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "TrustVendorWithExternalId"
      Effect    = "Allow"
      Principal = { AWS = var.connector_trusted_principal }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = var.connector_external_id } }
    }]
  })
}

resource "aws_iam_role_policy" "connector" {
  name = "catalog-connector"
  role = aws_iam_role.connector.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "ListAndInspectSourceBuckets"
          Effect   = "Allow"
          Action   = ["s3:GetBucketLocation", "s3:GetEncryptionConfiguration", "s3:GetInventoryConfiguration", "s3:ListBucket"]
          Resource = local.source_bucket_arns
        },
        {
          Sid      = "ReadSourceObjects"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = [for arn in local.source_bucket_arns : "${arn}/*"]
        },
        {
          Sid      = "ListInventoryDestination"
          Effect   = "Allow"
          Action   = ["s3:GetBucketLocation", "s3:ListBucket"]
          Resource = local.inventory_bucket_arn
        },
        {
          Sid      = "ReadInventoryReports"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = local.inventory_objects_arn
        },
      ],
      [for statement in [
        {
          Sid       = "DecryptViaS3"
          Effect    = "Allow"
          Action    = "kms:Decrypt"
          Resource  = local.connector_key_arns
          Condition = { StringEquals = { "kms:ViaService" = local.s3_via } }
        },
        {
          Sid      = "DescribeKeys"
          Effect   = "Allow"
          Action   = "kms:DescribeKey"
          Resource = local.connector_key_arns
        },
      ] : statement if length(local.connector_key_arns) > 0],
      # SSE-C keys kept in Secrets Manager are read by the connector itself.
      length(var.sse_c_key_secret_arns) > 0 ? [{
        Sid      = "ReadSseCKeySecrets"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = var.sse_c_key_secret_arns
      }] : [],
      # Beyond `s3-connector policy`: incremental extraction reads the forwarded copies.
      [
        {
          Sid      = "ReadForwardedReports"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = local.dest_objects_arn
        },
        {
          Sid      = "ListForwardedReports"
          Effect   = "Allow"
          Action   = "s3:ListBucket"
          Resource = local.dest_bucket_arn
        },
      ],
      local.dest_is_kms ? [{
        Sid       = "DecryptForwardedReports"
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = local.dest_key_arn
        Condition = { StringEquals = { "kms:ViaService" = local.s3_via } }
      }] : [],
    )
  })
}
