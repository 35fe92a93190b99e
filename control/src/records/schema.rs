//! The records store's schema: `PRAGMA user_version` counts the entries of
//! [`MIGRATIONS`] applied, each in its own transaction with the version bump.
//! A store of a newer version is refused. Append new migrations; never edit one
//! that has shipped.

use super::RecordsError;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    // 1: identities, flow records.
    r#"
    CREATE TABLE identities (
        id          INTEGER PRIMARY KEY,
        mac         INTEGER NOT NULL,            -- the 48 bits of the MAC
        name        TEXT    NOT NULL,            -- '' for a MAC no workload has
        labels_json TEXT    NOT NULL,
        groups_json TEXT    NOT NULL,
        UNIQUE (mac, name, labels_json, groups_json)
    );
    CREATE TABLE flows (
        id         INTEGER PRIMARY KEY,
        first_ms   INTEGER NOT NULL,             -- ms since the Unix epoch
        last_ms    INTEGER NOT NULL,
        src_mac    INTEGER NOT NULL,
        dst_mac    INTEGER NOT NULL,
        src_id     INTEGER NOT NULL REFERENCES identities(id),
        dst_id     INTEGER NOT NULL REFERENCES identities(id),
        src_ip     BLOB    NOT NULL,             -- 16 bytes, IPv4 mapped
        dst_ip     BLOB    NOT NULL,
        proto      INTEGER NOT NULL,
        src_port   INTEGER NOT NULL,
        dst_port   INTEGER NOT NULL,
        vlan_outer INTEGER NOT NULL,
        vlan_inner INTEGER NOT NULL,
        pkts_fwd   INTEGER NOT NULL,
        pkts_rev   INTEGER NOT NULL,
        bytes_fwd  INTEGER NOT NULL,
        bytes_rev  INTEGER NOT NULL,
        allowed    INTEGER NOT NULL,             -- 1 allow, 0 deny
        reason     TEXT    NOT NULL,             -- rule, quarantine, management, blocklist, default
        rule_id    INTEGER,                      -- with reason = 'rule'
        mode       TEXT    NOT NULL,
        would_deny INTEGER NOT NULL,
        state      TEXT    NOT NULL,
        kind       TEXT    NOT NULL              -- interim, or why it ended
    );
    -- Time only: queries take a window first. Indexes by MAC cost 8x the
    -- ingest rate (inserts land at one place per workload; measured with
    -- the records bench, docs/decisions.md).
    CREATE INDEX flows_last ON flows (last_ms);
    "#,
    // 2: interim records (a flow's first record opens it), hourly rollups.
    r#"
    ALTER TABLE flows ADD COLUMN opens INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE hourly (
        hour_ms    INTEGER NOT NULL,             -- the hour's start; a record counts in the hour of its last_ms
        src_id     INTEGER NOT NULL REFERENCES identities(id),
        dst_id     INTEGER NOT NULL REFERENCES identities(id),
        src_ip     BLOB    NOT NULL,             -- an end no workload has: its address; else x''
        dst_ip     BLOB    NOT NULL,
        proto      INTEGER NOT NULL,
        port       INTEGER NOT NULL,             -- the destination port; 0 but for TCP, UDP, SCTP
        allowed    INTEGER NOT NULL,
        would_deny INTEGER NOT NULL,
        reason     TEXT    NOT NULL,
        rule_id    INTEGER NOT NULL,             -- -1 unless reason = 'rule'
        flows      INTEGER NOT NULL,             -- flows opened
        pkts_fwd   INTEGER NOT NULL,
        pkts_rev   INTEGER NOT NULL,
        bytes_fwd  INTEGER NOT NULL,
        bytes_rev  INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        PRIMARY KEY (hour_ms, src_id, dst_id, src_ip, dst_ip, proto, port, allowed, would_deny, reason, rule_id)
    ) WITHOUT ROWID;
    -- The last record the rollups count (rollup.rs); the records already
    -- stored are counted when the migration is done (`prepare`).
    CREATE TABLE rollup_mark (id INTEGER NOT NULL);
    INSERT INTO rollup_mark VALUES (0);
    "#,
    // 3: group-level rollups, by hour and by day, and the nodes they name.
    r#"
    CREATE TABLE nodes (
        id    INTEGER PRIMARY KEY,
        kind  TEXT NOT NULL,                     -- group, ungrouped, external
        ident TEXT NOT NULL,                     -- the group, the MAC, internet or private
        name  TEXT NOT NULL,                     -- an ungrouped workload's name
        UNIQUE (kind, ident, name)
    );
    CREATE TABLE group_rollups (
        span_ms    INTEGER NOT NULL,             -- 3600000 (hours) or 86400000 (UTC days)
        period_ms  INTEGER NOT NULL,             -- the period's start; a record counts in the period of its last_ms
        src        INTEGER NOT NULL REFERENCES nodes(id),
        dst        INTEGER NOT NULL REFERENCES nodes(id),
        proto      INTEGER NOT NULL,
        port       INTEGER NOT NULL,
        allowed    INTEGER NOT NULL,
        would_deny INTEGER NOT NULL,
        flows      INTEGER NOT NULL,
        packets    INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        PRIMARY KEY (span_ms, period_ms, src, dst, proto, port, allowed, would_deny)
    ) WITHOUT ROWID;
    "#,
    // 4: DNS responses and passive DNS, address history, contacts by source.
    r#"
    CREATE TABLE dns (
        id         INTEGER PRIMARY KEY,
        time_ms    INTEGER NOT NULL,
        client_mac INTEGER NOT NULL,
        client_id  INTEGER NOT NULL REFERENCES identities(id),
        client_ip  BLOB    NOT NULL,
        server_ip  BLOB    NOT NULL,
        vlan_outer INTEGER NOT NULL,
        vlan_inner INTEGER NOT NULL,
        qname      TEXT    NOT NULL,             -- lower case, no trailing dot
        qtype      INTEGER NOT NULL,
        rcode      INTEGER NOT NULL,
        answers    TEXT    NOT NULL              -- JSON: [{name, ttl, ip | cname}], in order
    );
    CREATE INDEX dns_time ON dns (time_ms);
    CREATE INDEX dns_name ON dns (qname, time_ms);
    -- Passive DNS: one row per name of a response's chain (the question and
    -- every alias), client and address the chain ended in ('' for none).
    CREATE TABLE pdns (
        rname      TEXT    NOT NULL,             -- the name, labels reversed: com.example.www
        client_mac INTEGER NOT NULL,
        answer     TEXT    NOT NULL,             -- an address, or ''
        qname      TEXT    NOT NULL,             -- the name asked
        rcode      INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        count      INTEGER NOT NULL,
        ttl        INTEGER NOT NULL,             -- the largest TTL seen
        PRIMARY KEY (rname, client_mac, answer, qname, rcode)
    ) WITHOUT ROWID;
    CREATE INDEX pdns_answer ON pdns (answer);
    CREATE INDEX pdns_last ON pdns (last_ms);
    -- Which MAC held which address, per UTC day: the first and last time seen.
    CREATE TABLE addresses (
        ip         BLOB    NOT NULL,             -- 16 bytes, IPv4 mapped
        mac        INTEGER NOT NULL,
        day_ms     INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        sources    INTEGER NOT NULL,             -- bits: 1 ARP, 2 DHCP, 4 flows, 8 DNS
        PRIMARY KEY (ip, mac, day_ms)
    ) WITHOUT ROWID;
    CREATE INDEX addresses_mac ON addresses (mac, day_ms);
    -- Flows by source MAC, destination, service and verdict, per hour of
    -- the flows' start: when each workload reached what (blast radius), and
    -- who reached an address (traceback). `edges` is the same without the
    -- hour: what a workload ever reached, read first.
    CREATE TABLE contacts (
        src_mac    INTEGER NOT NULL,
        dst_mac    INTEGER NOT NULL,
        dst_ip     BLOB    NOT NULL,
        proto      INTEGER NOT NULL,
        port       INTEGER NOT NULL,
        allowed    INTEGER NOT NULL,
        hour_ms    INTEGER NOT NULL,             -- the hour of the flows' start
        flows      INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,             -- the earliest start
        last_start_ms INTEGER NOT NULL,          -- the latest start
        last_ms    INTEGER NOT NULL,             -- the latest packet
        PRIMARY KEY (src_mac, dst_mac, dst_ip, proto, port, allowed, hour_ms)
    ) WITHOUT ROWID;
    CREATE INDEX contacts_dst ON contacts (dst_ip, hour_ms);
    CREATE INDEX contacts_hour ON contacts (hour_ms);
    CREATE TABLE edges (
        src_mac    INTEGER NOT NULL,
        dst_mac    INTEGER NOT NULL,
        dst_ip     BLOB    NOT NULL,
        proto      INTEGER NOT NULL,
        port       INTEGER NOT NULL,
        allowed    INTEGER NOT NULL,
        flows      INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_start_ms INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        PRIMARY KEY (src_mac, dst_mac, dst_ip, proto, port, allowed)
    ) WITHOUT ROWID;
    CREATE INDEX edges_last ON edges (last_ms);
    -- The last DNS record the passive DNS and addresses count.
    ALTER TABLE rollup_mark ADD COLUMN dns_id INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: the responses by name as a table written with the derived rows, in
    // key order, instead of an index inserted into at random with every
    // response (2.5x the DNS ingest rate); no index on passive DNS's last
    // time (it moved on every upsert; the age trim scans once an hour).
    r#"
    CREATE TABLE dns_names (
        qname      TEXT    NOT NULL,
        time_ms    INTEGER NOT NULL,
        id         INTEGER NOT NULL,             -- dns.id
        PRIMARY KEY (qname, time_ms, id)
    ) WITHOUT ROWID;
    INSERT INTO dns_names SELECT qname, time_ms, id FROM dns;
    DROP INDEX dns_name;
    DROP INDEX pdns_last;
    "#,
    // 6: the responses by name with their client, so that a traceback
    // finds a workload's resolutions of a popular name without reading
    // every workload's (keyed by name and time still: by client, a flush's
    // rows land at a place a client and name, 30% off the DNS ingest
    // rate); the edges by destination, so that a blast radius finds who
    // reached the few nodes left instead of reading every workload's edges.
    r#"
    CREATE INDEX edges_dst ON edges (dst_ip, dst_mac, src_mac);
    CREATE TABLE dns_names_6 (
        qname      TEXT    NOT NULL,
        time_ms    INTEGER NOT NULL,
        id         INTEGER NOT NULL,             -- dns.id
        client_mac INTEGER NOT NULL,
        PRIMARY KEY (qname, time_ms, id)
    ) WITHOUT ROWID;
    INSERT INTO dns_names_6 SELECT qname, time_ms, id, client_mac FROM dns
        ORDER BY qname, time_ms, id;
    DROP TABLE dns_names;
    ALTER TABLE dns_names_6 RENAME TO dns_names;
    "#,
    // 7: a flow cut by threat intel names its feed and entry.
    r#"
    ALTER TABLE flows ADD COLUMN intel TEXT;   -- with reason = 'intel': 'FEED INDICATOR'
    "#,
    // 8: the hourly rollups by UTC day, without the reason (what a policy
    // decides on, and the verdict): the dry run and the rule proposals read
    // the whole days of a window here, a third of the hourly rows.
    r#"
    CREATE TABLE daily (
        day_ms     INTEGER NOT NULL,             -- the UTC day's start; a record counts in the day of its last_ms
        src_id     INTEGER NOT NULL REFERENCES identities(id),
        dst_id     INTEGER NOT NULL REFERENCES identities(id),
        src_ip     BLOB    NOT NULL,             -- as in hourly: an end no workload has, else x''
        dst_ip     BLOB    NOT NULL,
        proto      INTEGER NOT NULL,
        port       INTEGER NOT NULL,
        allowed    INTEGER NOT NULL,
        would_deny INTEGER NOT NULL,
        flows      INTEGER NOT NULL,
        packets    INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        PRIMARY KEY (day_ms, src_id, dst_id, src_ip, dst_ip, proto, port, allowed, would_deny)
    ) WITHOUT ROWID;
    INSERT INTO daily
        SELECT hour_ms / 86400000 * 86400000, src_id, dst_id, src_ip, dst_ip, proto, port,
               allowed, would_deny, sum(flows), sum(pkts_fwd + pkts_rev),
               sum(bytes_fwd + bytes_rev), min(first_ms), max(last_ms)
        FROM hourly GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;
    "#,
    // 9: DNS names as integers (`names`, labels reversed): passive DNS and
    // the responses by name keyed by name ids instead of text, 2x the DNS
    // ingest rate (bench/RESULTS.md). `bh_reversed` is registered by
    // `prepare` for this migration.
    r#"
    CREATE TABLE names (
        id         INTEGER PRIMARY KEY,
        rname      TEXT    NOT NULL UNIQUE       -- labels reversed: com.example.www
    );
    INSERT INTO names (rname)
        SELECT rname FROM pdns
        UNION SELECT bh_reversed(qname) FROM pdns
        UNION SELECT bh_reversed(qname) FROM dns_names
        ORDER BY 1;
    CREATE TABLE pdns_9 (
        name_id    INTEGER NOT NULL,             -- names.id: the question or an alias
        client_mac INTEGER NOT NULL,
        answer     BLOB    NOT NULL,             -- an address (16 bytes), or empty
        qname_id   INTEGER NOT NULL,             -- names.id of the name asked
        rcode      INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        count      INTEGER NOT NULL,
        ttl        INTEGER NOT NULL,
        PRIMARY KEY (name_id, client_mac, answer, qname_id, rcode)
    ) WITHOUT ROWID;
    INSERT INTO pdns_9
        SELECT n.id, p.client_mac, p.answer, q.id, p.rcode, p.first_ms, p.last_ms, p.count, p.ttl
        FROM pdns p JOIN names n ON n.rname = p.rname JOIN names q ON q.rname = bh_reversed(p.qname)
        ORDER BY 1, 2, 3, 4, 5;
    DROP TABLE pdns;
    ALTER TABLE pdns_9 RENAME TO pdns;
    CREATE INDEX pdns_answer ON pdns (answer);
    CREATE TABLE dns_names_9 (
        name_id    INTEGER NOT NULL,             -- names.id of the name asked
        time_ms    INTEGER NOT NULL,
        id         INTEGER NOT NULL,             -- dns.id
        client_mac INTEGER NOT NULL,
        PRIMARY KEY (name_id, time_ms, id)
    ) WITHOUT ROWID;
    INSERT INTO dns_names_9
        SELECT n.id, d.time_ms, d.id, d.client_mac
        FROM dns_names d JOIN names n ON n.rname = bh_reversed(d.qname)
        ORDER BY 1, 2, 3;
    DROP TABLE dns_names;
    ALTER TABLE dns_names_9 RENAME TO dns_names;
    "#,
    // 10: every destination of an edge once, kept by triggers on `edges`
    // (a row when an edge to a new destination is inserted, gone with the
    // last edge to it): a blast radius walking a level backwards reads the
    // nodes left to reach here (5k rows over 30 days) instead of a skip
    // over `edges_dst`, a seek a destination (40% of its time).
    r#"
    CREATE TABLE destinations (
        dst_ip     BLOB    NOT NULL,
        dst_mac    INTEGER NOT NULL,
        PRIMARY KEY (dst_ip, dst_mac)
    ) WITHOUT ROWID;
    INSERT INTO destinations SELECT DISTINCT dst_ip, dst_mac FROM edges ORDER BY 1, 2;
    CREATE TRIGGER destinations_add AFTER INSERT ON edges BEGIN
        INSERT OR IGNORE INTO destinations VALUES (new.dst_ip, new.dst_mac);
    END;
    CREATE TRIGGER destinations_trim AFTER DELETE ON edges
        WHEN NOT EXISTS (SELECT 1 FROM edges WHERE dst_ip = old.dst_ip AND dst_mac = old.dst_mac)
    BEGIN
        DELETE FROM destinations WHERE dst_ip = old.dst_ip AND dst_mac = old.dst_mac;
    END;
    "#,
];

