"""The plan written out: the networkd files of the management NIC and the
data ports, bulkhead.toml, the policy, the API certificate, and the store
with its first admin token."""

import json
import os
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


def bulkhead(what, *args):
    """`bulkhead ARGS`: its standard output, or a ConfigError `what: why`."""
    out = subprocess.run(["/usr/bin/bulkhead", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise ConfigError([f"{what}: {(out.stderr or out.stdout).strip()}"])
    return out.stdout


def token_list():
    """`bulkhead token list` of the store (which opens and migrates it)."""
    return bulkhead(f"store {STORE}", "token", "list", "--store", STORE)


def ensure_store():
    """The store exists with bulkhead's current schema (bulkhead opens and migrates it)."""
    token_list()


def install_token_hash(sha_hex):
    """The day-0 admin token: its SHA-256 as the active admin token `day0-admin`
    (`bulkhead token import`: a token of that name is replaced, the same
    token again changes nothing)."""
    out = bulkhead("admin_token_sha256", "token", "import", "--sha256", sha_hex, "--role", "admin",
                   "--name", "day0-admin", "--by", "day0", "--store", STORE)
    return "day-0 admin token: " + out.strip()


def has_active_admin():
    """Whether the store has an active admin token (`bulkhead token list`:
    NAME ROLE CREATED BY REVOKED, names and fields without spaces)."""
    rows = [line.split() for line in token_list().splitlines()[1:]]
    return any(len(r) >= 5 and r[1] == "admin" and r[-1] == "-" for r in rows)


def first_admin_token():
    """No token hash given and no admin token yet: make one and show it once, on the console only."""
    token = bulkhead("first admin token", "token", "create", "--role", "admin", "--name", "admin",
                     "--store", STORE).strip()
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
