//! The ethtool ioctls the ports need (include/uapi/linux/ethtool.h): channels,
//! driver name and the feature bits. Every request is a
//! byte buffer starting with the command word; the kernel copies it in and
//! out, so no alignment is assumed.

use super::sys::ifreq_socket;
use std::io;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// Run the ethtool request in `buf` (command word first) on `ifname`.
#[allow(unsafe_code)]
fn ethtool(ifname: &str, buf: &mut [u8]) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let (fd, mut req) = ifreq_socket(ifname)?;
    req.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: SIOCETHTOOL reads the name from `req` and the request from
    // `buf`, which is as long as the command's structure with the counts the
    // caller wrote into it; it writes within the same bounds. `buf` outlives
    // the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn word(buf: &[u8], i: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&buf[4 * i..4 * i + 4]);
    u32::from_ne_bytes(w)
}

fn put(buf: &mut [u8], i: usize, v: u32) {
    buf[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
}

/// A request buffer of `len` bytes starting with `cmd`.
fn request(cmd: u32, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len.max(4)];
    put(&mut buf, 0, cmd);
    buf
}

/// The receive queues `ifname` uses now (ETHTOOL_GCHANNELS: rx plus combined
/// channels); 1 for a device that does not report channels.
pub(crate) fn rx_queues(ifname: &str) -> io::Result<u32> {
    // struct ethtool_channels: cmd and eight counts.
    let mut buf = request(ETHTOOL_GCHANNELS, 9 * 4);
    match ethtool(ifname, &mut buf) {
        Ok(_) => Ok((word(&buf, 5) + word(&buf, 8)).max(1)),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(1),
        Err(e) => Err(e),
    }
}

/// The name of the driver behind `ifname` ("veth", "mlx5_core" ...).
pub(crate) fn driver(ifname: &str) -> io::Result<String> {
    // struct ethtool_drvinfo: cmd, then driver[32], and 188 more bytes.
    let mut buf = request(ETHTOOL_GDRVINFO, 196);
    ethtool(ifname, &mut buf)?;
    Ok(c_string(&buf[4..4 + 32]))
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The number of strings in set `set` (0 when the device has none).
fn set_len(ifname: &str, set: u32) -> io::Result<usize> {
    // struct ethtool_sset_info: cmd, reserved, u64 sset_mask, u32 data[].
    let mut buf = request(ETHTOOL_GSSET_INFO, 16 + 4);
    buf[8..16].copy_from_slice(&(1u64 << set).to_ne_bytes());
    ethtool(ifname, &mut buf)?;
    let mut mask = [0; 8];
    mask.copy_from_slice(&buf[8..16]);
    if u64::from_ne_bytes(mask) & (1 << set) == 0 {
        return Ok(0);
    }
    Ok(word(&buf, 4) as usize)
}

/// The `n` names of string set `set`.
fn strings(ifname: &str, set: u32, n: usize) -> io::Result<Vec<String>> {
    // struct ethtool_gstrings: cmd, string_set, len, data[len * 32].
    let mut buf = request(ETHTOOL_GSTRINGS, 12 + n * ETH_GSTRING_LEN);
    put(&mut buf, 1, set);
    put(&mut buf, 2, n as u32);
    ethtool(ifname, &mut buf)?;
    let got = (word(&buf, 2) as usize).min(n);
    Ok(buf[12..12 + got * ETH_GSTRING_LEN]
        .chunks(ETH_GSTRING_LEN)
        .map(c_string)
        .collect())
}

/// A device's feature bits (ETHTOOL_GFEATURES) with their names.
#[derive(Debug)]
pub(crate) struct Features {
    names: Vec<String>,
    /// Per block of 32 bits: available (changeable), requested, active,
    /// never_changed.
    blocks: Vec<[u32; 4]>,
}

impl Features {
    pub(crate) fn read(ifname: &str) -> io::Result<Features> {
        let n = set_len(ifname, ETH_SS_FEATURES)?;
        let names = strings(ifname, ETH_SS_FEATURES, n)?;
        let size = n.div_ceil(32);
        // struct ethtool_gfeatures: cmd, size, blocks[size] of four words.
        let mut buf = request(ETHTOOL_GFEATURES, 8 + 16 * size);
        put(&mut buf, 1, size as u32);
        ethtool(ifname, &mut buf)?;
        let blocks = (0..size)
            .map(|b| std::array::from_fn(|w| word(&buf, 2 + 4 * b + w)))
            .collect();
        Ok(Features { names, blocks })
    }

    /// The bit of feature `name`.
    pub(crate) fn bit(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn flag(&self, bit: usize, which: usize) -> bool {
        self.blocks
            .get(bit / 32)
            .is_some_and(|b| b[which] & (1 << (bit % 32)) != 0)
    }

    pub(crate) fn active(&self, bit: usize) -> bool {
        self.flag(bit, 2)
    }

    /// Whether the driver lets the feature be switched (not "[fixed]").
    pub(crate) fn changeable(&self, bit: usize) -> bool {
        self.flag(bit, 0) && !self.flag(bit, 3)
    }

    /// Request `bits` off on `ifname` (ETHTOOL_SFEATURES), leaving the rest.
    pub(crate) fn clear(&self, ifname: &str, bits: &[usize]) -> io::Result<()> {
        let size = self.blocks.len();
        // struct ethtool_sfeatures: cmd, size, blocks[size] of valid, requested.
        let mut buf = request(ETHTOOL_SFEATURES, 8 + 8 * size);
        put(&mut buf, 1, size as u32);
        for &bit in bits {
            let valid = 2 + 2 * (bit / 32);
            let v = word(&buf, valid) | 1 << (bit % 32);
            put(&mut buf, valid, v);
        }
        ethtool(ifname, &mut buf).map(|_| ())
    }
}

/// The name of interface `index` in this network namespace.
#[allow(unsafe_code)]
pub(crate) fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: `buf` has the IFNAMSIZ bytes if_indextoname writes at most.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_features_and_a_driver_name_of_its_own() {
        let f = Features::read("lo").expect("lo's features");
        let bit = f.bit("loopback").expect("the loopback feature is named");
        assert!(f.active(bit), "lo has NETIF_F_LOOPBACK on");
        assert!(!f.changeable(bit), "and it is fixed");
        assert_eq!(f.bit("no-such-feature"), None);
        assert_eq!(ifname(1).as_deref(), Some("lo"));
        assert!(rx_queues("lo").expect("lo's channels") >= 1);
    }
}
