"""The same day-over-day inventory diff in DuckDB, for comparison (see bench/README.md).

Usage: inventory_duckdb.py DEST_DIR DAY1_MANIFEST_KEY DAY2_MANIFEST_KEY
Reads both reports' data files (CSV.gz or Parquet, from their manifests), full-outer-joins
them on the key and counts added / removed / changed objects. Prints one JSON line with the
wall time of the query and the process's peak RSS.
"""
import json
import os
import resource
import sys
import time

import duckdb


def files_and_format(dest, manifest_key):
    with open(os.path.join(dest, manifest_key), "rb") as f:
        manifest = json.load(f)
    columns = [c.strip() for c in manifest["fileSchema"].split(",")] if manifest["fileFormat"] == "CSV" else None
    return [os.path.join(dest, f["key"]) for f in manifest["files"]], manifest["fileFormat"], columns


def relation(con, name, files, fmt, columns):
    if fmt == "CSV":
        cols = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
        source = f"read_csv({files!r}, columns={{{cols}}}, header=false, compression='gzip', quote='\"')"
        select = ("Key AS k, Size AS size, ETag AS etag, LastModifiedDate AS lm, StorageClass AS sc, "
                  "EncryptionStatus AS enc, BucketKeyStatus AS bk")
    else:
        source = f"read_parquet({files!r})"
        select = ("key AS k, size, e_tag AS etag, last_modified_date AS lm, storage_class AS sc, "
                  "encryption_status AS enc, bucket_key_status AS bk")
    con.execute(f"CREATE VIEW {name} AS SELECT {select} FROM {source}")


def main():
    dest, day1, day2 = sys.argv[1:4]
    con = duckdb.connect()
    started = time.monotonic()
    for name, key in (("d1", day1), ("d2", day2)):
        files, fmt, columns = files_and_format(dest, key)
        relation(con, name, files, fmt, columns)
    added, removed, changed = con.execute("""
        SELECT count(*) FILTER (WHERE o.k IS NULL),
               count(*) FILTER (WHERE n.k IS NULL),
               count(*) FILTER (WHERE o.k IS NOT NULL AND n.k IS NOT NULL AND (
                   o.size IS DISTINCT FROM n.size OR o.etag IS DISTINCT FROM n.etag OR
                   o.lm IS DISTINCT FROM n.lm OR o.sc IS DISTINCT FROM n.sc OR
                   o.enc IS DISTINCT FROM n.enc OR o.bk IS DISTINCT FROM n.bk))
        FROM d1 o FULL OUTER JOIN d2 n ON o.k = n.k
    """).fetchone()
    elapsed = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": "duckdb " + duckdb.__version__, "format": fmt, "added": added,
                      "removed": removed, "changed": changed, "total_s": round(elapsed, 3),
                      "peak_rss_mib": round(peak, 1), "threads": con.execute(
                          "SELECT current_setting('threads')").fetchone()[0]}))


if __name__ == "__main__":
    main()
