"""The day-0 data: where it comes from, as one `bulkhead:` mapping.

Two sources, one of which is used:

- the cloud-config user-data's `bulkhead:` key (cloud-init: a NoCloud seed
  or an OpenStack config drive);
- the OVF environment (VMware vApp properties), from vSphere's
  `com.vmware.guestInfo` transport (`vmware-rpctool 'info-get
  guestinfo.ovfEnv'`, with open-vm-tools, on VMware only) or its `iso`
  transport (a CD-ROM holding ovf-env.xml). Its properties are named after
  the day-0 keys (`bulkhead.management.mac` is `bulkhead: management: mac`);
  the multi-line ones are base64 (`bulkhead.policy_base64`).

When the user-data has a `bulkhead:` key it wins, whole: the OVF properties
are then ignored (and the console says so), never mixed in key by key.
"""

import base64
import glob
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import yaml

from .common import RUN, ConfigError

USERDATA = "/var/lib/cloud/instance/user-data.txt"
OVF_ENV_NS = "http://schemas.dmtf.org/ovf/environment/1"
OVF_ENV_NAMES = ("ovf-env.xml", "ovf_env.xml", "OVF-ENV.XML", "OVF_ENV.XML")


def _port(value):
    try:
        return int(value)
    except ValueError:
        return value  # plan() says what is wrong with it


def _dns(value):
    return [d for d in re.split(r"[\s,]+", value) if d]


def _base64_text(value):
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError("not base64 of UTF-8 text") from e


# OVF property -> (section of the `bulkhead:` mapping or None, key, conversion)
OVF_PROPERTIES = {
    "bulkhead.management.mac": ("management", "mac", str),
    "bulkhead.management.address": ("management", "address", str),
    "bulkhead.management.gateway": ("management", "gateway", str),
    "bulkhead.management.dns": ("management", "dns", _dns),
    "bulkhead.management.api_port": ("management", "api_port", _port),
    "bulkhead.ports.a": ("ports", "a", str),
    "bulkhead.ports.b": ("ports", "b", str),
    "bulkhead.ports.fail_mode": ("ports", "fail_mode", str),
    "bulkhead.admin_token_sha256": (None, "admin_token_sha256", str),
    "bulkhead.policy_base64": (None, "policy", _base64_text),
    "bulkhead.api_cert_base64": (None, "api_cert", _base64_text),
    "bulkhead.api_key_base64": (None, "api_key", _base64_text),
}


def read_userdata():
    """The user-data's `bulkhead:` mapping, or None; and what was found."""
    text = None
    try:
        out = subprocess.run(
            ["cloud-init", "query", "userdata"],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        text = out.stdout
    except (OSError, subprocess.SubprocessError):
        try:
            with open(USERDATA, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            return None, "no user-data (no NoCloud or ConfigDrive seed)"
    if not text or not text.lstrip().startswith("#cloud-config"):
        return None, "user-data is not a #cloud-config document"
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError([f"user-data: not valid YAML: {e}"]) from e
    if not isinstance(doc, dict):
        raise ConfigError(["user-data: the cloud-config is not a mapping"])
    day0 = doc.get("bulkhead")
    if day0 is None:
        return None, "user-data has no `bulkhead:` key"
    if not isinstance(day0, dict):
        raise ConfigError(["user-data: `bulkhead:` must be a mapping"])
    return day0, "the cloud-config user-data (`bulkhead:`)"


def ovf_env_from_guestinfo():
    """vSphere's com.vmware.guestInfo transport (open-vm-tools' vmware-rpctool)."""
    if not shutil.which("vmware-rpctool"):
        return None
    try:
        virt = subprocess.run(["systemd-detect-virt", "--vm"], capture_output=True, text=True, timeout=10).stdout.strip()
        if virt != "vmware":
            return None
        out = subprocess.run(
            ["vmware-rpctool", "info-get guestinfo.ovfEnv"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout
    return None


def ovf_env_from_iso(devices=None, mountpoint=None):
    """vSphere's iso transport: a CD-ROM (ISO 9660, labelled "OVF ENV") with
    ovf-env.xml. Returns (text, device) or (None, None)."""
    devices = sorted(glob.glob("/dev/sr[0-9]*")) if devices is None else devices
    mountpoint = mountpoint or os.path.join(RUN, "ovf-env")
    for dev in devices:
        os.makedirs(mountpoint, exist_ok=True)
        try:
            m = subprocess.run(
                ["mount", "-t", "iso9660", "-o", "ro,nodev,nosuid,noexec", dev, mountpoint],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if m.returncode != 0:
            continue  # no medium, or not ISO 9660
        try:
            for name in OVF_ENV_NAMES:
                path = os.path.join(mountpoint, name)
                if os.path.isfile(path):
                    with open(path, encoding="utf-8") as f:
                        return f.read(), dev
        finally:
            subprocess.run(["umount", mountpoint], capture_output=True)
    return None, None


def read_ovf_env():
    """The OVF environment's text and where it came from, or (None, None)."""
    text = ovf_env_from_guestinfo()
    if text:
        return text, "guestinfo.ovfEnv"
    text, dev = ovf_env_from_iso()
    if text:
        return text, f"ISO transport, {dev}"
    return None, None


def ovf_properties(text):
    """The properties of the OVF environment's own PropertySection: {key: value}."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ConfigError([f"ovf-env.xml: not valid XML: {e}"]) from e
    if root.tag != f"{{{OVF_ENV_NS}}}Environment":
        raise ConfigError(["ovf-env.xml: not an OVF environment (its root is not Environment)"])
    props = {}
    for p in root.findall(f"{{{OVF_ENV_NS}}}PropertySection/{{{OVF_ENV_NS}}}Property"):
        key = p.get(f"{{{OVF_ENV_NS}}}key")
        if key:
            props[key] = p.get(f"{{{OVF_ENV_NS}}}value", "")
    return props


def ovf_day0(props):
    """OVF properties -> the `bulkhead:` mapping. An empty value is unset."""
    day0, problems = {}, []
    unknown = [key for key in props if key not in OVF_PROPERTIES]
    if unknown:
        problems.append(f"OVF properties unknown: {', '.join(unknown)} (known: {', '.join(OVF_PROPERTIES)})")
    for key, value in props.items():
        if key not in OVF_PROPERTIES:
            continue
        value = value.strip()
        if not value:
            continue
        section, name, convert = OVF_PROPERTIES[key]
        try:
            value = convert(value)
        except ValueError as e:
            problems.append(f"{key}: {e}")
            continue
        (day0.setdefault(section, {}) if section else day0)[name] = value
    if problems:
        raise ConfigError(problems)
    return day0


def read_day0():
    """The day-0 `bulkhead:` mapping ({} for the defaults) and a line saying where it came from."""
    userdata, found = read_userdata()
    env, where = read_ovf_env()
    if userdata is not None:
        line = f"day-0 data from {found}"
        if env:
            line += f"; the OVF environment ({where}) is ignored: the user-data wins"
        return userdata, line
    if env:
        props = ovf_properties(env)
        day0 = ovf_day0(props)
        given = sum(1 for v in props.values() if v.strip())
        return day0, f"day-0 data from the OVF environment ({where}): {given} of {len(props)} properties set"
    return {}, f"{found}, no OVF environment: defaults"
