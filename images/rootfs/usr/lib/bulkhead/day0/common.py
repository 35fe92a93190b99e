"""What every part of bulkhead-config shares: paths, the console, writes."""

import os

ETC = os.environ.get("BULKHEAD_ETC", "/etc/bulkhead")
RUN = os.environ.get("BULKHEAD_RUN", "/run/bulkhead")
NETDIR = os.environ.get("BULKHEAD_NETDIR", "/run/systemd/network")
STATE = "/var/lib/bulkhead"
STORE = STATE + "/bulkhead.db"


class ConfigError(Exception):
    """The day-0 data cannot be applied; `problems` says why, one a line."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


def console(line):
    """A line on the console (the serial port) and in the journal."""
    print(line, flush=True)
    try:
        with open("/dev/console", "w", encoding="utf-8") as c:
            c.write(line + "\r\n")
    except OSError:
        pass


def write(path, text, mode=0o644):
    """Writes `path` atomically (a temporary file renamed over it)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
