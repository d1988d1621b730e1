//! The protobuf code in `src/proto/` is generated from `proto/` and checked in, so that
//! normal builds need neither protoc nor protox. This test regenerates it and fails when
//! the checked-in copy is stale; run it with `UPDATE_PROTO=1` to refresh the copy.

use std::path::PathBuf;

#[test]
fn generated_protobuf_code_is_fresh() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proto = root.join("proto");
    let fds = protox::compile(["switchboard/bus/v1/bus.proto"], [&proto]).expect("proto/ compiles");
    let out = tempfile::tempdir().expect("tempdir");
    prost_build::Config::new()
        .out_dir(out.path())
        .btree_map(["."])
        .compile_fds(fds)
        .expect("prost generates code");
    let generated =
        std::fs::read_to_string(out.path().join("switchboard.bus.v1.rs")).expect("generated file");
    let checked_in_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/proto/switchboard.bus.v1.rs");
    if std::env::var_os("UPDATE_PROTO").is_some() {
        std::fs::write(&checked_in_path, &generated).expect("write");
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "src/proto/switchboard.bus.v1.rs is stale: run `UPDATE_PROTO=1 cargo test -p bus --test proto_fresh`"
    );
}
