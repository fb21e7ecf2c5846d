#!/usr/bin/env python
"""Benchmark: shipping a project to ECS through S3 (time, vs ``tar czf - | curl -T``), and the worker's
memory while it ships projects of growing size.

1. Time, A/B (interleaved, ``--rounds`` each, default 3, of a ``--size-mb`` 200 MB project in
   ``--files`` 20,000 files):

   - ours: what ``EcsBackend._ship`` does, ``with storage.upload_stream(key) as upload:
     pack_to(upload, project, io_dir)``: the tar.gz is made file by file, gzipped (ISA-L igzip,
     level 3) in independent members by one thread per core (``workdir.compress_threads()``), and
     uploaded as an S3 multipart upload whose parts go up (2 at a time) while packing goes on;
   - ours, 1 gzip thread: the same with ``compress_threads`` forced to 1, to see what the parallel
     gzip brings on this machine (the brief: use it only if it helps);
   - baseline: ``tar czf - -C project . | curl -sS --fail -T - "<presigned PUT URL>"`` (GNU tar,
     gzip -6 and curl side by side, as a shell user would ship it).

   The clock covers packing + uploading, until the object exists. Reported: medians, ratios to the
   baseline, and the CPU seconds each used (ours: this process, all threads; baseline: tar + gzip +
   curl). After the clock, every archive is fetched and unpacked as the ECS container does it
   (``curl --config -`` with the URL on stdin ``-o input.tar.gz``, then ``tar -xzf``): that leg is timed
   too (it shows the multi-member gzip costs the container nothing) and the unpacked tree is checked
   against the project (file count and bytes).

2. Worker RSS growth for projects of ``--rss-sizes`` (10, 100, 1000 MB; ``--files-per-mb`` 100, so
   100,000 files at 1 GB): each size is shipped by a FRESH child process (this script's hidden
   ``_rss-worker`` mode) that imports Airflow and the package and makes its S3 client like a task
   process, reads its RSS (VmRSS) as its own baseline, resets its peak (VmHWM, through
   ``/proc/self/clear_refs``), ships, and reads the peak. Growth = peak - baseline: what shipping adds
   to the task process. The object's size and entry count are then checked with
   ``curl | tar -tzf -`` (no copy on disk).

Fairness: the endpoint is moto's S3 in server mode on loopback, in its own child process (it keeps
objects in memory: its RSS is not the worker's, and its request threads do not take the worker's
GIL). All contenders use the same server, credentials and bucket; every object is deleted after its
round. The project is generated deterministically (``--seed``): 10% of its bytes in one large file,
the rest in small files (average ~10 KB) in nested folders, half word-like text (gzip ~2.4x), half
random bytes; it is written once before timing, so every contender reads it from the page cache.
Presigned URLs and S3 clients are made before the clock starts. Compression: gzip -6 for the
baseline, igzip level 3 for ours (archive sizes are printed side by side: they are within ~1%).

Disk: the A/B needs ~3x the project (project, one downloaded archive, one unpacked copy); the RSS
series only the project. A size that does not fit is shrunk (or skipped) with a message.

Usage: .venv/bin/python benchmarks/bench_ecs_shipping.py [--rounds 3] [--size-mb 200] [--files 20000]
       [--rss-sizes 10,100,1000] [--files-per-mb 100] [--skip-ab] [--skip-rss] [--tmpdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ecs_common as common

BUCKET = "cmdexec-bench-shipping"
MB = 1_000_000
TARGET_RATIO = 1.10
FLAT_TOLERANCE_MB = 5.0  # "flat": growth at the largest size within this of growth at the second size
AB_DISK_FACTOR = 3.0
CONTENDERS = ("ours", "ours, 1 gzip thread", "tar czf | curl -T")
# The container's download, as ecs_script.container_script does it: the URL reaches curl on stdin.
CONTAINER_LEG = (
    'printf \'url = "%s"\\n\' "$GET_URL" | curl --config - --retry 8 --retry-connrefused --fail -sS '
    "-o input.tar.gz && tar -xzf input.tar.gz && rm -f input.tar.gz"
)


# -- the project -----------------------------------------------------------------------------------
def _corpus(rng: random.Random, size: int = 4_000_000) -> bytes:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    lines: list[str] = []
    n = 0
    while n < size:
        line = " ".join(rng.choices(words, k=rng.randint(5, 14)))
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines).encode()


def generate_project(
    dest: Path, size_bytes: int, files: int, seed: int, large_fraction: float = 0.1
) -> dict[str, int]:
    """Write a deterministic project of ``files`` files and ``size_bytes`` bytes; return its totals."""
    rng = random.Random(seed)
    corpus = _corpus(rng)
    large = int(size_bytes * large_fraction) if files > 1 else 0
    small_files = files - (1 if large else 0)
    raw = [rng.uniform(0.1, 1.9) for _ in range(small_files)]
    scale = (size_bytes - large) / sum(raw)
    sizes = [int(r * scale) for r in raw]
    sizes[-1] += size_bytes - large - sum(sizes)
    total = 0

    def text(n: int) -> bytes:
        if n <= len(corpus):
            start = rng.randrange(0, len(corpus) - n + 1)
            return corpus[start : start + n]
        return (corpus * (n // len(corpus) + 1))[:n]

    for i, n in enumerate(sizes):
        folder = dest / f"pkg{i // 1000:03d}" / f"mod{(i // 100) % 10}" / f"sub{(i // 10) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % 2 == 0:
            (folder / f"file{i:06d}.txt").write_bytes(text(n))
        else:
            (folder / f"blob{i:06d}.bin").write_bytes(rng.randbytes(n))
        total += n
    if large:
        (dest / "data").mkdir(exist_ok=True)
        with open(dest / "data" / "large.dat", "wb") as fh:
            left = large
            while left:  # alternating 1 MB text and random chunks, streamed
                n = min(left, MB)
                fh.write(text(n) if (left // MB) % 2 else rng.randbytes(n))
                left -= n
        total += large
    return {"files": files, "bytes": total}


def tree_totals(root: Path) -> dict[str, int]:
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return {"files": files, "bytes": size}


def io_dir_for(work: Path) -> Path:
    """The IO dir a py> task ships next to its project."""
    io_dir = work / "io"
    io_dir.mkdir()
    (io_dir / "input.json").write_text(json.dumps({"params": {"greeting": "hello"}}))
    return io_dir


# -- the contenders --------------------------------------------------------------------------------
def make_storage(endpoint_url: str) -> Any:
    from airflow_cmdexec_provider.config import StorageConfig
    from airflow_cmdexec_provider.storage.s3 import S3TemporalStorage

    config = StorageConfig(
        conn_id="bench_storage",
        type="s3",
        bucket=BUCKET,
        endpoint=endpoint_url,
        path_style_access=True,
        region=common.REGION,
        access_key_id=common.DUMMY_KEY,
        secret=common.DUMMY_KEY,
    )
    return S3TemporalStorage(config)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def ship_ours(
    project: Path, io_dir: Path, storage: Any, key: str, gzip_threads: int | None = None
) -> dict[str, Any]:
    """pack_to -> upload_stream, as EcsBackend._ship; ``gzip_threads`` overrides the thread count."""
    from airflow_cmdexec_provider.runner import workdir

    automatic = workdir.compress_threads
    if gzip_threads is not None:
        workdir.compress_threads = lambda: gzip_threads
    try:
        cpu0, t0 = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
        with storage.upload_stream(key) as upload:
            packed = workdir.pack_to(upload, project, io_dir)
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu0
    finally:
        workdir.compress_threads = automatic
    return {"seconds": seconds, "cpu_seconds": cpu, "archive_bytes": packed.size, "entries": packed.entries}


def ship_baseline(project: Path, storage: Any, key: str) -> dict[str, Any]:
    env = {**os.environ, "PUT_URL": storage.presigned_put(key, 3600), "SRC": str(project)}
    cpu0, t0 = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            'tar czf - -C "$SRC" . | curl -sS --fail -T - "$PUT_URL" >/dev/null',
        ],
        env=env,
        check=True,
    )
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    size = storage.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
    return {"seconds": seconds, "cpu_seconds": cpu, "archive_bytes": size}


def container_leg(storage: Any, key: str, dest: Path) -> float:
    """Fetch and unpack the archive as the ECS container does; return the seconds it took."""
    dest.mkdir()
    env = {**os.environ, "GET_URL": storage.presigned_get(key, 3600)}
    t0 = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", CONTAINER_LEG], cwd=dest, env=env, check=True)
    return time.perf_counter() - t0


# -- part 1: A/B -----------------------------------------------------------------------------------
def one_round(contender: str, project: Path, storage: Any, work: Path) -> dict[str, Any]:
    key = f"bench/{uuid.uuid4().hex}/input.tar.gz"
    try:
        if contender == "tar czf | curl -T":
            result = ship_baseline(project, storage, key)
        else:
            threads = 1 if contender == "ours, 1 gzip thread" else None
            result = ship_ours(project, io_dir_for(work), storage, key, threads)
        result["container_seconds"] = container_leg(storage, key, work / "unpacked")
    finally:
        storage.delete([key])
    unpacked = work / "unpacked" / "project" if contender != "tar czf | curl -T" else work / "unpacked"
    result["unpacked"] = tree_totals(unpacked)
    result["loadavg"] = os.getloadavg()[0]
    return result


def run_ab(args: argparse.Namespace, server: common.ServerProcess, tmp: Path) -> dict[str, Any] | None:
    from airflow_cmdexec_provider.runner.workdir import compress_threads

    size = int(args.size_mb * MB)
    free = shutil.disk_usage(tmp).free
    if free < AB_DISK_FACTOR * size:
        fits = int(free / AB_DISK_FACTOR / MB / 10) * 10
        if fits < 10:
            print(f"A/B: SKIPPED, {free / MB:.0f} MB free in {tmp}: not even a 10 MB project fits")
            return None
        print(
            f"A/B: only {free / MB:.0f} MB free in {tmp}: the {args.size_mb:g} MB project is SHRUNK to "
            f"{fits} MB"
        )
        size = fits * MB
    files = (
        args.files if size == int(args.size_mb * MB) else max(1, int(args.files * size / (args.size_mb * MB)))
    )
    project = tmp / "project"
    t0 = time.perf_counter()
    expected = generate_project(project, size, files, args.seed)
    print(
        f"A/B: generated the project: {expected['files']} files, {expected['bytes'] / MB:.0f} MB "
        f"in {time.perf_counter() - t0:.1f} s; ours gzips with {compress_threads()} threads here"
    )
    storage = make_storage(server.endpoint_url)
    warm = tmp / "warm"
    generate_project(warm, 1 * MB, 50, seed=1)
    for i, contender in enumerate(CONTENDERS):  # moto loads its S3 backend; tar, curl and boto3 warm up
        (tmp / f"warm-{i}").mkdir()
        one_round(contender, warm, storage, tmp / f"warm-{i}")
        shutil.rmtree(tmp / f"warm-{i}")
    shutil.rmtree(warm)
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
    for r in range(args.rounds):
        order = CONTENDERS[r % 3 :] + CONTENDERS[: r % 3]
        for contender in order:
            work = tmp / f"work-{r}"
            work.mkdir()
            result = one_round(contender, project, storage, work)
            shutil.rmtree(work)
            if result.pop("unpacked") != expected:
                raise RuntimeError(f"{contender} round {r + 1}: the unpacked tree differs from the project")
            samples[contender].append(result)
            print(
                f"  round {r + 1}/{args.rounds} {contender:<20} ship {result['seconds']:6.2f} s "
                f"(cpu {result['cpu_seconds']:5.1f} s), container leg {result['container_seconds']:5.2f} s, "
                f"archive {result['archive_bytes'] / MB:.1f} MB, load {result['loadavg']:.1f}",
                flush=True,
            )
    shutil.rmtree(project)

    def med(contender: str, field: str) -> float:
        return common.median([s[field] for s in samples[contender]])

    base = CONTENDERS[-1]
    rows = [
        [
            c,
            med(c, "seconds"),
            common.ratio(med(c, "seconds"), med(base, "seconds")),
            med(c, "cpu_seconds"),
            med(c, "archive_bytes") / MB,
            med(c, "container_seconds"),
        ]
        for c in CONTENDERS
    ]
    common.print_table(
        ["contender", "ship s (median)", "vs tar|curl", "cpu s", "archive MB", "container leg s"],
        rows,
        title=f"Shipping {expected['bytes'] / MB:.0f} MB in {expected['files']} files: pack + "
        f"upload until the object exists, {args.rounds} interleaved rounds each",
    )
    ratio = common.ratio(med("ours", "seconds"), med(base, "seconds"))
    print(
        f"ours / tar czf | curl -T = {ratio:.2f}x: {'MEETS' if ratio <= TARGET_RATIO else 'MISSES'} the "
        f"{TARGET_RATIO:.2f}x target; 1 gzip thread: "
        f"{common.ratio(med('ours, 1 gzip thread', 'seconds'), med(base, 'seconds')):.2f}x"
    )
    return {
        "project": expected,
        "gzip_threads": compress_threads(),
        "ratio": ratio,
        "target": TARGET_RATIO,
        "medians": {
            c: {f: med(c, f) for f in ("seconds", "cpu_seconds", "archive_bytes", "container_seconds")}
            for c in CONTENDERS
        },
        "samples": samples,
    }


# -- part 2: RSS growth ----------------------------------------------------------------------------
def run_rss(args: argparse.Namespace, server: common.ServerProcess, tmp: Path) -> dict[str, Any] | None:
    sizes = [float(s) for s in args.rss_sizes.split(",") if s.strip()]
    results = []
    for size_mb in sizes:
        free = shutil.disk_usage(tmp).free
        if free < 1.2 * size_mb * MB:
            print(f"RSS: {size_mb:g} MB SKIPPED: {free / MB:.0f} MB free in {tmp}")
            continue
        files = max(1, int(size_mb * args.files_per_mb))
        project = tmp / f"rss-project-{size_mb:g}"
        expected = generate_project(project, int(size_mb * MB), files, args.seed)
        work = tmp / f"rss-work-{size_mb:g}"
        work.mkdir()
        proc = subprocess.run(
            [
                common.PYTHON,
                str(Path(__file__).resolve()),
                "_rss-worker",
                "--project",
                str(project),
                "--work",
                str(work),
                "--endpoint",
                server.endpoint_url,
            ],
            capture_output=True,
            text=True,
            cwd=common.ROOT,
            check=False,
        )
        shutil.rmtree(project)
        shutil.rmtree(work)
        if proc.returncode != 0:
            raise RuntimeError(f"the RSS worker failed for {size_mb:g} MB:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if result["listed_entries"] != expected["files"] + 1:  # + io/input.json
            raise RuntimeError(
                f"RSS worker {size_mb:g} MB: {result['listed_entries']} entries in the archive, "
                f"expected {expected['files'] + 1}"
            )
        result.update(size_mb=size_mb, files=files)
        results.append(result)
        print(
            f"  {size_mb:5g} MB, {files:6d} files: RSS {result['rss_before_mb']:.1f} MB before shipping, "
            f"peak {result['peak_rss_mb']:.1f} MB -> growth {result['growth_mb']:+.1f} MB ({result['parts']} "
            f"parts, {result['seconds']:.1f} s)",
            flush=True,
        )
    if not results:
        return None
    rows = [
        [
            f"{r['size_mb']:g}",
            r["files"],
            r["archive_bytes"] / MB,
            r["parts"],
            r["rss_before_mb"],
            r["peak_rss_mb"],
            r["growth_mb"],
            r["seconds"],
        ]
        for r in results
    ]
    common.print_table(
        ["project MB", "files", "archive MB", "S3 parts", "RSS before", "peak", "GROWTH", "ship s"],
        rows,
        title="Worker RSS (MB): a fresh task-like process per size; before = its VmRSS after "
        "imports and S3 client, peak = VmHWM while shipping",
    )
    growths = [r["growth_mb"] for r in results]
    spread = growths[-1] - growths[1] if len(growths) > 2 else growths[-1] - growths[0]
    flat = spread <= FLAT_TOLERANCE_MB
    print(
        f"growth {min(growths):.1f} .. {max(growths):.1f} MB; {results[-1]['size_mb']:g} MB vs "
        f"{results[min(1, len(results) - 1)]['size_mb']:g} MB: {spread:+.1f} MB -> "
        f"{'FLAT' if flat else 'NOT FLAT'} (tolerance {FLAT_TOLERANCE_MB:g} MB)"
    )
    return {"results": results, "max_growth_mb": max(growths), "spread_mb": spread, "flat": flat}


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_worker(args: argparse.Namespace) -> None:
    """The measured task-like process: ships once and prints one JSON line."""
    common.airflow_env()
    from airflow_cmdexec_provider.runner.workdir import pack_to

    storage = make_storage(args.endpoint)
    storage.client.head_bucket(Bucket=BUCKET)  # the client's first request: connection pool, endpoint rules
    parts: list[str] = []
    storage.client.meta.events.register("before-call.s3.UploadPart", lambda **_: parts.append("part"))
    io_dir = io_dir_for(Path(args.work))
    key = f"bench/{uuid.uuid4().hex}/input.tar.gz"
    before = rss_now_mb()
    if not common.reset_peak_rss():
        raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs): Linux >= 4.0 is needed")
    t0 = time.perf_counter()
    with storage.upload_stream(key) as upload:
        packed = pack_to(upload, Path(args.project), io_dir)
    seconds = time.perf_counter() - t0
    peak = common.peak_rss_mb()
    env = {**os.environ, "GET_URL": storage.presigned_get(key, 3600)}
    listing = subprocess.run(
        ["bash", "-o", "pipefail", "-c", 'curl -sS --fail "$GET_URL" | tar -tzf - | wc -l'],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    size = storage.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
    storage.delete([key])
    if size != packed.size:
        raise SystemExit(f"the object has {size} bytes, pack_to wrote {packed.size}")
    print(
        json.dumps(
            {
                "rss_before_mb": before,
                "peak_rss_mb": peak,
                "growth_mb": peak - before,
                "seconds": seconds,
                "archive_bytes": packed.size,
                "parts": len(parts) or 1,
                "listed_entries": int(listing.stdout.strip()),
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_rss-worker":
        worker = argparse.ArgumentParser(prog="bench_ecs_shipping.py _rss-worker")
        worker.add_argument("_mode")
        worker.add_argument("--project", required=True)
        worker.add_argument("--work", required=True)
        worker.add_argument("--endpoint", required=True)
        rss_worker(worker.parse_args())
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds of each contender (default 3)")
    parser.add_argument("--size-mb", type=float, default=200, help="A/B project size in MB (default 200)")
    parser.add_argument("--files", type=int, default=20000, help="A/B project files (default 20000)")
    parser.add_argument(
        "--rss-sizes",
        default="10,100,1000",
        help="project sizes in MB for the RSS series (default 10,100,1000)",
    )
    parser.add_argument(
        "--files-per-mb",
        type=float,
        default=100,
        help="files per MB in the RSS series (default 100: 100,000 files at 1 GB)",
    )
    parser.add_argument("--seed", type=int, default=20260101, help="seed of the generated projects")
    parser.add_argument(
        "--tmpdir", default=None, help="where projects and archives go (default: the system temp dir)"
    )
    parser.add_argument("--skip-ab", action="store_true", help="skip the timing against tar czf | curl -T")
    parser.add_argument("--skip-rss", action="store_true", help="skip the RSS series")
    args = parser.parse_args()
    for tool in ("tar", "curl", "bash"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed for the baseline")

    common.airflow_env()
    import airflow_cmdexec_provider.runner.workdir  # noqa: F401  (import Airflow before any clock runs)

    tmp = Path(tempfile.mkdtemp(prefix="cmdexec-bench-shipping-", dir=args.tmpdir))
    data: dict[str, Any] = {"args": vars(args)}
    try:
        with common.ServerProcess("moto") as server:
            common.boto3_client("s3", server.endpoint_url).create_bucket(Bucket=BUCKET)
            print(f"moto S3 on {server.endpoint_url} (child process {server.pid}); temp dir {tmp}")
            if not args.skip_ab:
                data["ab"] = run_ab(args, server, tmp)
            if not args.skip_rss:
                data["rss"] = run_rss(args, server, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = common.write_json("ecs_shipping", data)
    print(f"\nWrote {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
