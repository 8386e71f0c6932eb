"""Benchmark of the frame API: VideoLatestImage latency, throughput and frame age.

    .venv/bin/python bench/frames.py [--seconds 5] [--sizes 640x480,1920x1080] [--clients 1,4]
                                     [--source rtsp|synthetic] [--fps 25]

Starts its own real parts (Redis, a GStreamer RTSP camera, the camera process
``python -m worker.camera``, the frame server ``python -m worker.frames``) and, per frame size and
client count, runs N client processes (``edgeproxy.client.FrameClient``) in two modes:

* ``newest``: back-to-back plain ``VideoLatestImage`` calls (what an original client does); a fast
  client gets the same frame more than once;
* ``paced``: plain calls at ``--paced-hz`` per client (an AI program that works between frames);
* ``next``: each call waits for a frame newer than the last one the client got
  (``FrameClient.frames``, request metadata ``x-edgeproxy-after``); every frame once.

Reported: call latency p50/p99 (ms), calls/s and distinct frames/s per client, and frame age at
receipt = client wall clock when the reply is in - ``VideoFrame.timestamp`` (the camera's receive
wall clock of the frame's packet; same host, same clock), p50/p99 (ms).

``--source synthetic`` replaces the RTSP camera and camera process by a publisher writing frame
records to the frame bus at ``--fps`` (isolates the frame server from decoding).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from tests.support.services import Process, RedisServer, RtspCamera, free_port, wait_port, wait_until  # noqa: E402
from worker.camera import keys  # noqa: E402

HOST = "bench-host"


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def client_run(address: str, camera: str, mode: str, seconds: float, start_at: float, queue, hz: float) -> None:
    from edgeproxy.client import CameraUnavailable, FrameClient

    latencies, ages, seqs = [], [], set()
    calls = 0
    with FrameClient(address, writable=False, timeout=10) as frames:
        frames.latest(camera)  # connect, demand on
        while time.time() < start_at:
            time.sleep(0.001)
        end = time.monotonic() + seconds
        last = None
        next_call = time.monotonic()
        while time.monotonic() < end:
            if mode == "paced":
                next_call += 1.0 / hz
                delay = next_call - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.perf_counter()
            try:
                image, meta = frames.latest(camera, after=last if mode == "next" else None)
            except CameraUnavailable:
                continue
            t1 = time.perf_counter()
            received_ms = time.time() * 1000.0
            latencies.append((t1 - t0) * 1000.0)
            ages.append(received_ms - meta["timestamp"])
            seqs.add((meta["timestamp"], meta["seq"]))
            calls += 1
            last = meta
            assert image.shape[2] == 3
    queue.put({"latencies": latencies, "ages": ages, "distinct": len(seqs), "calls": calls, "seconds": seconds})


def synthetic_publisher(redis_url: str, camera: str, width: int, height: int, fps: int, stop: threading.Event):
    import redis

    client = redis.Redis.from_url(redis_url)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes() for _ in range(4)]
    seq = 0
    interval = 1.0 / fps
    next_at = time.monotonic()
    while not stop.is_set():
        seq += 1
        ts = int(time.time() * 1000)
        meta = {"seq": seq, "ts": ts, "width": width, "height": height, "pts": seq, "dts": seq,
                "time_base": 1 / fps, "frame_type": "I" if seq % fps == 1 else "P", "is_keyframe": seq % fps == 1,
                "is_corrupt": False, "codec_name": "h264", "pix_fmt": "yuv420p"}
        pipe = client.pipeline(transaction=False)
        pipe.hset(keys.frame_latest(camera), mapping={"meta": json.dumps(meta), "data": images[seq % 4]})
        pipe.expire(keys.frame_latest(camera), keys.FRAME_TTL_S)
        pipe.set(keys.status(camera), json.dumps({"state": "streaming", "fps": fps}), ex=keys.STATUS_TTL_S)
        pipe.execute()
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()


def run_size(args, workdir: Path, redis_server: RedisServer, address: str, width: int, height: int) -> list[dict]:
    camera = f"bench-{width}x{height}"
    client = redis_server.client()
    client.hset(keys.host_cameras(HOST), camera, json.dumps(
        {"camera_id": camera, "status": "running", "state": {"Status": "running", "Running": True},
         "container_id": "", "has_rtmp": False}))
    parts = []
    stop = threading.Event()
    try:
        if args.source == "rtsp":
            source = RtspCamera(workdir / "rtsp", width=width, height=height, fps=args.fps, gop=args.fps)
            parts.append(source)
            env = dict(os.environ, EDGEPROXY_CAMERA_NAME=camera, EDGEPROXY_RTSP_URL=source.url(),
                       EDGEPROXY_REDIS_URL=redis_server.url, EDGEPROXY_BUFFER_SECONDS="5")
            parts.append(Process([sys.executable, "-m", "worker.camera"], workdir / f"camera-{camera}.log", env=env))
        else:
            threading.Thread(target=synthetic_publisher, args=(redis_server.url, camera, width, height, args.fps, stop),
                             daemon=True).start()
        wait_until(lambda: (json.loads(client.get(keys.status(camera)) or b"{}")).get("state") == "streaming", 30,
                   message=f"{camera} streaming")
        from edgeproxy.client import CameraUnavailable, FrameClient

        with FrameClient(address, writable=False) as frames:  # warm up: decoding on, frames flowing
            def warm():
                try:
                    return frames.latest(camera)
                except CameraUnavailable:
                    return None
            wait_until(warm, 30, message=f"first frame of {camera}")
            time.sleep(1.0)
        rows = []
        for mode in ("newest", "paced", "next"):
            for n in args.clients:
                queue = mp.get_context("spawn").Queue()
                start_at = time.time() + 2.0
                procs = [mp.get_context("spawn").Process(target=client_run,
                                                         args=(address, camera, mode, args.seconds, start_at, queue,
                                                               args.paced_hz))
                         for _ in range(n)]
                for p in procs:
                    p.start()
                results = [queue.get(timeout=args.seconds + 60) for _ in procs]
                for p in procs:
                    p.join(10)
                latencies = [v for r in results for v in r["latencies"]]
                ages = [v for r in results for v in r["ages"]]
                rows.append({
                    "size": f"{width}x{height}", "mode": mode, "clients": n,
                    "lat_p50": pct(latencies, 50), "lat_p99": pct(latencies, 99),
                    "calls_s": sum(r["calls"] for r in results) / args.seconds / n,
                    "frames_s": sum(r["distinct"] for r in results) / args.seconds / n,
                    "age_p50": pct(ages, 50), "age_p99": pct(ages, 99),
                })
                print(format_row(rows[-1]), flush=True)
        return rows
    finally:
        stop.set()
        for part in reversed(parts):
            part.stop()


HEADER = (f"{'size':>10} {'mode':>6} {'clients':>7} {'lat p50':>8} {'lat p99':>8} {'calls/s':>8} "
          f"{'frames/s':>8} {'age p50':>8} {'age p99':>8}")


def format_row(r: dict) -> str:
    return (f"{r['size']:>10} {r['mode']:>6} {r['clients']:>7} {r['lat_p50']:>8.1f} {r['lat_p99']:>8.1f} "
            f"{r['calls_s']:>8.1f} {r['frames_s']:>8.1f} {r['age_p50']:>8.1f} {r['age_p99']:>8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--paced-hz", type=float, default=10.0, help="calls/s per client in the paced mode")
    parser.add_argument("--source", choices=("rtsp", "synthetic"), default="rtsp")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="bench-frames-"))
    redis_server = RedisServer(workdir / "redis")
    port = free_port()
    env = dict(os.environ, EDGEPROXY_GRPC_PORT=str(port), EDGEPROXY_GRPC_BIND="127.0.0.1",
               EDGEPROXY_FRAMES_REDIS_URL=redis_server.url, EDGEPROXY_HOST_NAME=HOST,
               CELERY_BROKER_URL=redis_server.url, LOG_LEVEL="warning")
    server = Process([sys.executable, "-m", "worker.frames"], workdir / "frame-server.log", env=env)
    try:
        wait_port(port, 15)
        print(f"frame API benchmark: source={args.source} fps={args.fps} {args.seconds:.0f}s per row, "
              f"{os.cpu_count()} CPUs; latency/age in ms, calls/s and frames/s per client (logs: {workdir})")
        print(HEADER, flush=True)
        rows = []
        for width, height in sizes:
            rows += run_size(args, workdir, redis_server, f"127.0.0.1:{port}", width, height)
        interval = 1000.0 / args.fps
        for r in rows:
            if r["size"] == "640x480":
                verdict = "OK" if r["age_p99"] <= interval + 5 else "over"
                print(f"target age p99 <= {interval + 5:.0f} ms at 640x480 ({r['mode']}, {r['clients']} clients): "
                      f"{r['age_p99']:.1f} ms {verdict}")
    finally:
        server.stop()
        redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
