# Inputs of the inventory-forwarder module. The three key setups of `s3-connector policy`:
#   same key:            report_key_arn = <source key A>, destination_encryption = "SSE-KMS"
#   different keys:      report_key_arn = null (key C created), destination_key_arn = null (key B created)
#   SSE-S3 destination:  report_encryption = "SSE-KMS", destination_encryption = "SSE-S3"

variable "source_buckets" {
  description = "Existing buckets to inventory and catalogue (same Region as the inventory bucket)."
  type        = list(string)
  validation {
    condition     = length(var.source_buckets) > 0
    error_message = "source_buckets must name at least one bucket."
  }
}

variable "source_kms_key_arns" {
  description = "Key ARNs of the SSE-KMS keys the source objects use (the connector decrypts through S3)."
  type        = list(string)
  default     = []
}

variable "sse_c_key_secret_arns" {
  description = "ARNs of the Secrets Manager secrets holding SSE-C keys the connector reads (its `secretsmanager:` SSE-C key sources)."
  type        = list(string)
  default     = []
}

variable "inventory_bucket_name" {
  description = "Bucket created for the inventory reports."
  type        = string
}

variable "inventory_prefix" {
  description = "Report prefix in the inventory bucket, without leading or trailing slash (empty: the root)."
  type        = string
  default     = "inventory"
  validation {
    condition     = !can(regex("(^/|/$|//|[*?])", var.inventory_prefix))
    error_message = "inventory_prefix must not start or end with '/', contain '//', '*' or '?'."
  }
}

variable "inventory_config_id" {
  description = "Inventory configuration id on every source bucket."
  type        = string
  default     = "catalog-connector"
}

variable "inventory_format" {
  description = "CSV, Parquet or ORC."
  type        = string
  default     = "Parquet"
  validation {
    condition     = contains(["CSV", "Parquet", "ORC"], var.inventory_format)
    error_message = "inventory_format must be CSV, Parquet or ORC."
  }
}

variable "inventory_frequency" {
  description = "Daily or Weekly."
  type        = string
  default     = "Daily"
  validation {
    condition     = contains(["Daily", "Weekly"], var.inventory_frequency)
    error_message = "inventory_frequency must be Daily or Weekly."
  }
}

variable "report_encryption" {
  description = "SSE-KMS (customer managed key; aws/s3 is not supported by inventory) or SSE-S3."
  type        = string
  default     = "SSE-KMS"
  validation {
    condition     = contains(["SSE-KMS", "SSE-S3"], var.report_encryption)
    error_message = "report_encryption must be SSE-KMS or SSE-S3."
  }
}

variable "report_key_arn" {
  description = "Existing key for the reports (same-key setup: the source key). null with SSE-KMS: a key is created. An existing key's policy is not edited: add the report_key_policy_statement output to it."
  type        = string
  default     = null
  validation {
    condition     = var.report_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.report_key_arn))
    error_message = "report_key_arn must be a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>), not an alias."
  }
}

variable "destination_bucket_name" {
  description = "Bucket created for the forwarded reports (the connector's destination)."
  type        = string
}

variable "destination_prefix" {
  description = "Prefix of the forwarded reports, without leading or trailing slash."
  type        = string
  default     = ""
  validation {
    condition     = !can(regex("(^/|/$|//|[*?])", var.destination_prefix))
    error_message = "destination_prefix must not start or end with '/', contain '//', '*' or '?'."
  }
}

variable "destination_encryption" {
  description = "SSE-KMS under key B (default) or SSE-S3."
  type        = string
  default     = "SSE-KMS"
  validation {
    condition     = contains(["SSE-KMS", "SSE-S3"], var.destination_encryption)
    error_message = "destination_encryption must be SSE-KMS or SSE-S3."
  }
}

variable "destination_key_arn" {
  description = "Existing key B. null with SSE-KMS: a key is created."
  type        = string
  default     = null
  validation {
    condition     = var.destination_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.destination_key_arn))
    error_message = "destination_key_arn must be a KMS key ARN, not an alias."
  }
}

variable "destination_bucket_key_enabled" {
  description = "S3 Bucket Key for the SSE-KMS copies."
  type        = bool
  default     = true
}

variable "function_name" {
  description = "Name of the forwarding Lambda."
  type        = string
  default     = "inventory-forwarder"
}

variable "lambda_zip_path" {
  description = "Path of bootstrap.zip built as lambda/README.md describes."
  type        = string
}

variable "lambda_architecture" {
  description = "arm64 or x86_64; must match the target the zip was built for."
  type        = string
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "connector_role_name" {
  description = "Role the connector assumes."
  type        = string
  default     = "catalog-connector"
}

variable "connector_trusted_principal" {
  description = "Vendor principal allowed to assume the connector role (account id, root ARN or role ARN)."
  type        = string
}

variable "connector_external_id" {
  description = "STS external ID the vendor generated for this customer."
  type        = string
  validation {
    condition     = length(var.connector_external_id) >= 2 && length(var.connector_external_id) <= 1224 && can(regex("^[A-Za-z0-9_+=,.@:/-]+$", var.connector_external_id))
    error_message = "connector_external_id must be 2-1224 characters of [A-Za-z0-9_+=,.@:/-]."
  }
}
