//! Where a port's XDP link is pinned on bpffs, so that it outlives the
//! process (the fail mode holds across a crash or an upgrade), and taking such
//! a pin over on the next start.

use super::AfXdpError;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The network namespace of the calling thread, as its nsfs inode number (the
/// same number `stat /run/netns/NAME` shows).
pub fn current_netns_id() -> std::io::Result<u64> {
    std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino())
}

/// The pin of a port's link: `<dir>/<netns inode>-<ifname>-<mode>`. bpffs
/// refuses names with a dot (EPERM: reserved), so a dot in the interface name
/// (a VLAN device such as `eth0.100`) is written as `%`.
pub(crate) fn pin_prefix(netns: u64, ifname: &str) -> String {
    format!("{netns}-{}-", ifname.replace('.', "%"))
}

/// An existing pin for this port (left by a crash, or by `LeaveAttached`).
/// Its path and what `mode` reads from the rest of the name (a name `mode`
/// refuses belongs to another port whose name extends this one's).
pub(crate) fn find_pin<T>(
    dir: &Path,
    prefix: &str,
    mode: impl Fn(&str) -> Option<T>,
) -> Option<(PathBuf, T)> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().find_map(|e| {
        let name = e.file_name();
        let tag = name.to_str()?.strip_prefix(prefix)?;
        Some((e.path(), mode(tag)?))
    })
}

/// Remove the pins left for a network namespace (e.g. after deleting it, when
/// the links are defunct). Returns how many were removed.
pub fn remove_pins(dir: &Path, netns: u64) -> usize {
    let prefix = format!("{netns}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Make sure `dir` exists on a bpffs, mounting bpffs on `/sys/fs/bpf` when the
/// directory is below it and nothing is mounted there yet.
pub(crate) fn ensure_pin_dir(ifname: &str, dir: &Path) -> Result<(), AfXdpError> {
    let pin_err = |reason: String| AfXdpError::Pin {
        ifname: ifname.to_string(),
        path: dir.to_path_buf(),
        reason,
    };
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs_mount(root) {
        mount_bpffs(root).map_err(|e| pin_err(format!("mount bpffs on /sys/fs/bpf: {e}")))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| pin_err(e.to_string()))
}

fn is_bpffs_mount(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, target, fstype) = (f.next(), f.next(), f.next());
        fstype == Some("bpf") && target.map(Path::new) == Some(path)
    })
}

#[allow(unsafe_code)]
fn mount_bpffs(target: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call; a
    // null `data` is allowed for bpffs. mount(2) only reads them.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
