#!/usr/bin/env python3
"""images/boot-test-probe.py: the boot test's workloads' traffic.

Run inside a workload's network namespace (`ip netns exec NS python3 ...`)
by images/boot-test.sh:

  listen PORT...              TCP echo servers on every address, until killed
  connect HOST PORT [--timeout S]
                              one connection, one line, its echo: prints `ok`
                              and exits 0; `blocked: WHY` and exits 1 when the
                              connection or the echo did not come through in
                              time; `refused` and exits 2 on a reset (the SYN
                              got through)
  stream HOST PORT --log FILE a long-lived connection sending a numbered line
                              a second; every echo appends `N EPOCH` (the
                              wall-clock time it came back) to FILE; runs
                              until killed, or exits 1 when the connection
                              breaks
"""

import argparse
import socket
import sys
import threading
import time


def echo(conn):
    with conn:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            try:
                conn.sendall(data)
            except OSError:
                return


def listen(ports):
    servers = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        servers.append(s)

    def accept(s):
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    for s in servers:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print(f"listening on {', '.join(str(p) for p in ports)}", flush=True)
    while True:
        time.sleep(3600)


def connect(host, port, timeout):
    deadline = time.monotonic() + timeout
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        print("refused")
        return 2
    except OSError as e:
        print(f"blocked: connect: {e or 'timed out'}")
        return 1
    with s:
        try:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.sendall(b"boot-test\n")
            got = b""
            while not got.endswith(b"\n"):
                data = s.recv(64)
                if not data:
                    print("blocked: the connection closed before the echo")
                    return 1
                got += data
        except OSError as e:
            print(f"blocked: echo: {e or 'timed out'}")
            return 1
    print("ok")
    return 0


def stream(host, port, log):
    s = socket.create_connection((host, port), timeout=30)
    s.settimeout(None)
    out = open(log, "a", encoding="ascii", buffering=1)

    def reader():
        buf = b""
        while True:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                out.write("closed %.3f\n" % time.time())
                sys.exit(1)
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                out.write("%s %.3f\n" % (line.decode(errors="replace"), time.time()))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    n = 0
    while t.is_alive():
        n += 1
        try:
            s.sendall(b"%d\n" % n)
        except OSError:
            return 1
        time.sleep(1)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    lp = sub.add_parser("listen")
    lp.add_argument("ports", type=int, nargs="+")
    cp = sub.add_parser("connect")
    cp.add_argument("host")
    cp.add_argument("port", type=int)
    cp.add_argument("--timeout", type=float, default=5.0)
    sp = sub.add_parser("stream")
    sp.add_argument("host")
    sp.add_argument("port", type=int)
    sp.add_argument("--log", required=True)
    a = p.parse_args()
    if a.what == "listen":
        return listen(a.ports)
    if a.what == "connect":
        return connect(a.host, a.port, a.timeout)
    return stream(a.host, a.port, a.log)


if __name__ == "__main__":
    sys.exit(main())
