//! The versioned contract of the S3 catalog connector.
//!
//! Messages are generated from `proto/catalog/s3/v1/*.proto` at build time with protox (no
//! system protoc). Every message also implements serde with the proto3 JSON mapping (pbjson),
//! which is what the CLI writes as JSON Lines: the CLI and the gRPC API share one schema.
#![allow(clippy::all, missing_docs)]

/// `catalog.s3.v1`: records, requests and the connector service.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/catalog.s3.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/catalog.s3.v1.serde.rs"));

    /// Encoded `FileDescriptorSet` of the contract (for gRPC server reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/catalog_s3_v1_descriptor.bin"));
}
