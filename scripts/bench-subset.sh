#!/usr/bin/env bash
# What a referentially complete subset costs (issue 20): the whole database copied, and a
# subset of it, on two throwaway servers with production's settings (fsync on,
# wal_level=replica).
#
#   scripts/bench-subset.sh [RENTALS (1000000)] [RUNS (3)]
#
# The schema has what makes a closure work: customer references itself (referred_by, a
# chain about log2(customers) deep) and address, which references customer (a cycle);
# rental references customer and store; payment follows rental; note follows rental and
# replies to notes (threads of up to five). RENTALS rentals and payments, a tenth as many
# customers and addresses, a fifth as many notes. The rules keep the rentals of the last
# 1% of days and the first 1000 customers; the copy then keeps what they reference, and
# the payments and notes whose references are kept. Per round, round robin:
#   full     pgcopy copy, no rules
#   subset   pgcopy copy --rules (the closure computed by the source in each table's COPY)
# and prints the median time of each, subset ÷ full (the median of the rounds' own ratios,
# with their range), pgcopy's CPU time and peak memory, the rows each table kept, and
# checks that every foreign key on the destination is valid. pgsync, Greenmask and Jailer,
# the tools with subsets, are not run: none is packaged for this machine.
# PGCOPY_BIN (else `cargo build --release` here), PG_BINDIR (see scripts/lib/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
# shellcheck source=scripts/lib/timing.sh
source scripts/lib/timing.sh
rentals=${1:-1000000}
runs=${2:-3}
customers=$((rentals / 10))

bench_pair

schema="
    CREATE TABLE store (id int PRIMARY KEY, name text);
    CREATE TABLE customer (id int PRIMARY KEY, referred_by int REFERENCES customer,
                           home int, name text);
    CREATE TABLE address (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer);
    ALTER TABLE customer ADD FOREIGN KEY (home) REFERENCES address DEFERRABLE;
    CREATE TABLE rental (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer,
                         store_id int REFERENCES store, day date);
    CREATE TABLE payment (id int PRIMARY KEY, rental_id int REFERENCES rental, amount int);
    CREATE TABLE note (id int PRIMARY KEY, rental_id int REFERENCES rental,
                       reply_to int REFERENCES note, body text);"
echo "==> filling $rentals rentals" >&2
for side in src dst; do cluster_psql "$side" bench -q -c "$schema"; done
cluster_psql src bench -q -c "
    INSERT INTO store SELECT i, 'store ' || i FROM generate_series(1, 10) i;
    INSERT INTO customer SELECT i, CASE WHEN i > 10 THEN i / 2 END, NULL, 'c' || i
      FROM generate_series(1, $customers) i;
    INSERT INTO address SELECT i, 1 + (i * 7) % $customers FROM generate_series(1, $customers) i;
    UPDATE customer SET home = id WHERE id % 4 = 0;
    INSERT INTO rental SELECT i, 1 + (i::int8 * 7919) % $customers, 1 + i % 10,
                              date '2020-01-01' + i % 1000
      FROM generate_series(1, $rentals) i;
    INSERT INTO payment SELECT i, 1 + (i::int8 * 31) % $rentals, i % 100
      FROM generate_series(1, $rentals) i;
    INSERT INTO note SELECT i, 1 + (i::int8 * 13) % $rentals,
                            CASE WHEN i % 5 <> 1 THEN i - 1 END, md5(i::text)
      FROM generate_series(1, $rentals / 5) i"
cluster_psql src bench -q -c "VACUUM ANALYZE"

rules=$WORKDIR/rules.toml
cat >"$rules" <<'RULES'
[subset."public.rental"]
where = "day >= date '2020-01-01' + 990"
[subset."public.customer"]
limit = 1000
RULES
copy=("$PGCOPY_BIN" copy --source "$(cluster_url src bench)" --dest "$(cluster_url dst bench)"
    --yes --no-progress --quiet)
reset="cluster_psql dst bench -q -c 'TRUNCATE store, customer, address, rental, payment, note; CHECKPOINT'"

results=$(mktemp)
for round in $(seq 1 "$runs"); do
    echo "==> round $round of $runs" >&2
    {
        timed_run full "$reset" "${copy[@]}"
        timed_run subset "$reset" "${copy[@]}" --rules "$rules"
    } | sed "s/^/$round /" >>"$results"
    invalid=$(cluster_psql dst bench -Atc "SELECT count(*) FROM pg_constraint
                                           WHERE contype = 'f' AND NOT convalidated")
    [[ $invalid == 0 ]] || { echo "a foreign key is not valid after the subset" >&2; exit 1; }
done

echo "subset: $rentals rentals, $runs rounds, fsync on, wal_level=replica, $(nproc) cores"
summarize_rounds "$results" full full=full_copy subset=subset
rm -f "$results"
echo "rows kept by the subset (every foreign key valid on the destination):"
for table in store customer address rental payment note; do
    kept=$(cluster_psql dst bench -Atc "SELECT count(*) FROM $table")
    all=$(cluster_psql src bench -Atc "SELECT count(*) FROM $table")
    awk -v t="$table" -v k="$kept" -v a="$all" \
        'BEGIN { printf "  %-10s %10d of %10d (%.1f%%)\n", t, k, a, 100 * k / a }'
done
