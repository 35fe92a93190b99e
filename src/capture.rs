//! Reading pcap and pcapng captures, with errors that say where the file is bad.
//!
//! The `pcap-file` crate's parsers do the decoding; this module feeds them from a
//! bounded buffer so it knows the byte offset of every record. It also makes up
//! for two things the crate gets wrong for real captures: pcap records whose
//! original length exceeds the snap length (any `tcpdump -s 96` capture) are
//! accepted, and pcapng timestamps honour the interface's `if_tsresol`
//! (microseconds unless the interface says otherwise).

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError, TsResolution};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest record we buffer: bigger ones are refused, not allocated.
const MAX_RECORD: usize = 16 << 20;

/// One captured frame.
pub struct Frame<'a> {
    /// Capture time in nanoseconds since the epoch.
    pub time_ns: u64,
    /// The bytes captured (may be fewer than `orig_len`).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file (starts with {magic:02x?})")]
    NotACapture { path: PathBuf, magic: Vec<u8> },
    #[error("{path}: byte offset {offset}: {what}")]
    Bad {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{path}: link type {link:?} is not Ethernet: capture on the data interface itself (not \"any\", which records Linux cooked headers)")]
    LinkType { path: PathBuf, link: DataLink },
}

/// A growable window over the file: `buf[pos..len]` is unread data at file offset `offset`.
struct Window {
    file: File,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    offset: u64,
    eof: bool,
}

impl Window {
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.len == self.buf.len() {
            if self.buf.len() >= MAX_RECORD {
                return Ok(false);
            }
            let grown = (self.buf.len() * 2).min(MAX_RECORD);
            self.buf.resize(grown, 0);
        }
        let n = self.file.read(&mut self.buf[self.len..])?;
        self.len += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }
}

/// Call `f` on every frame of the pcap or pcapng file at `path`, in file order.
/// Returns the number of frames.
pub fn for_each_frame(
    path: &Path,
    mut f: impl FnMut(Frame<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let open = |source| CaptureError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open)?;
    let mut w = Window {
        file,
        buf: vec![0; 1 << 20],
        pos: 0,
        len: 0,
        offset: 0,
        eof: false,
    };
    while w.len < 4 && w.fill().map_err(open)? {}
    let magic = w.data().get(..4).unwrap_or(w.data()).to_vec();
    match magic.as_slice() {
        [0x0a, 0x0d, 0x0d, 0x0a] => pcapng(path, &mut w, &mut f),
        [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x4d, 0x3c, 0xb2, 0xa1] => pcap(path, &mut w, &mut f),
        _ => Err(CaptureError::NotACapture {
            path: path.to_owned(),
            magic,
        }
        .into()),
    }
}

fn bad(path: &Path, offset: u64, what: impl Into<String>) -> CaptureError {
    CaptureError::Bad {
        path: path.to_owned(),
        offset,
        what: what.into(),
    }
}

/// Run `parse` on the window's data, reading more while it needs more.
/// `Ok(None)` at a clean end of file.
fn next<T>(
    path: &Path,
    w: &mut Window,
    what: &str,
    mut parse: impl FnMut(&[u8]) -> Result<(usize, T), PcapError>,
) -> anyhow::Result<Option<T>> {
    loop {
        if w.data().is_empty() && !w.fill().map_err(|e| bad(path, w.offset, e.to_string()))? {
            return Ok(None);
        }
        match parse(w.data()) {
            Ok((used, value)) => {
                w.consume(used);
                return Ok(Some(value));
            }
            Err(PcapError::IncompleteBuffer) => {
                if !w.fill().map_err(|e| bad(path, w.offset, e.to_string()))? {
                    let msg = if w.len - w.pos >= MAX_RECORD {
                        format!("{what} larger than {MAX_RECORD} bytes")
                    } else {
                        format!("file ends inside a {what} ({} bytes left)", w.len - w.pos)
                    };
                    return Err(bad(path, w.offset, msg).into());
                }
            }
            Err(e) => return Err(bad(path, w.offset, format!("bad {what}: {e}")).into()),
        }
    }
}

