#!/usr/bin/env bash
# Example cron job: refresh staging from production every night with pgcopy.
#
#   # m h dom mon dow  command
#   30 2 * * *  /opt/pgcopy/cron-refresh-staging.sh >>/var/log/pgcopy/refresh.log 2>&1
#
# Connection strings live in files readable only by the cron user (chmod 600), never on the
# command line where `ps` and shell history would show them. Passwords can also come from
# ~/.pgpass. The JSON report of every run is kept next to the log for monitoring; the exit
# code tells cron (and whoever reads its mail) how it went. Production's personal data is
# masked as $CONF_DIR/rules.toml says (see conf/rules.example.toml), which can also keep a
# referentially complete subset of the big tables; without that file the job refuses to run
# rather than copy it unmasked.
#   0 all copied, 1 some tables failed (the rest copied, keys put back),
#   2 nothing was written (configuration, connection or schema problem), 130 interrupted.
set -euo pipefail

PGCOPY=${PGCOPY:-pgcopy}
CONF_DIR=${CONF_DIR:-/etc/pgcopy}
REPORT_DIR=${REPORT_DIR:-/var/log/pgcopy}
# Tables staging does not need (sessions, audit trails); adjust to your schema.
EXCLUDE=${EXCLUDE:-"*_sessions,audit.*"}

RULES=${RULES:-$CONF_DIR/rules.toml}
# The key of the rules' hash masks, in a file only the cron user can read.
if [[ -z ${PGCOPY_MASK_KEY:-} && -r $CONF_DIR/mask.key ]]; then
    export PGCOPY_MASK_KEY_FILE=${PGCOPY_MASK_KEY_FILE:-$CONF_DIR/mask.key}
fi

if [[ ! -r $RULES ]]; then
    echo "$(date -u +%FT%TZ) refresh refused: no rules file $RULES (staging gets masked data)" >&2
    exit 2
fi
mkdir -p "$REPORT_DIR"
report="$REPORT_DIR/refresh-$(date -u +%Y%m%dT%H%M%SZ).json"

status=0
"$PGCOPY" copy \
    --source-file "$CONF_DIR/source.conn" \
    --dest-file "$CONF_DIR/dest.conn" \
    --exclude-tables "$EXCLUDE" \
    --rules "$RULES" \
    --yes --no-progress --progress-interval 60 \
    --json >"$report" || status=$?

case "$status" in
    0) echo "$(date -u +%FT%TZ) refresh ok: $report" ;;
    1) echo "$(date -u +%FT%TZ) refresh finished with failed tables, see $report" >&2 ;;
    *) echo "$(date -u +%FT%TZ) refresh failed (exit $status), see the log above and $report" >&2 ;;
esac
exit "$status"
