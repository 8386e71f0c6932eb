"""CPU cost of recording in the camera process, and how many cameras one host can record.

    bin/bench recording [--seconds 20] [--rounds 3] [--sizes 640x480,1920x1080] [--fps 25] [--gop 25]
                        [--segment 10] [--cameras 8] [--dir PATH] [--pattern ball|snow]

For each size: one GStreamer RTSP camera (tests/support, shared media: every client gets the
same stream), a throw-away Redis, and two camera programs (``python -m worker.camera``, default
configuration, no consumer) reading it at the same time, one recording (``recording`` control key
on) and one not. CPU seconds (utime + stime, /proc/<pid>/stat) per minute of stream, both measured
over the same windows (``--rounds`` windows of ``--seconds``): same stream, same moments, same load.
Ratio on/off: target <= 1.05.

Then write throughput: ``--cameras`` recording camera programs at 1080p at once, their bytes per
second and CPU, the host's free CPU and a sequential write test of ``--dir`` (256 MiB, fsync): how
many cameras one host records before CPU or disk is the limit (an estimate from those figures).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.services import Process, RedisServer, RtspCamera, cpu_seconds, python, wait_until  # noqa: E402
from worker.camera import keys  # noqa: E402


def camera(name: str, url: str, redis_url: str, folder: Path, segment: float, log: Path) -> Process:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEPROXY_CAMERA_NAME": name, "EDGEPROXY_RTSP_URL": url,
           "EDGEPROXY_REDIS_URL": redis_url, "EDGEPROXY_RECORDINGS_DIR": str(folder),
           "EDGEPROXY_RECORDING_SEGMENT_SECONDS": str(segment), "EDGEPROXY_RECORDING_MIN_FREE_MB": "64"}
    return Process([python(), "-m", "worker.camera"], log, env=env)


def streaming(client, name: str, recording: bool) -> bool:
    raw = client.get(keys.status(name))
    if not raw:
        return False
    status = json.loads(raw)
    state = (status.get("recording") or {}).get("state")
    return status.get("state") == "streaming" and (state == "recording") == recording


def compare(size: str, args, work: Path) -> dict:
    width, height = (int(v) for v in size.split("x"))
    rtsp = RtspCamera(work / f"cam-{size}", width=width, height=height, fps=args.fps, gop=args.gop,
                      pattern=args.pattern)
    redis_server = RedisServer(work / f"redis-{size}")
    client = redis_server.client()
    client.set(keys.recording("on"), json.dumps({"enabled": True, "retention_hours": 1}))
    folder = work / f"rec-{size}"
    procs = {name: camera(name, rtsp.url(), redis_server.url, folder, args.segment, work / f"{name}-{size}.log")
             for name in ("on", "off")}
    try:
        wait_until(lambda: streaming(client, "on", True) and streaming(client, "off", False), 30,
                   message="both cameras streaming, one recording")
        time.sleep(2.0)  # past the connection burst
        totals = {"on": 0.0, "off": 0.0}
        elapsed = 0.0
        for _ in range(args.rounds):
            start = time.monotonic()
            before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
            time.sleep(args.seconds)
            took = time.monotonic() - start
            for name, proc in procs.items():
                totals[name] += cpu_seconds(proc.pid) - before[name]
            elapsed += took
        status = json.loads(client.get(keys.status("on")))
        per_min = {n: totals[n] / elapsed * 60 for n in totals}
        return {"size": size, "pattern": args.pattern, "cpu_s_per_min_on": round(per_min["on"], 2),
                "cpu_s_per_min_off": round(per_min["off"], 2),
                "ratio": round(per_min["on"] / per_min["off"], 3) if per_min["off"] else None,
                "recording": status.get("recording")}
    finally:
        for proc in procs.values():
            proc.stop()
        redis_server.stop()
        rtsp.stop()
        shutil.rmtree(folder, ignore_errors=True)


def disk_write_mb_s(folder: Path, mb: int = 256) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "write-test.bin"
    block = os.urandom(1024 * 1024)
    start = time.monotonic()
    with open(path, "wb") as handle:
        for _ in range(mb):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    took = time.monotonic() - start
    path.unlink()
    return mb / took


def throughput(args, work: Path) -> dict:
    rtsp = RtspCamera(work / "cam-many", width=1920, height=1080, fps=args.fps, gop=args.gop, pattern=args.pattern)
    redis_server = RedisServer(work / "redis-many")
    client = redis_server.client()
    folder = Path(args.dir) if args.dir else work / "rec-many"
    names = [f"cam{i}" for i in range(args.cameras)]
    for name in names:
        client.set(keys.recording(name), json.dumps({"enabled": True, "retention_hours": 1}))
    procs = {n: camera(n, rtsp.url(), redis_server.url, folder, args.segment, work / f"{n}.log") for n in names}
    try:
        wait_until(lambda: all(streaming(client, n, True) for n in names), 60, message="every camera recording")
        time.sleep(2.0)
        before_cpu = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        before_bytes = sum(f.stat().st_size for f in folder.rglob("*.mp4"))
        start = time.monotonic()
        time.sleep(args.seconds)
        took = time.monotonic() - start
        after_bytes = sum(f.stat().st_size for f in folder.rglob("*.mp4"))
        cpu_per_camera = sum(cpu_seconds(p.pid) - before_cpu[n] for n, p in procs.items()) / len(procs) / took
        errors = sum((json.loads(client.get(keys.status(n)) or "{}").get("recording") or {}).get("errors", 0)
                     for n in names)
        bytes_per_camera = max(0, after_bytes - before_bytes) / len(procs) / took
    finally:
        for proc in procs.values():
            proc.stop()
        redis_server.stop()
        rtsp.stop()
    write = disk_write_mb_s(folder)
    shutil.rmtree(folder, ignore_errors=True)
    cpus = os.cpu_count() or 1
    by_cpu = cpus / cpu_per_camera if cpu_per_camera else None
    by_disk = write * 1024 * 1024 / bytes_per_camera if bytes_per_camera else None
    return {"cameras": args.cameras, "size": "1920x1080", "cpu_cores_per_camera": round(cpu_per_camera, 4),
            "bytes_per_s_per_camera": int(bytes_per_camera), "recording_errors": errors, "cpus": cpus,
            "disk_write_mb_s": round(write, 1),
            "estimated_cameras_by_cpu": int(by_cpu) if by_cpu else None,
            "estimated_cameras_by_disk": int(by_disk) if by_disk else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=25)
    parser.add_argument("--segment", type=float, default=10.0)
    parser.add_argument("--pattern", default="ball",
                        help="GStreamer test pattern: ball (compresses to ~0.1 Mbit/s), snow (noise: the 2 Mbit/s cap)")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--dir", default="", help="where the throughput test records (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        work = Path(tmp)
        for size in filter(None, args.sizes.split(",")):
            result = compare(size, args, work)
            print(json.dumps(result), flush=True)
            ok = result["ratio"] is not None and result["ratio"] <= 1.05
            print(f"{size}: recording on {result['cpu_s_per_min_on']} CPU s/min, off {result['cpu_s_per_min_off']} "
                  f"-> ratio {result['ratio']} (target <= 1.05: {'met' if ok else 'MISSED'})", flush=True)
        if args.cameras:
            result = throughput(args, work)
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
