"""CPU cost of the camera process, against plain ffmpeg doing the same work on the same stream.

    .venv/bin/python bench/ingest.py [--seconds 20] [--repeat 1] [--sizes 640x480,1920x1080] [--fps 25] [--gop 25]
                                     [--frames shm|redis] [--baseline REF]

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

Every program runs at the same time on the same stream (the test camera shares its media) and is
measured over the same windows, so the machine's other load weighs on both sides of a ratio alike:
(a), (e) and (f) together; (b) and (d) together (ffmpeg decoding starts a few seconds before that
window and stops after it); (c). CPU from the scheduler's nanosecond count of every thread
(/proc/<pid>/task/*/schedstat), not 10 ms ticks. The camera's threads are printed apart (ingest is
the busiest; the rest: status writer, main thread's watchdog, idle recorder). ``--baseline REF``
(a git ref, e.g. ``main``; extracted with ``git archive``) runs that commit's camera program too,
on the same stream, in the same windows: before and after, like with like (Redis's CPU is then
that of both cameras' writes).

Redis is measured alone first and last, with nothing connected (its own timers cost about 0.09 CPU-s/min on
this machine): one Redis serves every camera of a host, so "with Redis" counts a camera's share, what
the cameras add to that, divided among them; Redis's whole CPU in the window is printed beside it.
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

from bench.baseline import baseline_tree  # noqa: E402
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


def thread_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (scheduler's nanosecond count), by thread id."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError):  # ended meanwhile
            continue
    return found


def measure_all(pids: dict[str, int], seconds: float) -> dict[str, dict]:
    """CPU-s per minute of wall time of each process over the same ``seconds``: ``{"cpu", "threads"}``
    (threads: each thread's CPU-s/min, busiest first)."""
    start = time.monotonic()
    before = {name: thread_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    result = {}
    for name, pid in pids.items():
        after = thread_seconds(pid)
        spent = sorted(((value - before[name].get(tid, 0.0)) / elapsed * 60.0 for tid, value in after.items()),
                       reverse=True)
        result[name] = {"cpu": sum(spent), "threads": spent}
    return result


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
        baseline = ffmpeg_program(workdir, url, args, f"{label}-{attempt}")
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


def camera_program(workdir: Path, name: str, url: str, redis_url: str, frames: str, repo: Path = REPO) -> Process:
    """``python -m worker.camera`` of ``repo`` (this tree or a baseline), default configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPROXY_")}
    # Frames in tmpfs like the default /dev/shm/edgeproxy, in a folder of this run's own.
    env.update(PYTHONPATH=str(repo), EDGEPROXY_CAMERA_NAME=name, EDGEPROXY_RTSP_URL=url, EDGEPROXY_REDIS_URL=redis_url,
               EDGEPROXY_FRAMES_SHM_DIR=f"/dev/shm/edgeproxy-bench-{os.getpid()}" if frames == "shm" else "off")
    return Process([python(), "-m", "worker.camera"], workdir / f"{name}.log", env=env, cwd=repo)


def ffmpeg_program(workdir: Path, url: str, args: list[str], label: str) -> Process:
    return Process(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, *args,
                    "-f", "null", "-"], workdir / f"ffmpeg-{label}.log")


def bench_size(workdir: Path, redis_server, width: int, height: int, fps: int, gop: int,
               seconds: float, repeat: int, frames: str = "shm", baseline: Path | None = None) -> dict:
    """Each case measured ``repeat`` times (cases interleaved, every program in the same windows); the
    lowest value is kept, since other load on the machine only ever adds CPU time."""
    camera = RtspCamera(workdir, width=width, height=height, fps=fps, gop=gop)
    client = redis_server.client()
    size = f"{width}x{height}"
    names = {"new": f"bench-{size}"}
    if baseline is not None:
        names["old"] = f"bench-{size}-baseline"
    d_format = "bgr24" if frames == "shm" else "yuv420p"
    runs: dict[str, list] = {key: [] for key in ("a", "b", "c", "d", "e", "f", "a_old", "b_old", "c_old", "fps",
                                                 "b_rate", "c_rate", "a_redis", "b_redis", "c_redis",
                                                 "a_threads", "b_threads")}
    programs = {side: camera_program(workdir, name, camera.url(), redis_server.url, frames,
                                     REPO if side == "new" else baseline) for side, name in names.items()}
    copy = demux = None
    try:
        for name in names.values():  # a loaded machine may take a while (each opens the stream)
            wait_until(lambda n=name: status(client, n).get("state") == "streaming", 60, message=f"{name} streaming")
        copy = ffmpeg_program(workdir, camera.url(), ["-c", "copy"], f"{size}-copy")
        demux = Process([python(), "-c", PYAV_DEMUX, camera.url()], workdir / f"pyav-demux-{size}.log")
        time.sleep(4.0)
        for _ in range(repeat):
            pids = {side: program.pid for side, program in programs.items()}
            before = status(client, names["new"])
            got = measure_all({**pids, "e": copy.pid, "f": demux.pid, "redis": redis_server.process.pid}, seconds)
            after = status(client, names["new"])
            if not (copy.alive() and demux.alive()):
                raise RuntimeError(f"a reference program ended: ffmpeg copy {copy.output()[-300:]!r}, "
                                   f"PyAV demux {demux.output()[-300:]!r}")
            runs["a"].append(got["new"]["cpu"])
            runs["a_threads"].append(got["new"]["threads"])
            runs["e"].append(got["e"]["cpu"])
            runs["f"].append(got["f"]["cpu"])
            runs["a_redis"].append(got["redis"]["cpu"])
            if "old" in got:
                runs["a_old"].append(got["old"]["cpu"])
            span = (after["updated_at"] - before["updated_at"]) / 1000
            runs["fps"].append((after["packets"] - before["packets"]) / span)
            assert after["decoded_frames"] == before["decoded_frames"], "decoded without a consumer"
            for label, which in (("b", "all"), ("c", "key")):
                consumers = [Consumer(client, name, which) for name in names.values()]
                for consumer in consumers:
                    consumer.start()
                decode = ffmpeg_program(workdir, camera.url(), ["-pix_fmt", d_format], f"{size}-decode") \
                    if label == "b" else None
                try:
                    time.sleep(3.0)  # demand seen, the decoder past its first keyframe; ffmpeg past its probing
                    before = status(client, names["new"])
                    extra = {"d": decode.pid} if decode is not None else {}
                    got = measure_all({**pids, **extra, "redis": redis_server.process.pid}, seconds)
                    after = status(client, names["new"])
                    if decode is not None and not decode.alive():
                        raise RuntimeError(f"ffmpeg decoding ended early: {decode.output()[-300:]!r}")
                finally:
                    if decode is not None:
                        decode.stop()
                    for consumer in consumers:
                        consumer.stop.set()
                    for consumer in consumers:
                        consumer.join()
                runs[label].append(got["new"]["cpu"])
                runs[f"{label}_redis"].append(got["redis"]["cpu"])
                if label == "b":
                    runs["d"].append(got["d"]["cpu"])
                    runs["b_threads"].append(got["new"]["threads"])
                if "old" in got:
                    runs[f"{label}_old"].append(got["old"]["cpu"])
                span = (after["updated_at"] - before["updated_at"]) / 1000
                runs[f"{label}_rate"].append((after["published_frames"] - before["published_frames"]) / span)
            time.sleep(1.0)  # the consumers deleted their demand keys: back to demux only
    finally:
        for program in (*programs.values(), copy, demux):
            if program is not None:
                program.stop()
        camera.stop()
        import shutil

        shutil.rmtree(f"/dev/shm/edgeproxy-bench-{os.getpid()}", ignore_errors=True)
    result = {"size": size}
    for key in ("a", "b", "c", "d", "e", "f", "a_redis", "b_redis", "a_old", "b_old", "c_old"):
        result[key] = min(runs[key]) if runs[key] else None
    for key in ("a", "b"):  # the threads of the window that gave the lowest total
        result[f"{key}_threads"] = runs[f"{key}_threads"][runs[key].index(result[key])]
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
    parser.add_argument("--baseline", default="",
                        help="git ref (e.g. main) whose camera program runs alongside, in the same windows")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        redis_server = UnixRedis(workdir / "redis") if args.redis_unix else RedisServer(workdir / "redis")
        baseline, commit = baseline_tree(args.baseline, workdir) if args.baseline else (None, "")
        try:
            # Redis's own cost with nothing connected (its timers): one Redis serves every camera of a
            # host, so a camera's share is what it adds to this, not the whole process.
            time.sleep(2.0)
            redis_idle = measure_all({"redis": redis_server.process.pid}, args.seconds)["redis"]["cpu"]
            for size in args.sizes.split(","):
                width, height = (int(v) for v in size.lower().split("x"))
                print(f"measuring {width}x{height} ({args.seconds:g} s per case, x{args.repeat})...", flush=True)
                results.append(bench_size(workdir, redis_server, width, height, args.fps, args.gop, args.seconds,
                                          args.repeat, args.frames, baseline))
            # Again once every camera stopped: the lower of the two is charged as Redis's own (a
            # Redis just started may still be busy, which would make the cameras' share look smaller).
            redis_idle_after = measure_all({"redis": redis_server.process.pid}, args.seconds)["redis"]["cpu"]
        finally:
            redis_server.stop()

    load = os.getloadavg()
    output = "BGR24 into its shared-memory ring" if args.frames == "shm" else "I420 to Redis"
    d_format = "bgr24" if args.frames == "shm" else "yuv420p"
    print()
    print(f"CPU seconds per minute of stream ({args.fps} fps, GOP {args.gop}; {args.seconds:g} s windows, best of "
          f"{args.repeat}; the camera writes {output}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {cores} cores)")
    print("Each side: the process's every thread. Camera: RTSP demux (PyAV), packet ring (one XADD batch a "
          "second), demand (its ring's demand file per packet; the Redis keys once a second, every 150 ms with "
          "--frames redis), status key and "
          "control keys (one round trip a second), watchdog; with a consumer also decoding and the "
          f"{d_format} conversion into its output. ffmpeg: its demuxer, decoder (its default threads) and "
          "conversion, -f null writes nothing.")
    if args.baseline:
        print(f"old = the camera program of {args.baseline} ({commit}), same stream, same windows")
    cameras = 2 if args.baseline else 1
    print(f"Redis alone, nothing connected: {redis_idle:.2f} CPU-s/min before the cameras, "
          f"{redis_idle_after:.2f} after (its timers). \"with Redis\" below counts a camera's share of the "
          f"host's Redis: (Redis in the window - the lower of those) / {cameras} camera(s) in the window.")
    redis_idle = min(redis_idle, redis_idle_after)

    def share(redis_cpu: float) -> float:
        return max(0.0, redis_cpu - redis_idle) / cameras

    def threads(values: list[float]) -> str:
        return " + ".join(f"{v:.3f}" for v in values if v >= 0.0005) or "0"

    for r in results:
        print(f"\n{r['size']} (stream {r['fps']:.1f} fps; camera published {r['b_rate']:.1f} frames/s in (b), "
              f"{r['c_rate']:.2f} in (c))")
        print(f"  (b) camera decoding every frame, output {d_format}: {r['b']:6.2f}  "
              f"(+ its share of Redis {share(r['b_redis']):.2f} = {r['b'] + share(r['b_redis']):.2f}; "
              f"Redis in the window {r['b_redis']:.2f})")
        print(f"  (d) ffmpeg decoding to {d_format} (-f null):        {r['d']:6.2f}")
        print(f"      b/d = {r['b']:.2f} / {r['d']:.2f} = {r['b'] / r['d']:.2f}  (target <= 1.10)  "
              f"{'OK' if r['b'] / r['d'] <= 1.10 else 'MISS'};  "
              f"with Redis: {(r['b'] + share(r['b_redis'])) / r['d']:.2f}")
        print(f"      camera's threads: {threads(r['b_threads'])}")
        if r["b_old"] is not None:
            print(f"      old: b = {r['b_old']:.2f}, b/d = {r['b_old'] / r['d']:.2f}; "
                  f"new/old = {r['b'] / r['b_old']:.3f}")
        print(f"  (a) camera, no consumer (demux + packet ring):       {r['a']:6.2f}  "
              f"(+ its share of Redis, the packet ring and status {share(r['a_redis']):.2f} = "
              f"{r['a'] + share(r['a_redis']):.2f}; Redis in the window {r['a_redis']:.2f})")
        print(f"  (e) ffmpeg -c copy -f null:                          {r['e']:6.2f}")
        print(f"      a/e = {r['a']:.2f} / {r['e']:.2f} = {r['a'] / r['e']:.2f}  (target <= 1.25)  "
              f"{'OK' if r['a'] / r['e'] <= 1.25 else 'MISS'};  "
              f"with Redis: {(r['a'] + share(r['a_redis'])) / r['e']:.2f}")
        print(f"      camera's threads: {threads(r['a_threads'])}")
        if r["a_old"] is not None:
            print(f"      old: a = {r['a_old']:.2f}, a/e = {r['a_old'] / r['e']:.2f}; "
                  f"new/old = {r['a'] / r['a_old']:.3f}")
        print(f"  (f) PyAV demux alone (floor of a PyAV camera):       {r['f']:6.2f}  "
              f"f/e = {r['f'] / r['e']:.2f}; a/f = {r['a'] / r['f']:.2f} (the camera's own work on top)")
        print(f"  (c) camera, keyframes only: {r['c']:.2f}; c/b = {r['c'] / r['b']:.3f} "
              f"(keyframe share {1 / args.gop:.3f})" + (f"; old {r['c_old']:.2f}" if r["c_old"] is not None else ""))
    first = results[0]
    print()
    print(f"{first['size']} streams at full rate on this machine ({cores} cores, {60.0 * cores:.0f} CPU-s/min): "
          f"~{60.0 * cores / (first['b'] + share(first['b_redis'])):.0f} decoding every frame (camera + its share "
          f"of Redis), ~{60.0 * cores / (first['a'] + share(first['a_redis'])):.0f} with no consumer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
