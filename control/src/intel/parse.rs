//! Feed files: foreign input. A line that does not parse is reported with
//! its line number and skipped; the rest loads. Absurd entries (everything,
//! loopback, the appliance's own networks, a public suffix such as `com`)
//! are refused unless forced.

use super::{Entry, Format, Indicator, Severity};
use ipnet::IpNet;
use std::net::IpAddr;

/// Longest line read; a longer one is reported and skipped.
pub const MAX_LINE: usize = 4096;
/// Problems kept in full; past it they are only counted.
pub const MAX_PROBLEMS: usize = 100;
/// Shortest IPv4 and IPv6 prefixes listed unless forced.
pub const MIN_PREFIX_V4: u8 = 8;
pub const MIN_PREFIX_V6: u8 = 16;

/// What a feed may not list unless forced.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The appliance's own networks (management, the API's clients): a feed
    /// that listed them would cut the appliance off.
    pub protected: Vec<IpNet>,
    /// Accept absurd entries anyway (never lines that do not parse).
    pub force: bool,
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based.
    pub line: usize,
    /// The line's start, at most 80 characters.
    pub text: String,
    pub why: String,
}

/// What was wrong with a feed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// The first [`MAX_PROBLEMS`] problems.
    pub list: Vec<LineProblem>,
    /// Every problem, kept or not.
    pub count: usize,
}

/// A feed file read into memory (small feeds, the API).
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub problems: Problems,
}

/// Where the entries of a file go as they are read.
struct Out<F> {
    sink: F,
    problems: Problems,
}

impl<F: FnMut(Entry)> Out<F> {
    fn entry(&mut self, e: Entry) {
        (self.sink)(e);
    }

    fn problem(&mut self, line: usize, text: &str, why: impl Into<String>) {
        self.problems.count += 1;
        if self.problems.list.len() < MAX_PROBLEMS {
            let mut end = text.len().min(80);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            self.problems.list.push(LineProblem {
                line,
                text: text[..end].to_string(),
                why: why.into(),
            });
        }
    }
}

/// Names a hosts file carries that are no threat.
const HOSTS_NOISE: [&str; 12] = [
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Reads a feed file's bytes in `format` into memory.
pub fn parse_feed(bytes: &[u8], format: Format, guard: &Guard) -> Parsed {
    let mut entries = Vec::new();
    let problems = read_feed(bytes, format, guard, |e| entries.push(e));
    Parsed { entries, problems }
}

/// Reads a feed file's bytes in `format`, handing each entry to `sink` as
/// it is read (a million-line feed is never held twice).
pub fn read_feed(bytes: &[u8], format: Format, guard: &Guard, sink: impl FnMut(Entry)) -> Problems {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut out = Out {
        sink,
        problems: Problems::default(),
    };
    match format {
        Format::Csv => read_csv(bytes, guard, &mut out),
        Format::List | Format::Hosts => read_lines(bytes, format, guard, &mut out),
    }
    out.problems
}

fn read_lines<F: FnMut(Entry)>(bytes: &[u8], format: Format, guard: &Guard, out: &mut Out<F>) {
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let Some(line) = text_line(raw, n, out) else {
            continue;
        };
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if format == Format::List {
            take(out, n, line, line, None, guard);
            continue;
        }
        // hosts: ADDRESS NAME [NAME ...]; the address is a sinkhole.
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.parse::<IpAddr>().is_err() {
            out.problem(n, line, "a hosts line starts with an address");
            continue;
        }
        for name in words {
            if HOSTS_NOISE.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            match domain(name, guard) {
                Ok(d) => out.entry(Entry::new(Indicator::Domain(d))),
                Err(why) => out.problem(n, line, why),
            }
        }
    }
}

/// A line as text: CR dropped, UTF-8, not too long.
fn text_line<'a, F: FnMut(Entry)>(raw: &'a [u8], n: usize, out: &mut Out<F>) -> Option<&'a str> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.len() > MAX_LINE {
        let start = String::from_utf8_lossy(&raw[..80]).into_owned();
        out.problem(n, &start, format!("longer than {MAX_LINE} bytes"));
        return None;
    }
    match std::str::from_utf8(raw) {
        Ok(s) => Some(s),
        Err(_) => {
            out.problem(n, &String::from_utf8_lossy(raw), "not UTF-8");
            None
        }
    }
}

/// One indicator with its columns, or a problem.
fn take<F: FnMut(Entry)>(
    out: &mut Out<F>,
    n: usize,
    line: &str,
    indicator: &str,
    columns: Option<(&str, &str)>,
    guard: &Guard,
) {
    let indicator = match parse_indicator(indicator, guard) {
        Ok(i) => i,
        Err(why) => return out.problem(n, line, why),
    };
    let mut entry = Entry::new(indicator);
    if let Some((category, severity)) = columns {
        if !category.is_empty() {
            if category.len() > 64 || category.chars().any(char::is_control) {
                return out.problem(n, line, "a category is at most 64 printable characters");
            }
            entry.category = Some(category.to_string());
        }
        if !severity.is_empty() {
            match severity.parse::<Severity>() {
                Ok(s) => entry.severity = Some(s),
                Err(why) => return out.problem(n, line, why),
            }
        }
    }
    out.entry(entry);
}

