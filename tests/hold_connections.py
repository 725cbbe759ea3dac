#!/usr/bin/env python3
"""Hold TLS connections to pgvault serve open, as a client that connects and sends nothing.

usage: hold_connections.py PORT COUNT SOURCE_ADDR CAFILE HOLD_SECONDS [--one-request]

Opens COUNT connections to 127.0.0.1:PORT from SOURCE_ADDR (a loopback address), each with a
completed TLS handshake (with --one-request: each then sends one keep-alive GET / and reads the
answer), prints "handshakes N", holds them HOLD_SECONDS, and prints "closed M": how many of
the N the server closed meanwhile. Used by tests/web_cluster.sh (issue 26: connection limits
and timeouts).
"""
import socket
import ssl
import sys
import time

port, count, source, cafile, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
one_request = "--one-request" in sys.argv[6:]
ctx = ssl.create_default_context(cafile=cafile)
held = []
for _ in range(count):
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(source, 0))
        conn = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        if one_request:
            conn.sendall(b"GET /app.css HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = conn.recv(65536)
                if not chunk:
                    raise OSError("closed before the answer")
                got += chunk
            head, _, rest = got.partition(b"\r\n\r\n")
            length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
            while len(rest) < length:
                rest += conn.recv(65536)
        held.append(conn)
    except (OSError, StopIteration):
        pass
print(f"handshakes {len(held)}", flush=True)
time.sleep(hold)
closed = 0
for conn in held:
    conn.settimeout(0.5)
    try:
        if conn.recv(1) == b"":
            closed += 1
    except socket.timeout:
        pass
    except (OSError, ssl.SSLError):
        closed += 1
print(f"closed {closed}", flush=True)
