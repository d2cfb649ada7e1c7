#!/usr/bin/env python3
"""Readiness probes for the local stack (python3 stdlib only, no pip).

  probe.py kafka    HOST:PORT            Metadata v4 request; ok once a broker is listed
  probe.py cql      HOST:PORT [QUERY]    STARTUP + QUERY (protocol v4); default query SELECT release_version
                                         FROM system.local must return a row; other queries print their rows
  probe.py registry URL                  GET URL/subjects answers a JSON array (AxonOps: null while empty)

Exit 0 and print one line on success; exit 1 and print the reason otherwise.
Each probe speaks the real protocol, so "port open" alone never counts as ready.
"""
import json
import socket
import struct
import sys
import urllib.request

TIMEOUT = 3.0


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


class Reader:
    """Cursor over a big-endian response body."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def raw(self, n):
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value

    def short_string(self):  # Kafka STRING / CQL [string]: int16 length + utf-8
        n = self.take(">h")
        return None if n < 0 else self.raw(n).decode()


# --------------------------------------------------------------------------- Kafka
def kafka_probe(addr):
    """Metadata v4 (Kafka 4.x dropped v0-v3) for no topics: lists brokers and the controller."""
    host, port = split_addr(addr)
    client_id = b"herald-probe"
    # request header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id
    header = struct.pack(">hhih", 3, 4, 42, len(client_id)) + client_id
    body = struct.pack(">i?", 0, False)  # topics: empty array; allow_auto_topic_creation=false
    msg = header + body
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        r = Reader(recv_exact(s, size))
    if r.take(">i") != 42:
        raise RuntimeError("correlation id mismatch")
    r.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        bhost = r.short_string()
        bport = r.take(">i")
        r.short_string()  # rack
        brokers.append(f"{node_id}@{bhost}:{bport}")
    cluster_id = r.short_string()
    controller = r.take(">i")
    if not brokers:
        raise RuntimeError("metadata lists no brokers yet")
    return f"kafka ok: cluster {cluster_id}, brokers {','.join(brokers)}, controller {controller}"


# --------------------------------------------------------------------------- CQL
CQL_OPCODES = {0x00: "ERROR", 0x02: "READY", 0x03: "AUTHENTICATE", 0x08: "RESULT"}


def cql_frame(opcode, body, stream):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def cql_read(sock):
    version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    body = recv_exact(sock, length)
    if opcode == 0x00:
        r = Reader(body)
        code = r.take(">i")
        raise RuntimeError(f"CQL error 0x{code:04x}: {r.short_string()}")
    return opcode, body


def cql_rows(body):
    """Decode a RESULT/Rows body into (column names, rows of text-ish values)."""
    r = Reader(body)
    kind = r.take(">i")
    if kind != 0x0002:
        raise RuntimeError(f"RESULT kind {kind} is not Rows")
    flags, ncols = r.take(">i"), r.take(">i")
    if flags & 0x0002:  # has_more_pages: skip paging state
        r.raw(r.take(">i"))
    if flags & 0x0004:  # no_metadata
        names = [f"col{i}" for i in range(ncols)]
    else:
        if flags & 0x0001:  # global_tables_spec
            r.short_string(), r.short_string()
        names = []
        for _ in range(ncols):
            if not flags & 0x0001:
                r.short_string(), r.short_string()
            names.append(r.short_string())
            skip_cql_type(r)
    rows = []
    for _ in range(r.take(">i")):
        row = []
        for _ in range(ncols):
            n = r.take(">i")
            value = None if n < 0 else r.raw(n)
            row.append(render(value))
        rows.append(row)
    return names, rows


def skip_cql_type(r):
    type_id = r.take(">H")
    if type_id == 0x0000:  # custom: class name
        r.short_string()
    elif type_id in (0x0020, 0x0022):  # list, set
        skip_cql_type(r)
    elif type_id == 0x0021:  # map
        skip_cql_type(r), skip_cql_type(r)
    elif type_id == 0x0030:  # UDT
        r.short_string(), r.short_string()
        for _ in range(r.take(">H")):
            r.short_string()
            skip_cql_type(r)
    elif type_id == 0x0031:  # tuple
        for _ in range(r.take(">H")):
            skip_cql_type(r)


def render(value):
    if value is None:
        return "null"
    try:
        text = value.decode()
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return "0x" + value.hex()


def cql_probe(addr, query="SELECT release_version FROM system.local"):
    host, port = split_addr(addr)
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        opts = {b"CQL_VERSION": b"3.0.0"}
        body = struct.pack(">H", len(opts))
        for k, v in opts.items():
            body += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
        s.sendall(cql_frame(0x01, body, 1))  # STARTUP
        opcode, _ = cql_read(s)
        if opcode != 0x02:
            raise RuntimeError(f"expected READY, got {CQL_OPCODES.get(opcode, hex(opcode))}")
        q = query.encode()
        # QUERY: [long string] query, consistency ONE, flags 0
        s.sendall(cql_frame(0x07, struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0), 2))
        opcode, body = cql_read(s)
        if opcode != 0x08:
            raise RuntimeError(f"expected RESULT, got {CQL_OPCODES.get(opcode, hex(opcode))}")
    kind = struct.unpack_from(">i", body)[0]
    if kind != 0x0002:
        return f"cql ok: result kind {kind} (not rows) for {query!r}"
    names, rows = cql_rows(body)
    if query == "SELECT release_version FROM system.local":
        if not rows:
            raise RuntimeError("system.local returned no rows")
        return f"cql ok: release_version {rows[0][0]}"
    lines = [" | ".join(names)] + [" | ".join(row) for row in rows]
    return "\n".join(lines + [f"({len(rows)} rows)"])


# --------------------------------------------------------------------------- registry
def registry_probe(url):
    with urllib.request.urlopen(url.rstrip("/") + "/subjects", timeout=TIMEOUT) as resp:
        data = json.load(resp)
    if data is None:  # AxonOps v0.2.1 memory storage answers `null` (Go nil slice) while empty
        data = []
    if not isinstance(data, list):
        raise RuntimeError(f"/subjects answered {type(data).__name__}, not a JSON array")
    return f"registry ok: {len(data)} subjects"


def main(argv):
    probes = {"kafka": kafka_probe, "cql": cql_probe, "registry": registry_probe}
    if len(argv) < 3 or argv[1] not in probes:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        print(probes[argv[1]](*argv[2:]))
        return 0
    except (OSError, RuntimeError, ValueError, struct.error) as e:
        print(f"{argv[1]} not ready: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