/// CSV: `indicator[,category[,severity]]`, an optional header row
/// (`indicator,...`), `#` comments, quoted fields as RFC 4180 has them.
fn read_csv<F: FnMut(Entry)>(bytes: &[u8], guard: &Guard, out: &mut Out<F>) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let n = e.position().map_or(line, |p| p.line() as usize);
                out.problem(n, "", format!("not CSV: {e}"));
                // The reader cannot go on past a broken quote: stop here.
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
                continue;
            }
        }
        let n = record.position().map_or(line, |p| p.line() as usize);
        let fields: Option<Vec<&str>> =
            record.iter().map(|f| std::str::from_utf8(f).ok()).collect();
        let Some(fields) = fields else {
            out.problem(n, "", "not UTF-8");
            continue;
        };
        let text = fields.join(",");
        if text.len() > MAX_LINE {
            out.problem(n, &text, format!("longer than {MAX_LINE} bytes"));
            continue;
        }
        let first = fields.first().copied().unwrap_or("");
        if first.is_empty() {
            continue;
        }
        if n == 1 && first.eq_ignore_ascii_case("indicator") {
            continue;
        }
        // A fourth column, a number, is when the entry was added (ms since
        // the epoch): the API-managed feeds' files carry it.
        let added = fields.get(3).map(|a| a.parse::<i64>());
        if fields.len() > 4 || matches!(added, Some(Err(_))) {
            out.problem(n, &text, "expected indicator,category,severity");
            continue;
        }
        let category = fields.get(1).copied().unwrap_or("");
        let severity = fields.get(2).copied().unwrap_or("");
        take(out, n, &text, first, Some((category, severity)), guard);
    }
}

/// An address, a network or a domain, checked against `guard`.
pub fn parse_indicator(s: &str, guard: &Guard) -> Result<Indicator, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return net(IpNet::from(ip), guard).map(Indicator::Net);
    }
    if let Ok(n) = s.parse::<IpNet>() {
        if n.trunc() != n {
            return Err(format!(
                "{s} has host bits set: the network is {}",
                n.trunc()
            ));
        }
        return net(n, guard).map(Indicator::Net);
    }
    if s.contains('/') || s.parse::<std::net::Ipv6Addr>().is_ok() || s.contains(':') {
        return Err(format!("{s:?} is not an address, a network or a domain"));
    }
    domain(s, guard).map(Indicator::Domain)
}

fn net(n: IpNet, guard: &Guard) -> Result<IpNet, String> {
    let addr = n.network();
    let (min, unusable) = match n {
        IpNet::V4(v4) => {
            let a = v4.network();
            (
                MIN_PREFIX_V4,
                a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast(),
            )
        }
        IpNet::V6(v6) => {
            let a = v6.network();
            (
                MIN_PREFIX_V6,
                a.is_unspecified() || a.is_loopback() || a.is_multicast(),
            )
        }
    };
    if guard.force {
        return Ok(n);
    }
    if n.prefix_len() < min {
        return Err(format!(
            "{n} covers too much (shorter than /{min}); force it if you mean it"
        ));
    }
    if unusable {
        return Err(format!(
            "{addr} is unspecified, loopback, multicast or broadcast: no workload talks to it"
        ));
    }
    if let Some(p) = guard
        .protected
        .iter()
        .find(|p| p.contains(&n) || n.contains(*p))
    {
        return Err(format!(
            "{n} overlaps {p}, a network of the appliance's own (management)"
        ));
    }
    Ok(n)
}

/// A domain as matched: lowercase, no trailing dot, no `*.` or `.` in front
/// (a listed domain matches its subdomains anyway).
pub fn domain(s: &str, guard: &Guard) -> Result<String, String> {
    let trimmed = s.trim().trim_end_matches('.');
    let trimmed = trimmed
        .strip_prefix("*.")
        .or_else(|| trimmed.strip_prefix('.'))
        .unwrap_or(trimmed);
    if !trimmed.is_ascii() {
        return Err(format!(
            "{s:?} is not ASCII: list an internationalised name in its xn-- form"
        ));
    }
    let d = trimmed.to_ascii_lowercase();
    if d.is_empty() || d.len() > 253 {
        return Err(format!("{s:?} is not a domain (1 to 253 characters)"));
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "{s:?} is not a domain (labels of 1 to 63 letters, digits, '-' or '_')"
            ));
        }
    }
    if !guard.force && psl::domain_str(&d).is_none() {
        return Err(format!(
            "{d} is a public suffix or a single label: listing it would match every name under it; force it if you mean it"
        ));
    }
    Ok(d)
}
