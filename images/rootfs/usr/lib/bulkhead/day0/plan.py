"""The day-0 data checked against the NICs found: the rendering plan.

plan() collects every problem (an unknown key, a MAC no NIC has, a policy
that does not compile ...) and raises them together as a ConfigError, so the
console lists them all at once.
"""

import json
import os
import re
import subprocess
import time

import yaml

from .common import RUN, ConfigError, write

SYSNET = "/sys/class/net"

DEFAULT_POLICY = """\
# The appliance's default policy (no `bulkhead: policy` in the day-0 data):
# learn mode, which lets everything pass and records it, so the appliance can
# be put inline first and the policy written from what it observed.
default_mode: learn
"""

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
KNOWN_KEYS = {
    "ports",
    "management",
    "admin_token_sha256",
    "api_cert",
    "api_key",
    "policy",
    "settings",
}
SETTINGS_SECTIONS = {"dataplane", "control", "records", "api", "ports"}
# Keys the appliance decides itself; `settings` may not override them.
RESERVED = {
    ("ports", "a"),
    ("ports", "b"),
    ("ports", "fail_mode"),
    ("control", "store"),
    ("api", "listen"),
    ("api", "cert"),
    ("api", "key"),
}


def nics():
    """Physical NICs (those with a device), by ifindex: [(name, mac)]."""
    found = []
    for name in os.listdir(SYSNET):
        path = os.path.join(SYSNET, name)
        if not os.path.exists(os.path.join(path, "device")):
            continue
        with open(os.path.join(path, "address"), encoding="ascii") as f:
            mac = f.read().strip().lower()
        with open(os.path.join(path, "ifindex"), encoding="ascii") as f:
            index = int(f.read().strip())
        found.append((index, name, mac))
    return [(n, m) for _, n, m in sorted(found)]


