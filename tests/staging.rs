//! Staging refreshes of schemas nobody here wrote: a subset of pagila, whose payments are
//! partitioned with their foreign keys declared on each leaf but the last; integer keys
//! masked by a keyed permutation, distinct staying distinct; masks that follow the keys
//! that reference them, and pairs whose masked values could no longer join refused before
//! anything changes.

use crate::util::{self, assert_exit, exit, pair};

/// Every foreign key on the destination validated, none left `NOT VALID`.
fn assert_keys_valid(dst: &util::TestDb, out: &util::Output) {
    assert_eq!(
        dst.scalar_i64(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
        ),
        0,
        "{out:?}"
    );
}

#[test]
fn a_subset_of_pagila_keeps_to_the_keys_its_partitions_declare() {
    let (src, dst) = pair!();
    util::load_pagila(&src);
    util::pagila_schema(&dst);
    let rules = util::rules_file(
        &src,
        "rental",
        "[subset.\"public.rental\"]\nwhere = \"rental_id % 10 = 0\"\n",
    );
    let out = util::copy(&src, &dst, &["--rules", &rules, "--dry-run"]);
    assert_exit!(out, exit::SUCCESS);
    // The leaves are subsets too, the one without a key of its own as well.
    for leaf in ["payment_p2022_01", "payment_p2022_07"] {
        let said = format!("subset public.{leaf}: the rows whose references to public.rental");
        assert!(out.stdout.contains(&said), "{leaf}: {out:?}");
    }

    let out = util::copy(&src, &dst, &["--rules", &rules]);
    assert_exit!(out, exit::SUCCESS);
    assert_keys_valid(&dst, &out);
    // No payment of a dropped rental, in any leaf: also the last, which declares no key.
    assert_eq!(
        dst.scalar_i64(
            "SELECT count(*) FROM payment p
              WHERE NOT EXISTS (SELECT FROM rental r WHERE r.rental_id = p.rental_id)"
        ),
        0
    );
    assert_eq!(
        dst.count("payment"),
        src.scalar_i64("SELECT count(*) FROM payment WHERE rental_id % 10 = 0")
    );
    assert_eq!(
        dst.count("payment_p2022_07"),
        src.scalar_i64("SELECT count(*) FROM payment_p2022_07 WHERE rental_id % 10 = 0")
    );
    assert_eq!(
        dst.count("rental"),
        src.count("rental WHERE rental_id % 10 = 0")
    );

    // A key the rules declare on a leaf is one of the partitioned table's.
    let declared = util::rules_file(
        &src,
        "declared",
        "[subset.\"public.rental\"]\nwhere = \"rental_id % 10 = 0\"\n\
         [[foreign_key]]\ntable = \"public.payment_p2022_07\"\ncolumns = [\"staff_id\"]\n\
         references = \"public.staff\"\n",
    );
    let out = util::copy(&src, &dst, &["--rules", &declared]);
    assert_exit!(out, exit::SUCCESS);
    assert_keys_valid(&dst, &out);
}
