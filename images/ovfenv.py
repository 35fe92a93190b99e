#!/usr/bin/env python3
"""images/ovfenv.py: an OVF environment (ovf-env.xml) as vSphere writes it
for the ISO and guestinfo transports, for the tests.

  python3 images/ovfenv.py [--adapter MAC=NETWORK ...] KEY=VALUE ...

prints the document with the properties given (the keys of images/ova.sh's
ProductSection) and the vNICs' adapters. images/boot-test.sh --ovf-env puts
it on a CD-ROM; images/day0-test.py imports `env`.
"""

import sys
from xml.sax.saxutils import quoteattr


def env(props, extra="", adapters=(("00:50:56:aa:00:01", "mgmt-pg"),)):
    items = "\n".join(
        f"         <Property oe:key={quoteattr(k)} oe:value={quoteattr(v)}/>" for k, v in props.items()
    )
    nics = "\n".join(
        f'      <ve:Adapter ve:mac={quoteattr(mac)} ve:network={quoteattr(net)} ve:unitNumber="{7 + i}"/>'
        for i, (mac, net) in enumerate(adapters)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Environment
     xmlns="http://schemas.dmtf.org/ovf/environment/1"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"
     xmlns:ve="http://www.vmware.com/schema/ovfenv"
     oe:id=""
     ve:vCenterId="vm-42">
   <PlatformSection>
      <Kind>VMware ESXi</Kind>
      <Version>8.0.2</Version>
      <Vendor>VMware, Inc.</Vendor>
      <Locale>en</Locale>
   </PlatformSection>
   <PropertySection>
{items}
   </PropertySection>
{extra}
   <ve:EthernetAdapterSection>
{nics}
   </ve:EthernetAdapterSection>
</Environment>
"""


def main(args):
    props, adapters = {}, []
    while args:
        arg = args.pop(0)
        if arg == "--adapter" and args:
            mac, _, net = args.pop(0).partition("=")
            adapters.append((mac, net))
        elif "=" in arg and not arg.startswith("-"):
            key, _, value = arg.partition("=")
            props[key] = value
        else:
            sys.exit(f"images/ovfenv.py: bad argument {arg!r} (see the file's docstring)")
    sys.stdout.write(env(props, adapters=adapters or (("00:50:56:aa:00:01", "mgmt-pg"),)))


if __name__ == "__main__":
    main(sys.argv[1:])
