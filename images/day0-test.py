#!/usr/bin/env python3
"""images/day0-test.py: bulkhead-config's day-0 parts, on the host, no VM.

  python3 images/day0-test.py

The OVF environment's properties become the same `bulkhead:` mapping as the
user-data (vSphere's ovf-env.xml as it writes it, empty values unset, base64
texts decoded, unknown properties and bad base64 refused); the user-data
wins over the OVF environment; the plan of an OVF-configured appliance picks
the NICs by the properties' MACs; the data ports' networkd files make them
promiscuous. Needs python3 and python3-yaml.
"""

import base64
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
TMP = tempfile.mkdtemp(prefix="bulkhead-day0-test.")
os.environ["BULKHEAD_ETC"] = os.path.join(TMP, "etc")
os.environ["BULKHEAD_RUN"] = os.path.join(TMP, "run")
os.environ["BULKHEAD_NETDIR"] = os.path.join(TMP, "network")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "rootfs/usr/lib/bulkhead"))

from day0 import plan as plan_mod  # noqa: E402
from day0 import render, sources  # noqa: E402
from day0.common import ConfigError  # noqa: E402
from ovfenv import env  # noqa: E402

POLICY = "default_mode: enforce\nrules: []\n"


FULL = {
    "bulkhead.management.mac": "00:50:56:AA:00:01",
    "bulkhead.management.address": "10.0.0.5/24",
    "bulkhead.management.gateway": "10.0.0.1",
    "bulkhead.management.dns": "10.0.0.2, 10.0.0.3",
    "bulkhead.management.api_port": "9443",
    "bulkhead.ports.a": "00:50:56:aa:00:0a",
    "bulkhead.ports.b": "00:50:56:aa:00:0b",
    "bulkhead.ports.fail_mode": "open",
    "bulkhead.admin_token_sha256": "ab" * 32,
    "bulkhead.api_cert_base64": "",
    "bulkhead.api_key_base64": "",
    "bulkhead.policy_base64": base64.b64encode(POLICY.encode()).decode(),
}


class OvfEnvironment(unittest.TestCase):
    def test_properties_become_the_day0_mapping(self):
        day0 = sources.ovf_day0(sources.ovf_properties(env(FULL)))
        self.assertEqual(
            day0,
            {
                "management": {
                    "mac": "00:50:56:AA:00:01",
                    "address": "10.0.0.5/24",
                    "gateway": "10.0.0.1",
                    "dns": ["10.0.0.2", "10.0.0.3"],
                    "api_port": 9443,
                },
                "ports": {"a": "00:50:56:aa:00:0a", "b": "00:50:56:aa:00:0b", "fail_mode": "open"},
                "admin_token_sha256": "ab" * 32,
                "policy": POLICY,
            },
        )

    def test_empty_values_are_unset(self):
        props = {k: "" for k in FULL}
        self.assertEqual(sources.ovf_day0(sources.ovf_properties(env(props))), {})

    def test_other_entities_properties_are_not_read(self):
        entity = """   <Entity oe:id="other-vm">
      <PropertySection>
         <Property oe:key="bulkhead.ports.a" oe:value="00:50:56:ff:ff:ff"/>
      </PropertySection>
   </Entity>"""
        props = sources.ovf_properties(env({"bulkhead.ports.a": "00:50:56:aa:00:0a"}, entity))
        self.assertEqual(props, {"bulkhead.ports.a": "00:50:56:aa:00:0a"})

    def test_bad_base64_and_unknown_properties_are_problems(self):
        with self.assertRaises(ConfigError) as e:
            sources.ovf_day0({"bulkhead.policy_base64": "not base64!", "bulkhead.bogus": "1"})
        text = "\n".join(e.exception.problems)
        self.assertIn("bulkhead.policy_base64: not base64 of UTF-8 text", text)
        self.assertIn("OVF properties unknown: bulkhead.bogus (known: bulkhead.management.mac, ", text)

    def test_a_port_that_is_not_a_number_is_left_for_the_plan_to_refuse(self):
        day0 = sources.ovf_day0({"bulkhead.management.api_port": "84x3"})
        self.assertEqual(day0, {"management": {"api_port": "84x3"}})

    def test_not_an_environment(self):
        for text in ("<nope", '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>'):
            with self.assertRaises(ConfigError):
                sources.ovf_properties(text)

    def test_no_cdrom_no_environment(self):
        self.assertEqual(sources.ovf_env_from_iso(devices=[]), (None, None))


