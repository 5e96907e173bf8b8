#!/usr/bin/env python3
"""RSS growth of a TLS terminator per 10,000 idle TLS connections, on loopback.

Opens N TLS connections (full handshakes, ALPN http/1.1) to HOST:PORT, keeps them idle, and
reports the summed RSS of every process in the given process group before and after.

usage: idle_tls_memory.py PORT PGID [N]   (run with `ulimit -n` above N + 100)
"""
import asyncio
import os
import ssl
import sys


def group_rss_kib(pgid: int) -> int:
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total


async def main() -> None:
    port, pgid = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    before = group_rss_kib(pgid)
    conns = []
    sem = asyncio.Semaphore(200)

    async def open_one():
        async with sem:
            conns.append(await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"))

    await asyncio.gather(*(open_one() for _ in range(n)))
    await asyncio.sleep(2)
    after = group_rss_kib(pgid)
    print(f"connections={len(conns)} rss_before_kib={before} rss_after_kib={after} "
          f"growth_kib_per_10k={(after - before) * 10_000 // max(len(conns), 1)}")
    for _, w in conns:
        w.close()


asyncio.run(main())