/// The schema version this bulkhead writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// The `application_id` of a records store ("bkrc"), so that a query never
/// mistakes (or migrates) another SQLite file for one.
const APP_ID: i64 = 0x626b_7263;

/// Open (creating if absent) and migrate the store at `path`, in WAL mode.
pub(crate) fn open(path: &Path) -> Result<Connection, RecordsError> {
    let conn = Connection::open(path).map_err(|source| RecordsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    prepare(conn, path)
}

/// Open an existing store (a copy taken off an appliance, for queries):
/// refused if absent, not SQLite, another file's database or newer than this
/// bulkhead; an older one is migrated.
pub(crate) fn open_existing(path: &Path) -> Result<Connection, RecordsError> {
    let at = |source| RecordsError::Open {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_file() {
        return Err(RecordsError::Missing {
            path: path.to_path_buf(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(at)?;
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(at)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(at)?;
    let has_flows: bool = conn
        .query_row(
            "SELECT count(*) = 1 FROM sqlite_master WHERE type = 'table' AND name = 'flows'",
            [],
            |r| r.get(0),
        )
        .map_err(at)?;
    // Stores written before the id was set are ours if they have our tables.
    if app != APP_ID && !(app == 0 && version >= 1 && has_flows) {
        return Err(RecordsError::Foreign {
            path: path.to_path_buf(),
        });
    }
    prepare(conn, path)
}

/// WAL mode, the migrations, the application id.
fn prepare(mut conn: Connection, path: &Path) -> Result<Connection, RecordsError> {
    let at = |source| RecordsError::Open {
        path: path.to_path_buf(),
        source,
    };
    // WAL: readers (queries) never wait for the writer; NORMAL sync: a power
    // cut may lose the last commits, never corrupt the file.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(at)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(at)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(at)?;
    super::names::register(&conn).map_err(at)?;
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(at)?;
    if found > VERSION {
        return Err(RecordsError::Newer {
            path: path.to_path_buf(),
            found,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(at)?;
        tx.execute_batch(sql).map_err(at)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(at)?;
        tx.commit().map_err(at)?;
    }
    if found == 2 {
        // Group rollups of the hourly ones (the records they count may be
        // gone). A store older than that gets both from its records below.
        super::group_rollup::from_hourly(&mut conn).map_err(at)?;
    }
    if (2..=3).contains(&found) {
        // Contacts and address history of the records counted (the rest
        // are counted with the rollups by the writer's catch-up).
        super::rollup::derive_counted(&mut conn).map_err(at)?;
    }
    if found < 2 {
        // Rollups of the records stored before they existed. Only here: a
        // store at version 2 has a writer that keeps them (or kept them until
        // it stopped), and counting beside it would count twice.
        super::rollup::catch_up(&mut conn).map_err(at)?;
    }
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(at)?;
    if app != APP_ID {
        conn.pragma_update(None, "application_id", APP_ID)
            .map_err(at)?;
    }
    Ok(conn)
}
