//! The checked-in gRPC code (`src/api/generated/`) must be exactly what the `.proto` files
//! generate. With `AMBIT_CODEGEN_WRITE=1` (what `cargo xtask codegen` sets) it is rewritten.

use std::path::{Path, PathBuf};

/// `bytes` fields holding IP addresses, shown as text in JSON dumps.
const BYTES_AS_TEXT: &[(&str, &str)] = &[
    ("ambit.v1.Workload.addresses", "ips"),
    ("ambit.v1.Service.vips", "ips"),
    ("ambit.v1.Endpoint.address", "ip"),
    ("ambit.v1.IpNet.address", "ip"),
    ("ambit.v1.LbEndpoint.address", "ip"),
    ("ambit.v1.SourceWorkload.addresses", "ips"),
];

const PROTOS: &[&str] =
    &["ambit/v1/discovery.proto", "ambit/v1/workload.proto", "ambit/v1/route.proto", "ambit/v1/ca.proto"];

#[test]
fn generated_code_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let includes = [root.join("proto")];
    let fds = protox::compile(PROTOS, &includes).expect("the .proto files compile");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("codegen");
    std::fs::create_dir_all(&out).unwrap();
    let mut builder = tonic_prost_build::configure()
        // Ordered maps: identical resources must encode to identical bytes (the control plane
        // compares encodings to find what changed).
        .btree_map(".")
        // Config dumps render these as JSON (see src/api/serde_bytes.rs for addresses).
        .type_attribute(".ambit.v1", "#[derive(serde::Serialize)]")
        .type_attribute(".ambit.v1", "#[serde(rename_all = \"camelCase\")]");
    for (path, with) in BYTES_AS_TEXT {
        builder =
            builder.field_attribute(path, format!("#[serde(serialize_with = \"crate::api::serde_bytes::{with}\")]"));
    }
    builder
        .build_server(true)
        .build_client(true)
        .build_transport(true)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("tonic-prost-build generates code");

    let generated = std::fs::read_to_string(out.join("ambit.v1.rs")).unwrap();
    let checked_in_path = root.join("src/api/generated/ambit.v1.rs");
    if std::env::var_os("AMBIT_CODEGEN_WRITE").is_some() {
        std::fs::write(&checked_in_path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the .proto files: run `cargo xtask codegen` and commit the result",
        checked_in_path.display()
    );
}
