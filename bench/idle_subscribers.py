"""Resident memory per idle `liveEventChanged` subscriber.

Usage: python3 bench/idle_subscribers.py ws://127.0.0.1:8080/ws 2000 <server pid>
(needs `pip install websockets`; the server on loopback, e.g. `webinar serve`). It opens N
graphql-transport-ws sockets, subscribes each, waits, and prints the server's RSS growth per socket.
"""
import asyncio, json, os, sys, websockets
N = int(sys.argv[2]); url = sys.argv[1]; pid = int(sys.argv[3])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
async def one():
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None)
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    await ws.recv()
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "subscription { liveEventChanged { id } }"}}))
    return ws
async def main():
    await asyncio.sleep(1)
    before = rss()
    socks = []
    for i in range(0, N, 100):
        socks += await asyncio.gather(*[one() for _ in range(100)])
    await asyncio.sleep(2)
    after = rss()
    print(f"{N} idle subscribers: RSS {before} KiB -> {after} KiB, {(after-before)/N:.1f} KiB each")
asyncio.run(main())
