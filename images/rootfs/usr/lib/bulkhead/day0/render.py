"""The plan written out: the networkd files of the management NIC and the
data ports, bulkhead.toml, the policy, the API certificate, and the store
with its first admin token."""

import json
import os
import sqlite3
import subprocess
import time

from .common import ETC, NETDIR, RUN, STORE, ConfigError, console, write


def render_network(p):
    os.makedirs(NETDIR, exist_ok=True)
    name, mac = p["mgmt"]
    lines = [
        "# Written by bulkhead-config on every boot: the management NIC.",
        "[Match]",
        f"MACAddress={mac}",
        "",
        "[Network]",
        "LinkLocalAddressing=no",
        "IPv6AcceptRA=no",
    ]
    if p["static"]:
        lines.append(f"Address={p['static'][0]}/{p['static'][1]}")
        if p["gateway"]:
            lines.append(f"Gateway={p['gateway']}")
    else:
        lines.append("DHCP=ipv4")
    lines += [f"DNS={d}" for d in p["dns"]]
    write(os.path.join(NETDIR, "10-bulkhead-mgmt.network"), "\n".join(lines) + "\n")
    for port in ("a", "b"):
        pname, pmac = p[port]
        write(
            os.path.join(NETDIR, f"20-bulkhead-data-{port}.network"),
            "\n".join(
                [
                    f"# Written by bulkhead-config on every boot: data port {port.upper()} ({pname}):",
                    "# up, promiscuous, no addresses, not waited for; bulkhead's XDP program",
                    "# takes its frames. Promiscuous: the frames crossing the appliance are",
                    "# addressed to the workloads' MACs, and virtual NICs (virtio-net, vmxnet3)",
                    "# drop unicast for other MACs unless the guest asks for them all.",
                    "[Match]",
                    f"MACAddress={pmac}",
                    "",
                    "[Link]",
                    "RequiredForOnline=no",
                    "Promiscuous=yes",
                    "",
                    "[Network]",
                    "LinkLocalAddressing=no",
                    "IPv6AcceptRA=no",
                    "DHCP=no",
                    "ConfigureWithoutCarrier=yes",
                    "",
                ]
            ),
        )
    # Any other NIC: left alone (no DHCP on an unknown segment).
    write(
        os.path.join(NETDIR, "99-bulkhead-other.network"),
        "# Written by bulkhead-config: NICs that are neither the management port nor a data port.\n"
        "[Match]\nName=*\nType=ether\n\n[Link]\nUnmanaged=yes\n",
    )


