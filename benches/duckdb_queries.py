"""DuckDB side of `cargo bench --bench archive`: the same queries over the same Parquet files.

Usage: python3 benches/duckdb_queries.py ARCHIVE_DIR SQL...
Prints one line per query: "<rows> <median milliseconds of 5 runs after a warm-up>".
`events` is a view over ARCHIVE_DIR/events with hive partitions read as strings, as
credwatch registers them.
"""

import statistics
import sys
import time

try:
    import duckdb
except ImportError:
    sys.exit("the duckdb Python package is not installed")


def main():
    archive, queries = sys.argv[1], sys.argv[2:]
    con = duckdb.connect()
    files = f"{archive}/events/*/*/*.parquet".replace("'", "''")
    con.execute(
        f"CREATE VIEW events AS SELECT * FROM read_parquet('{files}', hive_partitioning = true, "
        "hive_types = {'date': VARCHAR, 'hour': VARCHAR})"
    )
    for sql in queries:
        rows = len(con.execute(sql).fetchall())
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            con.execute(sql).fetchall()
            samples.append((time.perf_counter() - started) * 1000.0)
        print(rows, statistics.median(samples), flush=True)


if __name__ == "__main__":
    main()
