#!/usr/bin/env python
"""Benchmark: shipping a project to ECS through S3 (time), and the worker's memory while it grows.

1. Time, ours vs the shell (interleaved A/B, ``--rounds`` each, default 3, at ``--size-mb`` 200 MB in
   ``--files`` 20,000 files):

   - ours: ``runner.workdir.pack()`` of the project (+ a small IO dir) into an archive file, then
     ``S3TemporalStorage.upload_file`` (the worker's side of ``EcsBackend._ship``), then
     ``S3TemporalStorage.download_file`` and a one-pass streaming ``tarfile`` extraction of the
     ``project/`` part with the ``data`` filter;
   - baseline: ``tar czf - -C project . | curl -sS --fail -T - "<presigned PUT URL>"``, then
     ``curl -sS --fail "<presigned GET URL>" | tar xzf - -C dest`` (GNU tar and curl, as a shell user
     would do it: tar, gzip and curl run side by side on the two cores).

   Reported: the median of every phase, the two legs (pack+upload, download+unpack), the total, and
   ours/baseline ratios. Both use gzip level 6 (ours: ``COMPRESS_LEVEL``; tar: gzip's default).
   In production the download leg is not Python: the ECS container fetches the archive with curl
   (URL on its stdin) to a file and unpacks it with ``tar -xzf`` (``ecs_script.container_script``).
   So each "ours" round also times that container leg on the same object, and "total as deployed"
   = ours' pack+upload + the container leg.

2. Peak RSS of the worker for projects of ``--rss-sizes`` (10, 50, 100, 200, 500 MB, ``--files-per-mb``
   100 files each MB): ours runs in a FRESH child process per size (this script's hidden
   ``_rss-worker`` mode), which reads its peak RSS (VmHWM) after importing and after each phase (the
   peak is reset between phases through ``/proc/self/clear_refs``; ``ru_maxrss`` is not used: on
   Linux it keeps the high-water mark of the forking parent across exec). The whole process counts,
   Airflow's own import and the boto3 client included (the worker is an Airflow task process): the
   target is a flat curve under 150 MB. The worker's part of shipping is pack + upload; download +
   unpack is what the container does (with curl and tar), reported beside it.

Fairness: the endpoint is moto's S3 in server mode on loopback, in its own child process (it keeps
objects in memory: its RSS is not the worker's, and its request threads do not take the worker's
GIL). Both contenders talk to the same server, with the same credentials, and every object is
deleted after its round. The project is generated deterministically (``--seed``): 10% of its bytes
in one large file, the rest in small files (average ~10 KB) in nested folders, half of the files
word-like text (gzip ~2.4x), half random bytes (incompressible). It is written once before timing,
so both read it from the page cache. Presigned URLs and S3 clients are made before the clock starts.
Every run's extracted tree is checked (file count and bytes) outside the timed part.

Disk: a size S needs about 3x S free (project + downloaded archive + extracted copy; 4x in the A/B,
which keeps the container leg's copy too); a size that does not fit is shrunk to what fits (or
skipped) with a message.

Usage: .venv/bin/python benchmarks/bench_ecs_shipping.py [--rounds 3] [--size-mb 200] [--files 20000]
       [--rss-sizes 10,50,100,200,500] [--skip-ab] [--skip-rss] [--tmpdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ecs_common as common  # noqa: E402

BUCKET = "cmdexec-bench-shipping"
MB = 1_000_000
RSS_TARGET_MB = 150.0
FLAT_TOLERANCE_MB = 10.0  # "flat": the largest project's peak within this of the smallest one's
DISK_FACTOR = 3.0  # project + downloaded archive + extracted copy
AB_DISK_FACTOR = 4.0  # the A/B also keeps the container leg's extracted copy until it is checked


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


def generate_project(dest: Path, size_bytes: int, files: int, seed: int, large_fraction: float = 0.1) -> dict[str, int]:
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
            return corpus[start:start + n]
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


# -- ours ------------------------------------------------------------------------------------------
def make_storage(endpoint_url: str) -> Any:
    from airflow_cmdexec_provider.config import StorageConfig
    from airflow_cmdexec_provider.storage.s3 import S3TemporalStorage

    config = StorageConfig(conn_id="bench_storage", type="s3", bucket=BUCKET, endpoint=endpoint_url,
                           path_style_access=True, region=common.REGION,
                           access_key_id=common.DUMMY_KEY, secret=common.DUMMY_KEY)
    return S3TemporalStorage(config)


def extract_project(archive: Path, dest: Path) -> None:
    """One pass over the gzip stream: extract the ``project/`` members (``data`` filter)."""
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if member.name == "project" or member.name.startswith("project/"):
                tar.extract(member, dest, filter="data")


def ours_roundtrip(project: Path, storage: Any, work: Path, rss: bool = False,
                   container_leg: bool = False) -> dict[str, Any]:
    """pack -> upload -> download -> extract; seconds per phase (and peak RSS per phase if ``rss``).

    With ``container_leg``, also time what the ECS container really does with the uploaded archive
    (``ecs_script.container_script``: curl with the presigned URL on its stdin, to a file, then
    ``tar -xzf``), between the upload and the Python download."""
    from airflow_cmdexec_provider.runner.workdir import pack

    key = f"bench/{uuid.uuid4().hex}/input.tar.gz"
    io_dir = work / "io"
    io_dir.mkdir()
    (io_dir / "input.json").write_text(json.dumps({"params": {"greeting": "hello"}}))
    out: dict[str, Any] = {"seconds": {}, "peak_rss_mb": {}}

    def phase(name: str, fn: Any) -> Any:
        if rss:
            common.reset_peak_rss()
        t0 = time.perf_counter()
        result = fn()
        out["seconds"][name] = time.perf_counter() - t0
        if rss:
            out["peak_rss_mb"][name] = common.peak_rss_mb()
        return result

    archive = work / "upload" / "input.tar.gz"
    archive.parent.mkdir()
    try:
        phase("pack", lambda: pack(project, io_dir, archive))
        out["archive_bytes"] = archive.stat().st_size
        phase("upload", lambda: storage.upload_file(key, archive))
        archive.unlink()  # as EcsBackend._ship: the archive's temp dir goes once it is uploaded
        if container_leg:
            box = work / "container"
            box.mkdir()
            script = ('printf \'url = "%s"\\n\' "$CMDEXEC_INPUT_URL" | curl --config - --retry 8 --retry-connrefused '
                      "--fail -sS -o input.tar.gz && tar -xzf input.tar.gz && rm -f input.tar.gz")
            env = {**os.environ, "CMDEXEC_INPUT_URL": storage.presigned_get(key, 3600)}
            phase("container", lambda: subprocess.run(["bash", "-c", script], cwd=box, env=env, check=True))
            out["container_extracted"] = box / "project"
        download = work / "download" / "input.tar.gz"
        download.parent.mkdir()
        found = phase("download", lambda: storage.download_file(key, download))
        if not found:
            raise RuntimeError(f"{key} was not found after its upload")
        dest = work / "dest"
        dest.mkdir()
        phase("unpack", lambda: extract_project(download, dest))
        download.unlink()
        out["extracted"] = dest / "project"
    finally:
        storage.delete([key])
    return out


# -- baseline --------------------------------------------------------------------------------------
def baseline_roundtrip(project: Path, storage: Any, work: Path) -> dict[str, Any]:
    key = f"bench/{uuid.uuid4().hex}/input.tar.gz"
    put_url = storage.presigned_put(key, 3600)
    get_url = storage.presigned_get(key, 3600)
    dest = work / "dest"
    dest.mkdir()
    env = {**os.environ, "PUT_URL": put_url, "GET_URL": get_url, "SRC": str(project), "DEST": str(dest)}
    out: dict[str, Any] = {"seconds": {}}
    try:
        for name, script in (
            ("pack+upload", 'tar czf - -C "$SRC" . | curl -sS --fail -T - "$PUT_URL" >/dev/null'),
            ("download+unpack", 'curl -sS --fail "$GET_URL" | tar xzf - -C "$DEST"'),
        ):
            t0 = time.perf_counter()
            subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, check=True)
            out["seconds"][name] = time.perf_counter() - t0
        out["archive_bytes"] = storage.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
    finally:
        storage.delete([key])
    out["extracted"] = dest
    return out


# -- part 1: A/B -----------------------------------------------------------------------------------
def warm_up(storage: Any, tmp: Path) -> None:
    """One small object each way, by both paths: moto loads its S3 backend, curl and tar are cached."""
    small = tmp / "warm"
    small.mkdir()
    generate_project(small / "p", 1 * MB, 50, seed=1)
    for contender in ("ours", "baseline"):
        work = tmp / f"warm-{contender}"
        work.mkdir()
        (ours_roundtrip if contender == "ours" else baseline_roundtrip)(small / "p", storage, work)
        shutil.rmtree(work)
    shutil.rmtree(small)


def run_ab(args: argparse.Namespace, server: common.ServerProcess, tmp: Path) -> dict[str, Any] | None:
    size = int(args.size_mb * MB)
    free = shutil.disk_usage(tmp).free
    if free < AB_DISK_FACTOR * size:
        fits = int(free / AB_DISK_FACTOR / MB / 10) * 10
        if fits < 10:
            print(f"A/B: SKIPPED, {free / MB:.0f} MB free in {tmp}: not even a 10 MB project fits")
            return None
        print(f"A/B: only {free / MB:.0f} MB free in {tmp}: the {args.size_mb:g} MB project is SHRUNK to {fits} MB")
        size = fits * MB
    files = args.files if size == int(args.size_mb * MB) else max(1, int(args.files * size / (args.size_mb * MB)))
    project = tmp / "project"
    t0 = time.perf_counter()
    expected = generate_project(project, size, files, args.seed)
    print(f"A/B: generated the project: {expected['files']} files, {expected['bytes'] / MB:.0f} MB "
          f"in {time.perf_counter() - t0:.1f} s")
    storage = make_storage(server.endpoint_url)
    warm_up(storage, tmp)
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    for r in range(args.rounds):
        order = ["ours", "baseline"] if r % 2 == 0 else ["baseline", "ours"]
        for contender in order:
            work = tmp / f"work-{contender}-{r}"
            work.mkdir()
            if contender == "ours":
                result = ours_roundtrip(project, storage, work, container_leg=True)
            else:
                result = baseline_roundtrip(project, storage, work)
            for tree in ("extracted", "container_extracted"):
                if tree in result:
                    got = tree_totals(result.pop(tree))
                    if got != expected:
                        raise RuntimeError(f"{contender} round {r + 1}: {tree} {got}, expected {expected}")
            shutil.rmtree(work)
            s = result["seconds"]
            if contender == "ours":
                s["pack+upload"] = s["pack"] + s["upload"]
                s["download+unpack"] = s["download"] + s["unpack"]
                s["total as deployed"] = s["pack+upload"] + s["container"]
            else:
                s["total as deployed"] = s["pack+upload"] + s["download+unpack"]
            s["total"] = s["pack+upload"] + s["download+unpack"]
            samples[contender].append(result)
            print(f"  round {r + 1}/{args.rounds} {contender:<8} total {s['total']:6.2f} s, "
                  f"as deployed {s['total as deployed']:6.2f} s  "
                  f"(archive {result['archive_bytes'] / MB:.1f} MB)", flush=True)
    shutil.rmtree(project)

    def med(contender: str, name: str) -> float:
        return common.median([x["seconds"][name] for x in samples[contender] if name in x["seconds"]])

    phases = ["pack", "upload", "pack+upload", "download", "unpack", "download+unpack", "total",
              "container", "total as deployed"]
    medians = {c: {p: med(c, p) for p in phases} for c in samples}
    rows = []
    labels = {"container": "container: curl -o + tar -xzf", "download+unpack": "download+unpack (Python)",
              "total": "total (as specified)", "total as deployed": "total as deployed (container leg)"}
    for p in phases:
        o = medians["ours"][p]
        b = medians["baseline"]["download+unpack"] if p == "container" else medians["baseline"][p]
        rows.append([labels.get(p, p), o, b, common.ratio(o, b)])
    common.print_table(["phase (median s)", "ours", "tar|curl", "ours/tar|curl"], rows,
                       title=f"Shipping {expected['bytes'] / MB:.0f} MB in {expected['files']} files, "
                             f"{args.rounds} interleaved rounds each (tar|curl pipes its phases: "
                             "no separate pack/upload times)")
    archive = {c: common.median([x["archive_bytes"] for x in samples[c]]) / MB for c in samples}
    ratio_total = common.ratio(medians["ours"]["total"], medians["baseline"]["total"])
    ratio_deployed = common.ratio(medians["ours"]["total as deployed"], medians["baseline"]["total"])
    print(f"archive: ours {archive['ours']:.1f} MB, tar czf {archive['baseline']:.1f} MB;  "
          f"total ratio ours/tar|curl = {ratio_total:.2f}x as specified (boto3 download + Python tarfile), "
          f"{ratio_deployed:.2f}x as deployed (the container downloads with curl and unpacks with tar);  "
          f"moto server RSS now {server.rss_mb():.0f} MB (a separate process, not the worker)")
    return {"project": expected, "medians_s": medians, "archive_mb": archive,
            "ratio_total": ratio_total, "ratio_total_as_deployed": ratio_deployed,
            "samples": samples}


# -- part 2: peak RSS ------------------------------------------------------------------------------
def run_rss(args: argparse.Namespace, server: common.ServerProcess, tmp: Path) -> dict[str, Any] | None:
    sizes = [float(s) for s in args.rss_sizes.split(",") if s.strip()]
    results = []
    for size_mb in sizes:
        free = shutil.disk_usage(tmp).free
        if free < DISK_FACTOR * size_mb * MB:
            fits = int(free / DISK_FACTOR / MB / 10) * 10
            if results and fits <= results[-1]["size_mb"]:
                print(f"RSS: {size_mb:g} MB SKIPPED: {free / MB:.0f} MB free in {tmp}, it needs ~{DISK_FACTOR:g}x")
                continue
            print(f"RSS: {size_mb:g} MB SHRUNK to {fits} MB: {free / MB:.0f} MB free in {tmp}, it needs ~{DISK_FACTOR:g}x")
            size_mb = float(fits)
        files = max(1, int(size_mb * args.files_per_mb))
        project = tmp / f"rss-project-{size_mb:g}"
        expected = generate_project(project, int(size_mb * MB), files, args.seed)
        work = tmp / f"rss-work-{size_mb:g}"
        work.mkdir()
        proc = subprocess.run(
            [common.PYTHON, str(Path(__file__).resolve()), "_rss-worker", "--project", str(project),
             "--work", str(work), "--endpoint", server.endpoint_url],
            capture_output=True, text=True, env={**os.environ}, cwd=common.ROOT,
        )
        if proc.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(project, ignore_errors=True)
            raise RuntimeError(f"the RSS worker failed for {size_mb:g} MB:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        got = tree_totals(work / "dest" / "project")
        if got != expected:
            raise RuntimeError(f"RSS worker {size_mb:g} MB: extracted {got}, expected {expected}")
        shutil.rmtree(work)
        shutil.rmtree(project)
        result.update(size_mb=size_mb, files=files)
        results.append(result)
        print(f"  {size_mb:5g} MB, {files:6d} files: worker peak RSS {result['worker_peak_rss_mb']:.1f} MB, "
              f"round trip {result['peak_rss_mb']:.1f} MB "
              f"(after imports {result['import_rss_mb']:.1f} MB), total {sum(result['seconds'].values()):.1f} s",
              flush=True)
    if not results:
        return None
    rows = []
    for r in results:
        p = r["phases_peak_rss_mb"]
        rows.append([f"{r['size_mb']:g}", r["files"], r["archive_bytes"] / MB, r["import_rss_mb"], p["pack"],
                     p["upload"], r["worker_peak_rss_mb"], p["download"], p["unpack"], r["peak_rss_mb"]])
    common.print_table(
        ["project MB", "files", "archive MB", "after import", "pack", "upload", "WORKER PEAK", "download",
         "unpack", "round-trip peak"],
        rows, title="Peak RSS (MB) of a fresh process per size: VmHWM after the imports, then per phase (reset "
                    "between phases).\nWORKER PEAK = imports + pack + upload, what the Airflow worker does to ship "
                    "a project; download + unpack is the container's side, done here in Python too")
    verdicts = {}
    for key, label in (("worker_peak_rss_mb", "worker (pack+upload)"), ("peak_rss_mb", "round trip (all phases)")):
        peaks = [r[key] for r in results]
        spread = peaks[-1] - peaks[0]
        verdicts[key] = {"max_mb": max(peaks), "spread_mb": spread, "under_target": max(peaks) < RSS_TARGET_MB,
                         "flat": spread <= FLAT_TOLERANCE_MB}
        print(f"{label:<24} max peak {max(peaks):6.1f} MB: {'UNDER' if max(peaks) < RSS_TARGET_MB else 'OVER'} "
              f"{RSS_TARGET_MB:.0f} MB;  {results[-1]['size_mb']:g} MB vs {results[0]['size_mb']:g} MB: "
              f"{spread:+.1f} MB -> {'FLAT' if spread <= FLAT_TOLERANCE_MB else 'NOT FLAT'} "
              f"(tolerance {FLAT_TOLERANCE_MB:g} MB)")
    return {"results": results, "verdicts": verdicts, "target_mb": RSS_TARGET_MB,
            "flat_tolerance_mb": FLAT_TOLERANCE_MB}


def rss_worker(args: argparse.Namespace) -> None:
    """The measured worker: a fresh process, ours only; prints one JSON line."""
    import resource

    common.airflow_env()
    import airflow_cmdexec_provider.runner.workdir  # noqa: F401
    import airflow_cmdexec_provider.storage.s3  # noqa: F401

    storage = make_storage(args.endpoint)
    import_rss = common.peak_rss_mb()
    result = ours_roundtrip(Path(args.project), storage, Path(args.work), rss=True)
    phases = result["peak_rss_mb"]
    print(json.dumps({
        "import_rss_mb": import_rss,
        "phases_peak_rss_mb": phases,
        "worker_peak_rss_mb": max(import_rss, phases["pack"], phases["upload"]),
        "peak_rss_mb": max([import_rss, *phases.values()]),
        # not used: on Linux ru_maxrss keeps the high-water mark of the mm a fork copied from the
        # parent (it survives exec), so it reports the benchmark's RSS, not the worker's
        "ru_maxrss_mb_unreliable": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": result["seconds"],
        "archive_bytes": result["archive_bytes"],
    }))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_rss-worker":
        worker = argparse.ArgumentParser(prog="bench_ecs_shipping.py _rss-worker")
        worker.add_argument("_mode")
        worker.add_argument("--project", required=True)
        worker.add_argument("--work", required=True)
        worker.add_argument("--endpoint", required=True)
        rss_worker(worker.parse_args())
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds of each contender (default 3)")
    parser.add_argument("--size-mb", type=float, default=200, help="A/B project size in MB (default 200)")
    parser.add_argument("--files", type=int, default=20000, help="A/B project files (default 20000)")
    parser.add_argument("--rss-sizes", default="10,50,100,200,500",
                        help="project sizes in MB for the peak RSS series (default 10,50,100,200,500)")
    parser.add_argument("--files-per-mb", type=float, default=100,
                        help="files per MB in the RSS series (default 100: 50,000 files at 500 MB)")
    parser.add_argument("--seed", type=int, default=20260101, help="seed of the generated projects")
    parser.add_argument("--tmpdir", default=None, help="where projects and archives go (default: the system temp dir)")
    parser.add_argument("--skip-ab", action="store_true", help="skip the ours vs tar|curl timing")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak RSS series")
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