def wait_for_nics(count, seconds=30):
    """NICs appear as their drivers bind: wait a bounded time for `count`."""
    deadline = time.monotonic() + seconds
    while True:
        found = nics()
        if len(found) >= count or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def norm_mac(value, field, problems):
    if not isinstance(value, str) or not MAC_RE.match(value.strip().lower()):
        problems.append(f"{field}: {value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        return None
    return value.strip().lower()


def toml_value(v, field):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
        return "[" + ", ".join(toml_value(x, field) for x in v) + "]"
    raise ConfigError([f"{field}: {v!r}: only strings, numbers, booleans and lists of them"])


def plan(day0, found):
    """Checks the day-0 data against the NICs found; returns the rendering plan."""
    problems = []
    for key in day0:
        if key not in KNOWN_KEYS:
            problems.append(f"bulkhead.{key}: unknown key (known: {', '.join(sorted(KNOWN_KEYS))})")

    ports = day0.get("ports") or {}
    mgmt = day0.get("management") or {}
    if not isinstance(ports, dict):
        problems.append("bulkhead.ports: must be a mapping (a, b, fail_mode)")
        ports = {}
    if not isinstance(mgmt, dict):
        problems.append("bulkhead.management: must be a mapping (mac, address, gateway, dns, api_port)")
        mgmt = {}
    for key in ports:
        if key not in ("a", "b", "fail_mode"):
            problems.append(f"bulkhead.ports.{key}: unknown key (a, b, fail_mode)")
    for key in mgmt:
        if key not in ("mac", "address", "gateway", "dns", "api_port"):
            problems.append(f"bulkhead.management.{key}: unknown key (mac, address, gateway, dns, api_port)")

    by_mac = {mac: name for name, mac in found}
    unused = [mac for _, mac in found]
    roles = {}
    for role, field, given in (
        ("management", "bulkhead.management.mac", mgmt.get("mac")),
        ("a", "bulkhead.ports.a", ports.get("a")),
        ("b", "bulkhead.ports.b", ports.get("b")),
    ):
        if given is None:
            continue
        mac = norm_mac(given, field, problems)
        if mac is None:
            continue
        if mac not in by_mac:
            have = ", ".join(f"{n} {m}" for n, m in found) or "none"
            problems.append(f"{field}: no NIC has MAC {mac} (NICs: {have})")
            continue
        if mac in roles.values():
            problems.append(f"{field}: MAC {mac} is already another port")
            continue
        roles[role] = mac
        unused.remove(mac)
    # Roles not given by MAC take the remaining NICs in order (the cloud's
    # order of the ports: management first, then A, then B).
    for role in ("management", "a", "b"):
        if role in roles:
            continue
        if not unused:
            problems.append(
                f"no NIC left for {'the management port' if role == 'management' else 'data port ' + role.upper()}: "
                f"the appliance needs three NICs (found {len(found)}: "
                f"{', '.join(f'{n} {m}' for n, m in found) or 'none'})"
            )
            continue
        roles[role] = unused.pop(0)

    fail_mode = ports.get("fail_mode", "closed")
    if fail_mode not in ("closed", "open"):
        problems.append(f"bulkhead.ports.fail_mode: {fail_mode!r}: closed or open")

    address = mgmt.get("address", "dhcp")
    static = None
    if address != "dhcp":
        m = re.match(r"^(\d{1,3}(?:\.\d{1,3}){3})/(\d{1,2})$", str(address))
        if not m or int(m.group(2)) > 32 or any(int(o) > 255 for o in m.group(1).split(".")):
            problems.append(f"bulkhead.management.address: {address!r}: dhcp or an IPv4 address with its prefix (10.0.0.5/24)")
        else:
            static = (m.group(1), int(m.group(2)))
    gateway = mgmt.get("gateway")
    if gateway is not None and not re.match(r"^\d{1,3}(\.\d{1,3}){3}$", str(gateway)):
        problems.append(f"bulkhead.management.gateway: {gateway!r} is not an IPv4 address")
    dns = mgmt.get("dns", [])
    if not isinstance(dns, list) or not all(isinstance(d, str) for d in dns):
        problems.append("bulkhead.management.dns: a list of addresses")
        dns = []
    api_port = mgmt.get("api_port", 8443)
    if not isinstance(api_port, int) or isinstance(api_port, bool) or not 1 <= api_port <= 65535:
        problems.append(f"bulkhead.management.api_port: {api_port!r}: a TCP port")
        api_port = 8443

    token_hash = day0.get("admin_token_sha256")
    if token_hash is not None:
        token_hash = str(token_hash).strip().lower()
        if not re.match(r"^[0-9a-f]{64}$", token_hash):
            problems.append("bulkhead.admin_token_sha256: 64 hex digits (sha256sum of the token's text, no newline)")
            token_hash = None

    cert, key = day0.get("api_cert"), day0.get("api_key")
    if (cert is None) != (key is None):
        problems.append("bulkhead.api_cert and bulkhead.api_key: both or neither")
    for field, pem, marker in (("api_cert", cert, "CERTIFICATE"), ("api_key", key, "PRIVATE KEY")):
        if pem is not None and (not isinstance(pem, str) or marker not in pem):
            problems.append(f"bulkhead.{field}: a PEM text ({marker})")

    policy = day0.get("policy")
    if policy is None:
        policy_text = DEFAULT_POLICY
    elif isinstance(policy, str):
        policy_text = policy
    elif isinstance(policy, dict):
        policy_text = yaml.safe_dump(policy, sort_keys=False)
    else:
        problems.append("bulkhead.policy: the policy model, as a mapping or as YAML text")
        policy_text = DEFAULT_POLICY

    if not any(pr.startswith("bulkhead.policy") for pr in problems):
        problems.extend(policy_problems(policy_text))

    settings = day0.get("settings") or {}
    extra = {}
    if not isinstance(settings, dict):
        problems.append("bulkhead.settings: a mapping of config sections (dataplane, records, ...)")
        settings = {}
    for section, values in settings.items():
        if section not in SETTINGS_SECTIONS or not isinstance(values, dict):
            problems.append(f"bulkhead.settings.{section}: not a config section ({', '.join(sorted(SETTINGS_SECTIONS))})")
            continue
        for k, v in values.items():
            if (section, k) in RESERVED:
                problems.append(f"bulkhead.settings.{section}.{k}: set by the appliance from the other day-0 keys")
                continue
            try:
                extra.setdefault(section, {})[k] = toml_value(v, f"bulkhead.settings.{section}.{k}")
            except ConfigError as e:
                problems.extend(e.problems)

    if problems:
        raise ConfigError(problems)
    names = {mac: name for name, mac in found}
    return {
        "mgmt": (names[roles["management"]], roles["management"]),
        "a": (names[roles["a"]], roles["a"]),
        "b": (names[roles["b"]], roles["b"]),
        "fail_mode": fail_mode,
        "static": static,
        "gateway": gateway,
        "dns": dns,
        "api_port": api_port,
        "token_hash": token_hash,
        "cert": cert,
        "key": key,
        "policy": policy_text,
        "extra": extra,
    }


def policy_problems(text):
    """`bulkhead policy check` of the day-0 policy: its problems, one a line."""
    os.makedirs(RUN, exist_ok=True)
    path = os.path.join(RUN, "policy-check.yaml")
    write(path, text, 0o600)
    out = subprocess.run(["/usr/bin/bulkhead", "policy", "check", path], capture_output=True, text=True)
    os.remove(path)
    if out.returncode == 0:
        return []
    lines = [
        l.strip()
        for l in (out.stdout + out.stderr).splitlines()
        if l.strip() and not re.match(r"^bulkhead: \d+ problems?$", l.strip())
    ]
    return ["bulkhead.policy: " + l.replace(path + ": ", "") for l in lines] or ["bulkhead.policy: refused"]