class Precedence(unittest.TestCase):
    def setUp(self):
        self.saved = (sources.read_userdata, sources.read_ovf_env)

    def tearDown(self):
        sources.read_userdata, sources.read_ovf_env = self.saved

    def test_user_data_wins_whole(self):
        sources.read_userdata = lambda: ({"ports": {"fail_mode": "closed"}}, "the cloud-config user-data (`bulkhead:`)")
        sources.read_ovf_env = lambda: (env(FULL), "ISO transport, /dev/sr0")
        day0, line = sources.read_day0()
        self.assertEqual(day0, {"ports": {"fail_mode": "closed"}})
        self.assertIn("the OVF environment (ISO transport, /dev/sr0) is ignored", line)

    def test_ovf_environment_without_user_data(self):
        sources.read_userdata = lambda: (None, "no user-data (no NoCloud or ConfigDrive seed)")
        sources.read_ovf_env = lambda: (env(FULL), "guestinfo.ovfEnv")
        day0, line = sources.read_day0()
        self.assertEqual(day0["ports"]["fail_mode"], "open")
        self.assertEqual(line, "day-0 data from the OVF environment (guestinfo.ovfEnv): 10 of 12 properties set")

    def test_neither_gives_the_defaults(self):
        sources.read_userdata = lambda: (None, "no user-data (no NoCloud or ConfigDrive seed)")
        sources.read_ovf_env = lambda: (None, None)
        self.assertEqual(sources.read_day0(), ({}, "no user-data (no NoCloud or ConfigDrive seed), no OVF environment: defaults"))


class PlanAndRender(unittest.TestCase):
    NICS = [("ens192", "00:50:56:aa:00:0b"), ("ens224", "00:50:56:aa:00:01"), ("ens256", "00:50:56:aa:00:0a")]

    def setUp(self):
        self.saved = plan_mod.policy_problems
        plan_mod.policy_problems = lambda text: []  # `bulkhead policy check` is not on the host

    def tearDown(self):
        plan_mod.policy_problems = self.saved

    def test_ovf_configured_appliance(self):
        p = plan_mod.plan(sources.ovf_day0(FULL), self.NICS)
        self.assertEqual(p["mgmt"], ("ens224", "00:50:56:aa:00:01"))
        self.assertEqual(p["a"], ("ens256", "00:50:56:aa:00:0a"))
        self.assertEqual(p["b"], ("ens192", "00:50:56:aa:00:0b"))
        self.assertEqual((p["static"], p["gateway"], p["dns"], p["api_port"]), (("10.0.0.5", 24), "10.0.0.1", ["10.0.0.2", "10.0.0.3"], 9443))
        self.assertEqual((p["fail_mode"], p["token_hash"], p["policy"]), ("open", "ab" * 32, POLICY))

    def test_ovf_problems_name_the_day0_key(self):
        props = dict(FULL, **{"bulkhead.ports.b": "00:50:56:aa:00:99", "bulkhead.management.api_port": "84x3"})
        with self.assertRaises(ConfigError) as e:
            plan_mod.plan(sources.ovf_day0(props), self.NICS)
        text = "\n".join(e.exception.problems)
        self.assertIn("bulkhead.ports.b: no NIC has MAC 00:50:56:aa:00:99", text)
        self.assertIn("bulkhead.management.api_port: '84x3': a TCP port", text)

    def test_data_ports_are_promiscuous_without_addresses(self):
        p = plan_mod.plan(sources.ovf_day0(FULL), self.NICS)
        render.render_network(p)
        for port in ("a", "b"):
            with open(os.path.join(os.environ["BULKHEAD_NETDIR"], f"20-bulkhead-data-{port}.network"), encoding="utf-8") as f:
                text = f.read()
            self.assertIn("\nPromiscuous=yes\n", text)
            self.assertIn("\nDHCP=no\n", text)
        with open(os.path.join(os.environ["BULKHEAD_NETDIR"], "10-bulkhead-mgmt.network"), encoding="utf-8") as f:
            mgmt = f.read()
        self.assertIn("Address=10.0.0.5/24\nGateway=10.0.0.1\nDNS=10.0.0.2\nDNS=10.0.0.3\n", mgmt)


if __name__ == "__main__":
    try:
        unittest.main(verbosity=1)
    finally:
        import shutil

        shutil.rmtree(TMP, ignore_errors=True)
