"""CPU cost of the camera process, against plain ffmpeg doing the same work on the same stream.

    .venv/bin/python bench/ingest.py [--seconds 20] [--repeat 1] [--sizes 640x480,1920x1080] [--fps 25] [--gop 25]
                                     [--frames shm|redis]

For each size: a GStreamer RTSP camera (tests/support), a throw-away Redis, and the real camera
program (``python -m worker.camera``, default configuration: 10 s packet ring; frames into its
shared-memory ring, ``--frames redis``: frames to Redis as I420 instead). CPU seconds (utime +
stime, /proc/<pid>/stat) per minute of stream, each measured over its own window:

  (a) camera, no consumer   - demux, packet ring (XADD to Redis), status; Redis's own CPU apart
  (b) camera, every frame   - a consumer keeps ``demand:all`` alive (and reads nothing): decode +
                              the camera's output: BGR24 into the ring (``shm``), or I420 to Redis
                              (``redis``, plus Redis's own CPU taking the frames, shown apart)
  (c) camera, keyframes     - ``demand:key`` only
  (d) ffmpeg, same output   - ``ffmpeg -rtsp_transport tcp -i URL -pix_fmt <bgr24|yuv420p> -f null -``:
                              decode + conversion to the camera's output format (bgr24 for ``shm``,
                              the decoder's own yuv420p for ``redis``)
  (e) ffmpeg, no decoding   - ``ffmpeg -rtsp_transport tcp -i URL -c copy -f null -``
  (f) PyAV, no decoding     - a bare ``for packet in container.demux(stream): pass`` on the same
                              stream (same open options as the camera): the floor of any camera
                              program that receives the stream through PyAV, for reading (a)

Ratios, both sides printed: b/d (target <= 1.10: decoding to the same format), a/e (target
<= 1.25: receiving the stream without decoding), c/b (about the keyframe share). End-to-end costs
with readers (camera + frame bus + conversion + readers) are in ``bench/frames.py --cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.services import Process, RedisServer, RtspCamera, cpu_seconds, python, wait_until  # noqa: E402
from worker.camera import keys  # noqa: E402


def measure(pid: int, seconds: float, also: int | None = None):
    """CPU seconds per minute of wall time over the next ``seconds`` (of ``also`` too, as a pair)."""
    start = time.monotonic()
    start_cpu = cpu_seconds(pid)
    start_also = cpu_seconds(also) if also else 0.0
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    value = (cpu_seconds(pid) - start_cpu) / elapsed * 60.0
    if also:
        return value, (cpu_seconds(also) - start_also) / elapsed * 60.0
    return value


class UnixRedis:
    """A throw-away redis-server listening on a unix socket only (``--redis-unix``)."""

    def __init__(self, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "redis.sock"
        self.process = Process(["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm",
                                "700", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                               workdir / "redis.log")
        wait_until(lambda: self.client().ping(), 10, message="redis on a unix socket")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def client(self):
        import redis

        return redis.Redis(unix_socket_path=str(self.socket))

    def stop(self) -> None:
        self.process.stop()


class Consumer(threading.Thread):
    """Keeps a demand key alive (and reads the frame now and then, like a client would)."""

    def __init__(self, client, name: str, which: str):
        super().__init__(daemon=True)
        self.client, self.name, self.which = client, name, which
        self.stop = threading.Event()

    def run(self):
        key = keys.demand_all(self.name) if self.which == "all" else keys.demand_keyframes(self.name)
        while not self.stop.is_set():
            self.client.set(key, "1", px=keys.DEMAND_TTL_MS)
            self.stop.wait(1.0)
        self.client.delete(key)


def status(client, name: str) -> dict:
    raw = client.get(keys.status(name))
    return json.loads(raw) if raw else {}


def ffmpeg_cpu(workdir: Path, url: str, args: list[str], label: str, seconds: float, repeat: int) -> float:
    """Lowest CPU-s/min of ``ffmpeg -i url <args> -f null -`` over ``repeat`` windows."""
    values: list[float] = []
    for attempt in range(3):
        baseline = Process(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, *args,
                            "-f", "null", "-"], workdir / f"ffmpeg-{label}-{attempt}.log")
        try:
            time.sleep(3.0)
            if not baseline.alive():  # e.g. it caught the camera's media tearing down
                print(f"  ffmpeg ended early ({baseline.output().strip()[-200:]!r}); again", flush=True)
                continue
            for _ in range(repeat):
                values.append(measure(baseline.pid, seconds))
            if baseline.alive():
                break
            values.clear()
        finally:
            baseline.stop()
    if not values:
        raise RuntimeError(f"the ffmpeg baseline {label} did not run")
    return min(values)


PYAV_DEMUX = """
import sys
import av
container = av.open(sys.argv[1], format="rtsp", options={"rtsp_transport": "tcp", "analyzeduration": "100000",
                                                         "probesize": "32768"})
