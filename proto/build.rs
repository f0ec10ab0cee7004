//! Compiles the .proto contract with protox (pure Rust: no system `protoc` needed), then
//! generates prost messages, tonic service stubs and pbjson (proto3 JSON mapping) serde impls.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/catalog/s3/v1/records.proto", "proto/catalog/s3/v1/service.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("catalog_s3_v1_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;

    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&protos, &["proto"])?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new().register_descriptors(&descriptor_bytes)?.build(&[".catalog.s3.v1"])?;
    Ok(())
}
