"""What detect's fingerprint costs the driver over N images: every file read serially (before the hash cache),
the first run with the cache (hashes in a thread pool, then stored), and a rerun over unchanged images.

    python benchmarks/bench_hashing.py [--images 2000] [--width 320] [--repeats 3]

The fingerprint is ``dghc.pipeline.detection.run.build_fingerprint``, as detect computes it before any work (both
engines, every run, resume and up-to-date check). Images: JPEG files of random pixels (about 100 KB at 320x240),
written to a temporary folder, then left older than the cache's racy window. The files stay in the OS page cache
(dropping it would disturb the machine's other work): no disk reads are timed, so the first runs are faster than on
a cold disk. Each timing is the best of ``--repeats``; the cache's database is a temporary one.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dghc.pipeline.core.offline import offline_environment  # noqa: E402

offline_environment(REPO)

from benchmarks.report import update_section  # noqa: E402

SECTION = "hashing: detect's fingerprint, cold vs warm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--width", type=int, default=320, help="image width (height: 3/4 of it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-report", action="store_true", help="print only, do not touch BENCHMARKS.md")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from dghc.pipeline.artifacts import file_hashes
    from dghc.pipeline.artifacts.fingerprint import sha256_file, sha256_json
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.run import ImageItem, build_fingerprint
    from dghc.pipeline.detection.sources import LoadedSources

    with tempfile.TemporaryDirectory(prefix="bench-hashing-") as temporary:
        folder, database = Path(temporary) / "images", Path(temporary) / "file-hashes.sqlite"
        folder.mkdir()
        os.environ[file_hashes.CACHE_ENV] = str(database)
        rng = np.random.default_rng(0)
        height = args.width * 3 // 4
        items = []
        for index in range(args.images):
            path = folder / f"img-{index:05d}.jpg"
            Image.fromarray(rng.integers(0, 256, (height, args.width, 3), dtype=np.uint8)).save(path, quality=90)
            items.append(ImageItem(path.stem, path, []))
        megabytes = sum(item.path.stat().st_size for item in items) / 1e6
        time.sleep(file_hashes.RACY_NS / 1e9 + 0.5)  # older than the racy window: stored on the first run
        config, loaded = DetectConfig(files=[], grounding=None), LoadedSources()

        def timed(work) -> float:
            start = time.perf_counter()
            work()
            return time.perf_counter() - start

        def serial() -> str:  # the fingerprint's images before the cache: each file read in turn
            return sha256_json([[item.image_id, sha256_file(item.path)] for item in items])

        def cold() -> None:
            database.unlink(missing_ok=True)
            assert build_fingerprint(config, items, loaded)["images_sha256"] == expected

        def warm() -> None:
            assert build_fingerprint(config, items, loaded)["images_sha256"] == expected

        expected = serial()
        times: dict[str, list[float]] = {"serial": [], "cold": [], "warm": []}
        for _ in range(args.repeats):  # interleaved: the machine is shared
            times["serial"].append(timed(serial))
            times["cold"].append(timed(cold))
            times["warm"].append(timed(warm))
        best = {name: min(values) for name, values in times.items()}
        threads = min(32, (os.cpu_count() or 1) + 4)

    n = args.images
    body = (
        f"{n} JPEG files of random pixels ({args.width}x{height}, {megabytes:.0f} MB in all, in the OS page cache), "
        f"`build_fingerprint` of detect; {threads} hashing threads; best of {args.repeats} interleaved repeats.\n\n"
        "| run | seconds | images/s |\n|---|---|---|\n"
        f"| before the cache: every file read and hashed serially (every run) | {best['serial']:.3f} | "
        f"{n / best['serial']:,.0f} |\n"
        f"| first run with the cache (empty database: hashed in threads, stored) | {best['cold']:.3f} | "
        f"{n / best['cold']:,.0f} |\n"
        f"| **rerun over unchanged images** (a stat each, no read) | **{best['warm']:.3f}** | "
        f"**{n / best['warm']:,.0f}** |\n\n"
        f"All times (s): serial {', '.join(f'{t:.3f}' for t in times['serial'])}; "
        f"cold {', '.join(f'{t:.3f}' for t in times['cold'])}; warm {', '.join(f'{t:.3f}' for t in times['warm'])}."
    )
    command = ("python benchmarks/bench_hashing.py " + " ".join(sys.argv[1:])).strip()
    if args.no_report:
        print(body)
    else:
        update_section(SECTION, body, command)


if __name__ == "__main__":
    main()