for packet in container.demux(container.streams.video[0]):
    pass
"""


def pyav_demux_cpu(workdir: Path, url: str, seconds: float, repeat: int) -> float:
    """Lowest CPU-s/min of a bare PyAV demux loop on ``url`` over ``repeat`` windows."""
    program = Process([python(), "-c", PYAV_DEMUX, url], workdir / "pyav-demux.log")
    try:
        time.sleep(3.0)
        return min(measure(program.pid, seconds) for _ in range(repeat))
    finally:
        program.stop()


def bench_size(workdir: Path, redis_server, width: int, height: int, fps: int, gop: int,
               seconds: float, repeat: int, frames: str = "shm") -> dict:
    """Each case measured ``repeat`` times (cases interleaved); the lowest value is kept, since other
    load on the machine only ever adds CPU time."""
    camera = RtspCamera(workdir, width=width, height=height, fps=fps, gop=gop)
    client = redis_server.client()
    name = f"bench-{width}x{height}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPROXY_")}
    shm_dir = f"/dev/shm/edgeproxy-bench-{os.getpid()}"
    env.update(EDGEPROXY_CAMERA_NAME=name, EDGEPROXY_RTSP_URL=camera.url(), EDGEPROXY_REDIS_URL=redis_server.url,
               EDGEPROXY_FRAMES_SHM_DIR=shm_dir if frames == "shm" else "off")
    runs: dict[str, list[float]] = {"a": [], "b": [], "c": [], "fps": [], "b_rate": [], "c_rate": [],
                                    "a_redis": [], "b_redis": [], "c_redis": []}
    program = Process([python(), "-m", "worker.camera"], workdir / f"{name}.log", env=env)
    try:
        wait_until(lambda: status(client, name).get("state") == "streaming", 15, message="streaming")
        time.sleep(3.0)
        for _ in range(repeat):
            before = status(client, name)
            camera_cpu, redis_cpu = measure(program.pid, seconds, also=redis_server.process.pid)
            runs["a"].append(camera_cpu)
            runs["a_redis"].append(redis_cpu)
            after = status(client, name)
            span = (after["updated_at"] - before["updated_at"]) / 1000
            runs["fps"].append((after["packets"] - before["packets"]) / span)
            assert after["decoded_frames"] == before["decoded_frames"], "decoded without a consumer"
            for label, which in (("b", "all"), ("c", "key")):
                consumer = Consumer(client, name, which)
                consumer.start()
                time.sleep(2.0)
                before = status(client, name)
                camera_cpu, redis_cpu = measure(program.pid, seconds, also=redis_server.process.pid)
                runs[label].append(camera_cpu)
                runs[f"{label}_redis"].append(redis_cpu)
                after = status(client, name)
                consumer.stop.set()
                consumer.join()
                span = (after["updated_at"] - before["updated_at"]) / 1000
                runs[f"{label}_rate"].append((after["published_frames"] - before["published_frames"]) / span)
            time.sleep(1.0)  # the consumer deleted its demand key: back to demux only
    finally:
        program.stop()
    try:
        runs["d"] = [ffmpeg_cpu(workdir, camera.url(), ["-pix_fmt", "bgr24" if frames == "shm" else "yuv420p"],
                                f"{name}-decode", seconds, repeat)]
        runs["e"] = [ffmpeg_cpu(workdir, camera.url(), ["-c", "copy"], f"{name}-copy", seconds, repeat)]
        runs["f"] = [pyav_demux_cpu(workdir, camera.url(), seconds, repeat)]
    finally:
        camera.stop()
        import shutil

        shutil.rmtree(shm_dir, ignore_errors=True)
    result = {"size": f"{width}x{height}"}
    for key in ("a", "b", "c", "d", "e", "f", "a_redis", "b_redis"):
        result[key] = min(runs[key])
    for key in ("fps", "b_rate", "c_rate"):
        result[key] = sorted(runs[key])[len(runs[key]) // 2]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per case")
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=25)
    parser.add_argument("--redis-unix", action="store_true",
                        help="frame bus on a unix socket instead of TCP loopback (cheaper frame writes)")
    parser.add_argument("--frames", choices=("shm", "redis"), default="shm",
                        help="where the camera puts decoded frames: its shared-memory ring (BGR24, the default) "
                             "or Redis (I420, EDGEPROXY_FRAMES_SHM_DIR=off)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each case this many times and keep the lowest (a busy machine only adds)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        redis_server = UnixRedis(workdir / "redis") if args.redis_unix else RedisServer(workdir / "redis")
        try:
            for size in args.sizes.split(","):
                width, height = (int(v) for v in size.lower().split("x"))
                print(f"measuring {width}x{height} ({args.seconds:g} s per case, x{args.repeat})...", flush=True)
                results.append(bench_size(workdir, redis_server, width, height, args.fps, args.gop, args.seconds,
                                          args.repeat, args.frames))
        finally:
            redis_server.stop()

    load = os.getloadavg()
    output = "BGR24 into its shared-memory ring" if args.frames == "shm" else "I420 to Redis"
    d_format = "bgr24" if args.frames == "shm" else "yuv420p"
    print()
    print(f"CPU seconds per minute of stream ({args.fps} fps, GOP {args.gop}; {args.seconds:g} s windows, best of "
          f"{args.repeat}; the camera writes {output}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {cores} cores)")
    for r in results:
        print(f"\n{r['size']} (stream {r['fps']:.1f} fps; camera published {r['b_rate']:.1f} frames/s in (b), "
              f"{r['c_rate']:.2f} in (c))")
        print(f"  (b) camera decoding every frame, output {d_format}: {r['b']:6.2f}  "
              f"(+ Redis {r['b_redis']:.2f} = {r['b'] + r['b_redis']:.2f})")
        print(f"  (d) ffmpeg decoding to {d_format} (-f null):        {r['d']:6.2f}")
        print(f"      b/d = {r['b']:.2f} / {r['d']:.2f} = {r['b'] / r['d']:.2f}  (target <= 1.10)  "
              f"{'OK' if r['b'] / r['d'] <= 1.10 else 'MISS'};  with Redis: {(r['b'] + r['b_redis']) / r['d']:.2f}")
        print(f"  (a) camera, no consumer (demux + packet ring):       {r['a']:6.2f}  "
              f"(+ Redis taking the packet ring {r['a_redis']:.2f} = {r['a'] + r['a_redis']:.2f})")
        print(f"  (e) ffmpeg -c copy -f null:                          {r['e']:6.2f}")
        print(f"      a/e = {r['a']:.2f} / {r['e']:.2f} = {r['a'] / r['e']:.2f}  (target <= 1.25)  "
              f"{'OK' if r['a'] / r['e'] <= 1.25 else 'MISS'};  with Redis: {(r['a'] + r['a_redis']) / r['e']:.2f}")
        print(f"  (f) PyAV demux alone (floor of a PyAV camera):       {r['f']:6.2f}  "
              f"f/e = {r['f'] / r['e']:.2f}; a/f = {r['a'] / r['f']:.2f} (the camera's own work on top)")
        print(f"  (c) camera, keyframes only: {r['c']:.2f}; c/b = {r['c'] / r['b']:.3f} "
              f"(keyframe share {1 / args.gop:.3f})")
    first = results[0]
    print()
    print(f"{first['size']} streams at full rate on this machine ({cores} cores, {60.0 * cores:.0f} CPU-s/min): "
          f"~{60.0 * cores / (first['b'] + first['b_redis']):.0f} decoding every frame (camera + Redis), "
          f"~{60.0 * cores / (first['a'] + first['a_redis']):.0f} with no consumer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
