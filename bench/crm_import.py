"""CRM import throughput: generate N customers as CSV, import them with `import_csv` into a
fresh embedded PostgreSQL, print rows/s. Target: 1,000,000 rows in well under two minutes.

    python bench/crm_import.py            # 1,000,000 rows
    python bench/crm_import.py --rows 20000   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.crm.importer import import_csv
from callcenter.storage import db as dbmod
from callcenter.storage.embedded import EmbeddedPostgres

FIRST = ["Anna", "Boris", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jürgen"]
LAST = ["Ivanova", "Smith", "Müller", "Díaz", "Kowalski", "Nakamura", "Okafor", "Rossi"]


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone", "tier", "segment", "language", "tags", "stage", "notes"])
        for i in range(rows):
            # distinct, valid US numbers: area codes 201-989 with exchange 2xx-9xx
            area = 201 + (i // 8_000_000) % 700
            exch = 200 + (i // 10_000) % 800
            phones = f"({area}) {exch}-{i % 10_000:04d}"
            if i % 10 == 0:
                phones += f"; mobile=+44 7{400000000 + i // 10:09d}"
            w.writerow([
                f"{rnd.choice(FIRST)} {rnd.choice(LAST)}",
                phones,
                "vip" if i % 50 == 0 else "standard",
                rnd.choice(["smb", "enterprise", "consumer"]),
                rnd.choice(["en", "de", "ru", "es"]),
                "newsletter" if i % 3 == 0 else "",
                rnd.choice(["lead", "customer", "churned"]),
                "",
            ])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "customers.csv"
        t0 = time.monotonic()
        write_csv(csv_path, args.rows)
        gen_s = time.monotonic() - t0
        pg = EmbeddedPostgres(Path(tmp) / "pg", cleanup="delete")
        pg.start()
        try:
            dsn = pg.dsn("postgres")
            await asyncio.to_thread(dbmod.upgrade, dsn)
            conn = await asyncpg.connect(**dbmod.asyncpg_dsn(dsn))
            report = await import_csv(conn, csv_path, region="US", show_progress=False)
            n = await conn.fetchval("SELECT count(*) FROM customers")
            p = await conn.fetchval("SELECT count(*) FROM customer_phones")
            await conn.close()
        finally:
            pg.close()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"generated {args.rows:,} rows ({csv_path.name}) in {gen_s:.1f} s")
    print(f"{'figure':<28}{'value':>14}   target")
    print(f"{'rows imported':<28}{n:>14,}   = {args.rows:,}")
    print(f"{'phones imported':<28}{p:>14,}")
    print(f"{'rejected':<28}{len(report.rejected):>14,}   0")
    print(f"{'import time (s)':<28}{report.seconds:>14.1f}   < 120 for 1,000,000")
    print(f"{'rows/s':<28}{args.rows / report.seconds:>14,.0f}")
    if n != args.rows or report.rejected:
        print("FAILED: not every row was imported", file=sys.stderr)
        for r in report.rejected[:5]:
            print(r, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
