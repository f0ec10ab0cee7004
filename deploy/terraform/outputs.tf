output "forwarder_function_arn" {
  value = aws_lambda_function.forwarder.arn
}

output "inventory_bucket" {
  value = aws_s3_bucket.inventory.id
}

output "destination_bucket" {
  value = aws_s3_bucket.destination.id
}

output "destination_key_arn" {
  value = local.dest_key_arn
}

output "report_key_arn" {
  value = local.report_key_arn
}

output "connector_role_arn" {
  value = aws_iam_role.connector.arn
}

output "report_key_policy_statement" {
  description = "When report_key_arn names an existing key: add this statement to its key policy so S3 Inventory can encrypt reports with it."
  value       = local.report_is_kms && !local.create_report_key ? jsonencode(local.inventory_key_statement) : null
}
