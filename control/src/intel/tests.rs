#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::parse::{domain, parse_feed, parse_indicator, Guard, MAX_PROBLEMS};
use super::*;

fn guard() -> Guard {
    Guard {
        protected: vec!["192.168.50.0/24".parse().unwrap()],
        force: false,
    }
}

fn shown(p: &parse::Parsed) -> Vec<String> {
    p.entries.iter().map(|e| e.indicator.to_string()).collect()
}

#[test]
fn a_list_reads_addresses_networks_and_domains_and_reports_the_rest_by_line() {
    let text = b"\xef\xbb\xbf# a feed\r\n203.0.113.66\r\n198.51.100.0/24   # a range\n\
                 C2.Evil.Example.\n*.dga.example\n\n2001:db8:bad::/48\nnot a domain!\n\
                 10.1.2.3/16\n0.0.0.0/0\ncom\n127.0.0.1\n192.168.50.7\nhost:8080\n\
                 b\xfcad.example\n";
    let p = parse_feed(text, Format::List, &guard());
    assert_eq!(
        shown(&p),
        [
            "203.0.113.66",
            "198.51.100.0/24",
            "c2.evil.example",
            "dga.example",
            "2001:db8:bad::/48"
        ]
    );
    let lines: Vec<usize> = p.problems.list.iter().map(|x| x.line).collect();
    assert_eq!(lines, [8, 9, 10, 11, 12, 13, 14, 15]);
    let why = |line: usize| {
        p.problems
            .list
            .iter()
            .find(|x| x.line == line)
            .map(|x| x.why.clone())
            .unwrap()
    };
    assert!(why(9).contains("10.1.0.0/16"), "{}", why(9));
    assert!(why(10).contains("covers too much"), "{}", why(10));
    assert!(why(11).contains("public suffix"), "{}", why(11));
    assert!(why(12).contains("loopback"), "{}", why(12));
    assert!(why(13).contains("192.168.50.0/24"), "{}", why(13));
    assert!(why(15).contains("UTF-8"), "{}", why(15));
    assert_eq!(p.problems.count, 8);
}

#[test]
fn forcing_lets_absurd_entries_in_but_never_what_does_not_parse() {
    let g = Guard {
        force: true,
        ..guard()
    };
    let p = parse_feed(
        b"0.0.0.0/0\ncom\n192.168.50.7\nnot a domain!\n",
        Format::List,
        &g,
    );
    assert_eq!(shown(&p), ["0.0.0.0/0", "com", "192.168.50.7"]);
    assert_eq!(p.problems.count, 1);
}

#[test]
fn a_hosts_file_lists_its_names_and_skips_its_own_header() {
    let text = b"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n\
                 0.0.0.0 0.0.0.0\n0.0.0.0 ads.example tracker.example # two\n\
                 0.0.0.0\tmalware.example\nads2.example\n";
    let p = parse_feed(text, Format::Hosts, &guard());
    assert_eq!(
        shown(&p),
        ["ads.example", "tracker.example", "malware.example"]
    );
    assert_eq!(p.problems.list.len(), 1);
    assert_eq!(p.problems.list[0].line, 6);
}

#[test]
fn csv_takes_category_and_severity_with_quotes_and_a_header() {
    let text = b"indicator,category,severity\n203.0.113.66,c2,critical\n\
                 \"bad.example\",\"phishing, kit\",HIGH\nscan.example\n\
                 198.51.100.9,,2\nx.example,c,urgent\n1.2.3.4,a,b,c\n\
                 192.0.2.8,c2,low,1765000000000\n192.0.2.9,c2,low,1,2\n192.0.2.10,c2,low,x\n";
    let p = parse_feed(text, Format::Csv, &guard());
    assert_eq!(
        shown(&p),
        [
            "203.0.113.66",
            "bad.example",
            "scan.example",
            "198.51.100.9",
            "192.0.2.8"
        ]
    );
    assert_eq!(p.entries[0].category.as_deref(), Some("c2"));
    assert_eq!(p.entries[0].severity, Some(Severity::Critical));
    assert_eq!(p.entries[1].category.as_deref(), Some("phishing, kit"));
    assert_eq!(p.entries[1].severity, Some(Severity::High));
    assert_eq!(p.entries[2].category, None);
    assert_eq!(p.entries[3].severity, Some(Severity::Medium));
    let lines: Vec<usize> = p.problems.list.iter().map(|x| x.line).collect();
    assert_eq!(
        lines,
        [6, 7, 9, 10],
        "a fourth column is a number (the time added)"
    );
}

#[test]
fn hostile_files_cost_a_report_not_a_panic() {
    // Binary garbage, a huge line, NULs, a broken CSV quote.
    let mut garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    garbage.extend_from_slice(b"\nok.example\n");
    for format in [Format::List, Format::Hosts, Format::Csv] {
        let p = parse_feed(&garbage, format, &guard());
        assert!(p.problems.count > 0, "{format:?}");
    }
    let mut long = vec![b'a'; 10_000];
    long.extend_from_slice(b"\nok.example\n");
    let p = parse_feed(&long, Format::List, &guard());
    assert_eq!(shown(&p), ["ok.example"]);
    assert!(p.problems.list[0].why.contains("longer than"));
    let p = parse_feed(b"\"open quote,c\nok.example\n", Format::Csv, &guard());
    assert!(p.problems.count >= 1 || p.entries.is_empty());
    // Many bad lines: the first 100 kept, all counted.
    let many = "bad entry!\n".repeat(1000);
    let p = parse_feed(many.as_bytes(), Format::List, &guard());
    assert_eq!(
        (p.problems.list.len(), p.problems.count),
        (MAX_PROBLEMS, 1000)
    );
    assert!(parse_feed(b"", Format::Csv, &guard()).entries.is_empty());
}