fn pcap(
    path: &Path,
    w: &mut Window,
    f: &mut impl FnMut(Frame<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let parser = next(path, w, "pcap header", |s| {
        PcapParser::new(s).map(|(rem, p)| (s.len() - rem.len(), p))
    })?
    .ok_or_else(|| bad(path, 0, "empty file"))?;
    let header = parser.header();
    if header.datalink != DataLink::ETHERNET {
        return Err(CaptureError::LinkType {
            path: path.to_owned(),
            link: header.datalink,
        }
        .into());
    }
    let nanos = header.ts_resolution == TsResolution::NanoSecond;
    let mut count = 0;
    loop {
        let start = w.offset;
        let Some((used, ts_sec, ts_frac, incl, orig)) = next(path, w, "packet record", |s| {
            parser.next_raw_packet(s).map(|(rem, p)| {
                (
                    s.len() - rem.len(),
                    (
                        s.len() - rem.len(),
                        p.ts_sec,
                        p.ts_frac,
                        p.incl_len,
                        p.orig_len,
                    ),
                )
            })
        })?
        else {
            return Ok(count);
        };
        let frac_ns = if nanos {
            u64::from(ts_frac)
        } else {
            u64::from(ts_frac) * 1000
        };
        if frac_ns >= 1_000_000_000 {
            return Err(bad(
                path,
                start,
                "packet record: timestamp fraction of a second out of range",
            )
            .into());
        }
        let data_start = w.pos - used + 16;
        let data = &w.buf[data_start..data_start + incl as usize];
        count += 1;
        f(Frame {
            time_ns: u64::from(ts_sec) * 1_000_000_000 + frac_ns,
            data,
            orig_len: orig.max(incl),
        })
        .map_err(|e| {
            e.context(format!(
                "{}: packet {count} at byte offset {start}",
                path.display()
            ))
        })?;
    }
}

/// Per interface: link type and the length of one timestamp tick in nanoseconds
/// (as a ratio, for resolutions finer than a nanosecond).
struct Iface {
    link: DataLink,
    tick_num: u64,
    tick_den: u64,
}

fn iface_resolution(opts: &[InterfaceDescriptionOption<'_>]) -> (u64, u64) {
    let resol = opts.iter().find_map(|o| match o {
        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
        _ => None,
    });
    match resol.unwrap_or(6) {
        // 2^-n seconds
        r if r & 0x80 != 0 => (1_000_000_000, 1u64 << (r & 0x7f).min(63)),
        // 10^-n seconds
        r if r <= 9 => (10u64.pow(9 - u32::from(r)), 1),
        r => (1, 10u64.pow(u32::from(r.min(19)) - 9)),
    }
}

fn pcapng(
    path: &Path,
    w: &mut Window,
    f: &mut impl FnMut(Frame<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut parser = next(path, w, "section header block", |s| {
        PcapNgParser::new(s).map(|(rem, p)| (s.len() - rem.len(), p))
    })?
    .ok_or_else(|| bad(path, 0, "empty file"))?;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut count = 0;
    let mut buf = Vec::new();
    loop {
        let start = w.offset;
        let mut packet: Option<(u32, u64, u32)> = None;
        let Some(()) = next(path, w, "block", |s| {
            let (rem, block) = parser.next_block(s)?;
            let used = s.len() - rem.len();
            match block {
                Block::SectionHeader(_) => {
                    ifaces.clear();
                }
                Block::InterfaceDescription(i) => {
                    let (tick_num, tick_den) = iface_resolution(&i.options);
                    ifaces.push(Iface {
                        link: i.linktype,
                        tick_num,
                        tick_den,
                    });
                }
                Block::EnhancedPacket(p) => {
                    buf.clear();
                    buf.extend_from_slice(&p.data);
                    packet = Some((
                        p.interface_id,
                        p.timestamp.as_nanos() as u64,
                        p.original_len,
                    ));
                }
                Block::SimplePacket(p) => {
                    buf.clear();
                    buf.extend_from_slice(&p.data);
                    packet = Some((0, 0, p.original_len));
                }
                _ => {}
            }
            Ok((used, ()))
        })?
        else {
            return Ok(count);
        };
        let Some((if_id, ticks, orig)) = packet else {
            continue;
        };
        let iface = ifaces.get(if_id as usize).ok_or_else(|| {
            bad(
                path,
                start,
                format!("packet names interface {if_id}, which was not described"),
            )
        })?;
        if iface.link != DataLink::ETHERNET {
            return Err(CaptureError::LinkType {
                path: path.to_owned(),
                link: iface.link,
            }
            .into());
        }
        let time_ns =
            (u128::from(ticks) * u128::from(iface.tick_num) / u128::from(iface.tick_den)) as u64;
        count += 1;
        f(Frame {
            time_ns,
            data: &buf,
            orig_len: orig.max(buf.len() as u32),
        })
        .map_err(|e| {
            e.context(format!(
                "{}: packet {count} at byte offset {start}",
                path.display()
            ))
        })?;
    }
}
