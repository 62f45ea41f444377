#!/usr/bin/env bash
# The Debian package: the release binary, its man page and shell completions (made by the
# binary itself, from the definitions its --help comes from), the example connection and
# rules files, and a systemd unit template for a follower, packed by cargo-deb (installed
# with `cargo install cargo-deb` when missing) as Cargo.toml's [package.metadata.deb] says.
# Prints the package's path.
#
#   scripts/package.sh              build target/debian/pgcopy-cli_<version>_<arch>.deb
#   scripts/package.sh --install    also install it (dpkg -i; as root) and run the installed
#                                   binary, its man page and its completion: what CI checks
set -euo pipefail
cd "$(dirname "$0")/.."
install=
[[ ${1:-} == --install ]] && install=1

if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "installing cargo-deb" >&2
    cargo install cargo-deb --locked >&2
fi
cargo build --release --locked >&2
bin=target/release/pgcopy
out=target/package
rm -rf "$out"
mkdir -p "$out"
"$bin" man >"$out/pgcopy.1"
gzip -9n "$out/pgcopy.1"
"$bin" completions bash >"$out/pgcopy.bash"
"$bin" completions zsh >"$out/_pgcopy"
"$bin" completions fish >"$out/pgcopy.fish"
deb=$(cargo deb --no-build --no-strip --locked 2>/dev/null | tail -n 1)
[[ -f $deb ]] || {
    echo "cargo deb made no package" >&2
    exit 1
}
echo "$deb"
[[ -n $install ]] || exit 0

# Installed, the package's files are where Debian puts them and work from there.
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >&2
installed=$(command -v pgcopy)
[[ $installed == /usr/bin/pgcopy ]] || {
    echo "pgcopy is at $installed, not /usr/bin/pgcopy" >&2
    exit 1
}
/usr/bin/pgcopy version
/usr/bin/pgcopy help copy >/dev/null
dpkg -L pgcopy-cli | grep -qx /usr/share/man/man1/pgcopy.1.gz
dpkg -L pgcopy-cli | grep -qx /lib/systemd/system/pgcopy-follow@.service
if command -v man >/dev/null 2>&1; then
    man -w pgcopy >/dev/null
fi
bash -c 'source /usr/share/bash-completion/completions/pgcopy && complete -p pgcopy' >/dev/null
# The follower's unit, as systemd reads an instance of it (where systemd's tools are here).
if command -v systemd-analyze >/dev/null 2>&1; then
    units=$(mktemp -d)
    cp /lib/systemd/system/pgcopy-follow@.service "$units/pgcopy-follow@check.service"
    said=$(systemd-analyze verify "$units/pgcopy-follow@check.service" 2>&1 || true)
    rm -rf "$units"
    [[ -z $said ]] || {
        echo "systemd-analyze verify pgcopy-follow@.service: $said" >&2
        exit 1
    }
else
    echo "systemd-analyze is not here: the unit's syntax is not checked" >&2
fi
echo "installed $deb: /usr/bin/pgcopy runs, its man page and completions are in place" >&2
