//! `bulkhead-abi-gen`: write `dataplane/src/io/afxdp/abi.rs` from the
//! committed `dataplane/bpf/bulkhead.o`; with `--check`, fail (exit 1) when the
//! committed file is not what the object gives, or the header keeps a shared
//! constant out of the BTF.

use std::process::ExitCode;

fn run(check: bool) -> Result<Option<String>, String> {
    let read =
        |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    let object = read(abi_gen::object_path())?;
    let header = String::from_utf8(read(abi_gen::header_path())?)
        .map_err(|_| "bulkhead.h is not UTF-8".to_string())?;
    let fail = |e: abi_gen::AbiError| format!("bulkhead.o: {e}");
    let generated = abi_gen::render(&object).map_err(fail)?;
    let btf = abi_gen::btf::Btf::parse(&object).map_err(fail)?;
    let problems = abi_gen::header_problems(&header, &btf).map_err(fail)?;
    if !problems.is_empty() {
        return Err(format!("bulkhead.h: {}", problems.join("; ")));
    }
    let path = abi_gen::abi_rs_path();
    if !check {
        std::fs::write(&path, generated).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(None);
    }
    let committed =
        String::from_utf8(read(path)?).map_err(|_| "abi.rs is not UTF-8".to_string())?;
    Ok(abi_gen::difference(&committed, &generated))
}

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("usage: bulkhead-abi-gen [--check] (unknown argument {other:?})");
            return ExitCode::from(2);
        }
    };
    match run(check) {
        Ok(None) if check => {
            println!("abi.rs is what bulkhead.o gives");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("wrote {}", abi_gen::abi_rs_path().display());
            ExitCode::SUCCESS
        }
        Ok(Some(diff)) => {
            eprintln!(
                "dataplane/src/io/afxdp/abi.rs is stale at {diff}\n\
                 run dataplane/bpf/build.sh (it rebuilds bulkhead.o and abi.rs)"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bulkhead-abi-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