def apply_network(p):
    """systemd-networkd takes the new files; a static management address is
    waited for (bulkhead binds the API to it), a bounded time."""
    out = subprocess.run(["networkctl", "reload"], capture_output=True, text=True)
    if out.returncode != 0:
        console(f"bulkhead-config: networkctl reload failed: {(out.stderr or out.stdout).strip()}")
        return
    if not p["static"]:
        return
    name, addr = p["mgmt"][0], p["static"][0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", name], capture_output=True, text=True).stdout
        if f" {addr}/" in shown:
            return
        time.sleep(0.5)
    console(f"bulkhead-config: {name} did not get {addr} within 30 s; the API may fail to bind it")


def render_config(p):
    os.makedirs(ETC, exist_ok=True)
    if p["cert"]:
        write(os.path.join(ETC, "api.pem"), p["cert"], 0o644)
        write(os.path.join(ETC, "api.key"), p["key"], 0o600)
    listen = f"{p['static'][0]}:{p['api_port']}" if p["static"] else f"0.0.0.0:{p['api_port']}"
    sections = {
        "ports": {
            "a": json.dumps(p["a"][0]),
            "b": json.dumps(p["b"][0]),
            "fail_mode": json.dumps(p["fail_mode"]),
            "on_stop": json.dumps("keep"),
        },
        "dataplane": {},
        "policy": {"file": json.dumps(os.path.join(ETC, "policy.yaml"))},
        "control": {"store": json.dumps(STORE)},
        "api": {"listen": json.dumps(listen)},
        "records": {},
    }
    if p["cert"]:
        sections["api"]["cert"] = json.dumps(os.path.join(ETC, "api.pem"))
        sections["api"]["key"] = json.dumps(os.path.join(ETC, "api.key"))
    for section, values in p["extra"].items():
        sections[section].update(values)
    out = [
        "# Written by bulkhead-config on every boot from the day-0 data (docs/deploy.md);",
        "# edits here are replaced at the next boot: change the user-data instead.",
        f"# management {p['mgmt'][0]} {p['mgmt'][1]}, data A {p['a'][0]} {p['a'][1]}, data B {p['b'][0]} {p['b'][1]}",
    ]
    for section, values in sections.items():
        if not values:
            continue
        out.append(f"\n[{section}]")
        out += [f"{k} = {v}" for k, v in values.items()]
    write(os.path.join(ETC, "bulkhead.toml"), "\n".join(out) + "\n")
    write(os.path.join(ETC, "policy.yaml"), p["policy"])
    host = p["static"][0] if p["static"] else "-"
    write(os.path.join(RUN, "api-url"), f"{p['mgmt'][0]} {host} {p['api_port']}\n")


def ensure_store():
    """The store exists with bulkhead's current schema (bulkhead opens and migrates it)."""
    out = subprocess.run(
        ["/usr/bin/bulkhead", "token", "list", "--store", STORE],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise ConfigError([f"store {STORE}: {(out.stderr or out.stdout).strip()}"])


def install_token_hash(sha_hex):
    """The day-0 admin token: its SHA-256 as the active token `day0-admin`.

    bulkhead has no command that takes a token's hash (`bulkhead token create`
    makes the token itself), so this writes the row `bulkhead token create`
    would write, into the store bulkhead has just created or migrated, after
    checking that the table is the one this was written against.
    """
    digest = bytes.fromhex(sha_hex)
    con = sqlite3.connect(STORE, timeout=10)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(api_tokens)")]
        expected = ["id", "name", "role", "sha256", "created_at", "created_by", "revoked_at", "revoked_by"]
        if cols != expected:
            raise ConfigError([f"store {STORE}: api_tokens has columns {cols}, expected {expected}: cannot install the day-0 token"])
        with con:
            row = con.execute(
                "SELECT name FROM api_tokens WHERE sha256 = ? AND revoked_at IS NULL", (digest,)
            ).fetchone()
            if row:
                return f"day-0 admin token: already active as {row[0]!r}"
            now = time.time_ns()
            con.execute(
                "UPDATE api_tokens SET revoked_at = ?, revoked_by = 'day0' WHERE name = 'day0-admin' AND revoked_at IS NULL",
                (now,),
            )
            con.execute(
                "INSERT INTO api_tokens (name, role, sha256, created_at, created_by) VALUES ('day0-admin', 'admin', ?, ?, 'day0')",
                (digest, now),
            )
        return "day-0 admin token: installed as 'day0-admin' (admin)"
    finally:
        con.close()


def has_active_admin():
    con = sqlite3.connect(STORE, timeout=10)
    try:
        return con.execute("SELECT 1 FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1").fetchone() is not None
    finally:
        con.close()


def first_admin_token():
    """No token hash given and no admin token yet: make one and show it once, on the console only."""
    out = subprocess.run(
        ["/usr/bin/bulkhead", "token", "create", "--role", "admin", "--name", "admin", "--store", STORE],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise ConfigError([f"first admin token: {(out.stderr or out.stdout).strip()}"])
    token = out.stdout.strip()
    try:
        with open("/dev/console", "w", encoding="utf-8") as c:
            c.write(
                "\r\nbulkhead: no admin_token_sha256 in the day-0 data; the first admin token "
                "(shown this once, here only):\r\n"
                f"bulkhead: ADMIN TOKEN {token}\r\n\r\n"
            )
    except OSError as e:
        raise ConfigError([f"first admin token: cannot show it on the console: {e}"]) from e
    return "first admin token 'admin' created and shown once on the console"
