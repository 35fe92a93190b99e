//! What this host lets a program or a test do: root, CI, the tools a test
//! drives. One answer for every crate's tests that need root or namespaces:
//! outside CI they say why they skip; in CI (`CI=true` or `CI=1`, as `.ci/run`
//! sets) a missing privilege or tool fails them instead of passing unchecked.

use std::process::Command;

/// Whether this runs in CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the effective user is root.
#[allow(unsafe_code)]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The first of `tools` not on the PATH, as a reason.
pub fn missing_tool(tools: &[&str]) -> Option<String> {
    tools.iter().find_map(|tool| {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        (!found).then(|| format!("{tool} is not installed"))
    })
}

/// Whether a test that cannot run for `unavailable` (if set) should go on:
/// outside CI it prints why and returns false; in CI it panics.
pub fn can_run(test: &str, unavailable: Option<String>) -> bool {
    let Some(why) = unavailable else {
        return true;
    };
    assert!(!in_ci(), "{test} must run in CI, but: {why}");
    eprintln!("skipping {test}: {why}");
    false
}

/// [`can_run`] for a test that needs root and `tools`.
pub fn root_with(test: &str, tools: &[&str]) -> bool {
    let why = if is_root() {
        missing_tool(tools)
    } else {
        Some("not root".to_string())
    };
    can_run(test, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_and_a_present_one_is_not() {
        assert_eq!(missing_tool(&["sh"]), None);
        let why = missing_tool(&["sh", "no-such-tool-bulkhead"]).expect("missing");
        assert!(why.contains("no-such-tool-bulkhead"), "{why}");
        assert!(can_run("a test", None));
    }
}
