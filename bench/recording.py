"""CPU cost of recording in the camera process, and how many cameras one host can record.

    bin/bench recording [--seconds 30] [--rounds 4] [--settle 3] [--sizes 640x480,1920x1080] [--fps 25]
                        [--gop 25] [--segment 10] [--cameras 8] [--dir PATH] [--pattern ball|snow]
                        [--baseline CHECKOUT]

For each size: one GStreamer RTSP camera (tests/support, shared media: every client gets the
same stream), a throw-away Redis, and two camera programs (``python -m worker.camera``, default
configuration, no consumer) reading it at the same time; in each of ``--rounds`` windows of
``--seconds`` one of them records (``recording`` control key on) and the other does not, taking
turns (a program's own bias, its core or its neighbours, weighs on both sides alike). CPU per
minute of stream of the recording side and the other, over the same windows: same stream, same
moments, same load. Ratio on/off: target <= 1.05. Both as utime + stime (/proc/<pid>/stat, 10 ms
ticks) and from the scheduler's nanosecond count (schedstat), and per thread (the threads each
program had once streaming, in the order they were made, then those started later: the recorder
thread runs only while recording is on). ``--baseline`` (another checkout of the repository, e.g.
``git archive`` of an earlier commit) adds a second pair running that checkout's camera program on
the same stream in the same windows: before and after a change, like with like.

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


def camera(name: str, url: str, redis_url: str, folder: Path, segment: float, log: Path,
           repo: Path = REPO) -> Process:
    env = {**os.environ, "PYTHONPATH": str(repo), "EDGEPROXY_CAMERA_NAME": name, "EDGEPROXY_RTSP_URL": url,
           "EDGEPROXY_REDIS_URL": redis_url, "EDGEPROXY_RECORDINGS_DIR": str(folder),
           "EDGEPROXY_RECORDING_SEGMENT_SECONDS": str(segment), "EDGEPROXY_RECORDING_MIN_FREE_MB": "64"}
    return Process([python(), "-m", "worker.camera"], log, env=env, cwd=repo)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of the process by thread id, from the scheduler's own count
    (/proc/.../schedstat, nanoseconds), not the 10 ms ticks of utime + stime: recording's share is a
    few ticks a minute."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except OSError:  # ended meanwhile
            continue
    return found


def per_thread(before: dict[int, float], after: dict[int, float], first: list[int]) -> list[float]:
    """A window's CPU seconds of the program's first threads (``first``: the ids it had once streaming,
    ascending: main, ingest, status, ...; the same in both programs, so the lists line up), then of
    all threads started later together (the recorder thread, which runs only while recording is on)."""
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    return [spent.get(tid, 0.0) for tid in first] + [sum(v for tid, v in spent.items() if tid not in first)]


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
    folder = work / f"rec-{size}"
    prefixes = ("", "baseline-") if args.baseline else ("",)
    repos = {prefix + side: Path(args.baseline) if prefix else REPO for prefix in prefixes for side in "ab"}
    procs = {name: camera(name, rtsp.url(), redis_server.url, folder, args.segment, work / f"{name}-{size}.log",
                          repo) for name, repo in repos.items()}
    roles = [prefix + role for prefix in prefixes for role in ("on", "off")]
    try:
        totals = {role: 0.0 for role in roles}
        threads: dict[str, list[float]] = {role: [] for role in roles}
        # Once streaming, before recording is switched on anywhere: the threads every program has.
        wait_until(lambda: all(streaming(client, n, False) for n in procs), 90, message="every camera streaming")
        first_threads = {n: sorted(thread_cpu(p.pid)) for n, p in procs.items()}
        precise = {role: 0.0 for role in roles}
        elapsed = 0.0
        for number in range(args.rounds):
            # Each program records in every other window: a bias of one program (its CPU, its
            # neighbours) weighs on both sides alike.
            role_of = {name: name[:-1] + ("on" if (name[-1] == "a") == (number % 2 == 0) else "off")
                       for name in procs}
            for name, role in role_of.items():
                client.set(keys.recording(name), json.dumps({"enabled": role.endswith("on"), "retention_hours": 1}))
            wait_until(lambda: all(streaming(client, n, role_of[n].endswith("on")) for n in procs), 90,  # noqa: B023
                       message="every camera streaming, the *on ones recording")
            time.sleep(args.settle)  # past the connection burst, the first segment's start
            start = time.monotonic()
            before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
            before_threads = {n: thread_cpu(p.pid) for n, p in procs.items()}

            time.sleep(args.seconds)
            took = time.monotonic() - start
            for name, proc in procs.items():
                role = role_of[name]
                totals[role] += cpu_seconds(proc.pid) - before[name]
                after = thread_cpu(proc.pid)
                spent = per_thread(before_threads[name], after, first_threads[name])
                precise[role] += sum(spent)
                threads[role] = [t + s for t, s in zip(threads[role], spent, strict=False)] if threads[role] else spent
            elapsed += took
        on_now = next(n for n, role in role_of.items() if role == "on")
        status = json.loads(client.get(keys.status(on_now)))
        per_min = {n: totals[n] / elapsed * 60 for n in totals}
        result = {"size": size, "pattern": args.pattern, "seconds_measured": round(elapsed, 1)}
        for prefix in prefixes:
            on, off = per_min[prefix + "on"], per_min[prefix + "off"]
            result[prefix + "cpu_s_per_min_on"] = round(on, 3)
            result[prefix + "cpu_s_per_min_off"] = round(off, 3)
            result[prefix + "ratio"] = round(on / off, 3) if off else None
            on, off = precise[prefix + "on"] / elapsed * 60, precise[prefix + "off"] / elapsed * 60
            result[prefix + "schedstat_cpu_s_per_min_on"] = round(on, 3)
            result[prefix + "schedstat_cpu_s_per_min_off"] = round(off, 3)
            result[prefix + "schedstat_ratio"] = round(on / off, 3) if off else None
            for side in ("on", "off"):
                result[f"{prefix}threads_cpu_s_per_min_{side}"] = [round(t / elapsed * 60, 3)
                                                                  for t in threads[prefix + side]]
        result.update({"load_avg_1min": round(os.getloadavg()[0], 2), "recording": status.get("recording")})
        return result
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
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=4, help="windows; each program records in every other one")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between switching and measuring")
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=25)
    parser.add_argument("--segment", type=float, default=10.0)
    parser.add_argument("--pattern", default="ball",
                        help="GStreamer test pattern: ball (compresses to ~0.1 Mbit/s), snow (noise: the 2 Mbit/s cap)")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--baseline", default="", help="another checkout whose camera program runs alongside "
                        "(a second on/off pair, same stream, same windows)")
    parser.add_argument("--dir", default="", help="where the throughput test records (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        work = Path(tmp)
        for size in filter(None, args.sizes.split(",")):
            result = compare(size, args, work)
            print(json.dumps(result), flush=True)
            ok = result["ratio"] is not None and result["ratio"] <= 1.05
            print(f"{size}: recording on {result['cpu_s_per_min_on']} CPU s/min, off {result['cpu_s_per_min_off']} "
                  f"-> ratio {result['ratio']} (target <= 1.05: {'met' if ok else 'MISSED'}); "
                  f"load average {result['load_avg_1min']} on {os.cpu_count()} CPUs", flush=True)
            print(f"{size}: the same from schedstat (ns, every thread): on {result['schedstat_cpu_s_per_min_on']}, "
                  f"off {result['schedstat_cpu_s_per_min_off']} -> ratio {result['schedstat_ratio']}", flush=True)
            if args.baseline:
                print(f"{size}: baseline ({args.baseline}) on {result['baseline-cpu_s_per_min_on']}, off "
                      f"{result['baseline-cpu_s_per_min_off']} -> ratio {result['baseline-ratio']}; schedstat "
                      f"on {result['baseline-schedstat_cpu_s_per_min_on']}, off "
                      f"{result['baseline-schedstat_cpu_s_per_min_off']} -> ratio {result['baseline-schedstat_ratio']}",
                      flush=True)
        if args.cameras:
            result = throughput(args, work)
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
