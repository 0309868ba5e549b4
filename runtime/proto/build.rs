//! Compiles `proto/weir.proto` with tonic (needs `protoc`: Debian's protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/weir.proto");
    tonic_prost_build::configure().compile_protos(&["proto/weir.proto"], &["proto"])?;
    Ok(())
}