#[test]
fn domains_are_normalised_and_checked() {
    let g = guard();
    assert_eq!(domain("WWW.Example.COM.", &g).unwrap(), "www.example.com");
    assert_eq!(
        domain("_dmarc.example.com", &g).unwrap(),
        "_dmarc.example.com"
    );
    assert!(domain("co.uk", &g).unwrap_err().contains("public suffix"));
    assert!(domain("localhost", &g).is_err());
    assert!(domain("bücher.example", &g).unwrap_err().contains("xn--"));
    assert_eq!(
        domain("xn--bcher-kva.example", &g).unwrap(),
        "xn--bcher-kva.example"
    );
    assert!(domain(&format!("{}.example", "a".repeat(64)), &g).is_err());
    assert!(domain("a..example", &g).is_err());
    assert!(parse_indicator("2001:db8::1/64", &g).is_err(), "host bits");
    assert!(parse_indicator("::/0", &g).is_err());
    assert!(parse_indicator("ff02::1", &g).is_err(), "multicast");
}

fn intel(entries: &[(&str, u16)]) -> Intel {
    let feeds = vec![
        Feed {
            name: "ips".into(),
            action: Action::Block,
            severity: Severity::High,
            quarantine: false,
        },
        Feed {
            name: "domains".into(),
            action: Action::Alert,
            severity: Severity::Medium,
            quarantine: false,
        },
    ];
    Intel::new(
        feeds,
        entries.iter().map(|(s, feed)| {
            let mut e = Entry::new(parse_indicator(s, &guard()).unwrap());
            e.category = Some(format!("cat-{feed}"));
            (e, *feed, 1_000)
        }),
    )
}

#[test]
fn a_name_matches_its_listed_domain_or_one_above_and_an_address_its_entry() {
    let i = intel(&[
        ("evil.example", 1),
        ("c2.evil.example", 1),
        ("203.0.113.66", 0),
        ("198.51.100.0/24", 0),
        ("evil.example", 1),
    ]);
    let d = |n: &str| {
        i.domain(n)
            .map(|m| (m.id, m.feed.name.as_str(), m.listed.to_string()))
    };
    let m = |id: u32, feed: &'static str, listed: &str| Some((id, feed, listed.to_string()));
    assert_eq!(d("evil.example"), m(0, "domains", "evil.example"));
    assert_eq!(d("WWW.EVIL.EXAMPLE."), m(0, "domains", "evil.example"));
    assert_eq!(
        d("x.c2.evil.example"),
        m(1, "domains", "c2.evil.example"),
        "most specific"
    );
    assert_eq!(d("notevil.example"), None, "a label boundary, not a suffix");
    assert_eq!(d("example"), None);
    assert_eq!(d(""), None);
    assert_eq!(d(&"a.".repeat(200)), None, "longer than a DNS name");
    let ip = |s: &str| {
        i.ip(s.parse().unwrap())
            .map(|m| (m.id, m.listed.to_string(), m.severity, m.category))
    };
    assert_eq!(
        ip("203.0.113.66"),
        Some((2, "203.0.113.66".into(), Severity::High, Some("cat-0")))
    );
    assert_eq!(
        ip("198.51.100.200"),
        Some((3, "198.51.100.0/24".into(), Severity::High, Some("cat-0")))
    );
    assert_eq!(ip("198.51.101.1"), None);
    assert_eq!(i.len(), 5);
}

#[test]
fn a_block_feed_wins_over_an_alert_feed_and_only_its_addresses_reach_the_packet_path() {
    // Feed 0 blocks, feed 1 alerts.
    let i = intel(&[
        ("203.0.113.66", 1),
        ("203.0.113.0/24", 0),
        ("c2.evil.example", 1),
        ("evil.example", 0),
        ("2001:db8::bad", 1),
    ]);
    let ip = |s: &str| {
        i.ip(s.parse().unwrap())
            .map(|m| (m.id, m.feed.name.as_str()))
    };
    assert_eq!(
        ip("203.0.113.66"),
        Some((1, "ips")),
        "the block feed's network"
    );
    assert_eq!(ip("2001:db8::bad"), Some((4, "domains")), "alert only");
    let d = |n: &str| i.domain(n).map(|m| (m.id, m.listed.to_string()));
    assert_eq!(d("x.c2.evil.example"), Some((3, "evil.example".into())));
    let block = i.blocked();
    assert_eq!(block.len(), 1);
    assert_eq!(block.ip("203.0.113.66".parse().unwrap()), Some(1));
    assert_eq!(block.ip("2001:db8::bad".parse().unwrap()), None);
}
