"""bulkhead-config's parts (/usr/lib/bulkhead/configure runs them):

  common   paths, the console, atomic writes, ConfigError
  sources  the day-0 data: the cloud-config user-data's `bulkhead:` key, or
           the OVF environment's properties (VMware: ISO or guestinfo)
  plan     the day-0 data checked against the NICs found: the rendering plan
  render   the plan written out: networkd files, bulkhead.toml, the policy,
           the store and its first admin token
"""
