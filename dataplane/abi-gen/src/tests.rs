use super::*;

fn committed_object() -> Vec<u8> {
    std::fs::read(object_path()).unwrap()
}

fn committed_header() -> String {
    std::fs::read_to_string(header_path()).unwrap()
}

#[test]
fn the_committed_abi_rs_is_what_the_committed_object_gives() {
    let generated = render(&committed_object()).unwrap();
    let committed = std::fs::read_to_string(abi_rs_path()).unwrap();
    if let Some(diff) = difference(&committed, &generated) {
        panic!("abi.rs is stale at {diff}\nrun dataplane/bpf/build.sh");
    }
}

#[test]
fn every_shared_constant_of_the_header_reaches_the_btf() {
    let btf = Btf::parse(&committed_object()).unwrap();
    assert_eq!(
        header_problems(&committed_header(), &btf).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn a_stale_line_is_named_with_both_versions() {
    let generated = render(&committed_object()).unwrap();
    let edited = generated.replace(
        "pub const BULKHEAD_FAIL_OPEN: u32 = 1;",
        "pub const BULKHEAD_FAIL_OPEN: u32 = 2;",
    );
    let diff = difference(&edited, &generated).unwrap();
    assert!(diff.contains("= 2;") && diff.contains("= 1;"), "{diff}");
    let shorter = generated.lines().take(10).collect::<Vec<_>>().join("\n");
    assert!(difference(&shorter, &generated)
        .unwrap()
        .contains("(end of file)"));
    assert_eq!(difference(&generated, &generated), None);
}

#[test]
fn a_define_or_an_unanchored_enum_in_the_header_is_refused() {
    let btf = Btf::parse(&committed_object()).unwrap();
    let header = format!(
        "{}\n#define BULKHEAD_NEW_LIMIT 8\nenum bulkhead_new {{\n\tBULKHEAD_NEW = 1,\n}};\n",
        committed_header()
    );
    let problems = header_problems(&header, &btf).unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("BULKHEAD_NEW_LIMIT"));
    assert!(problems[1].contains("enum bulkhead_new "));
}

#[test]
fn the_generated_file_has_every_map_and_constant_the_loader_uses() {
    let generated = render(&committed_object()).unwrap();
    for needle in [
        "pub const BULKHEAD_XDP: &str = \"bulkhead_xdp\";",
        "name: \"bulkhead_flows\",\n        map_type: MapType::LruHash,\n        key_size: 44,",
        "pub const BULKHEAD_MAX_QUEUES: u32 = 64;",
        "pub const BULKHEAD_TIER_COUNT: u32 = 4;",
    ] {
        assert!(generated.contains(needle), "{needle} missing:\n{generated}");
    }
}

#[test]
fn a_malformed_object_is_an_error_not_a_panic() {
    assert!(matches!(render(b"not an ELF"), Err(AbiError::Elf(_))));
    let mut object = committed_object();
    object.truncate(object.len() / 2);
    assert!(render(&object).is_err());
}
