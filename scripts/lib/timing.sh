# shellcheck shell=bash
# Timed rounds for the benchmark scripts: each run's wall time, pgcopy's CPU time and peak
# memory (/usr/bin/time), and a summary of medians and ratios, because these machines are
# shared and noisy: a ratio is the median of the rounds' own ratios, with their range.

# timed_run LABEL RESET COMMAND...: runs RESET (a shell command, not timed), then COMMAND;
# prints "LABEL SECONDS CPU-SECONDS PEAK-KB".
timed_run() {
    local label=$1 reset=$2 start end usage
    shift 2
    usage=$(mktemp)
    eval "$reset"
    start=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$usage" "$@"
    end=$(date +%s.%N)
    echo "$label $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')" \
        "$(awk '{ printf "%.2f %d", $1 + $2, $3 }' "$usage")"
    rm -f "$usage"
}

# summarize_rounds FILE BASE LABEL=NAME...: FILE holds "ROUND LABEL SECONDS CPU PEAK-KB"
# lines; prints per label its median time, its ratio to BASE's time in the same round
# (median, range), and pgcopy's median CPU time and peak memory.
summarize_rounds() {
    local file=$1 base=$2
    shift 2
    awk -v base="$base" -v labels="$*" '
        { t[$2, $1] = $3; c[$2, $1] = $4; m[$2, $1] = $5
          if (!($1 in seen)) { seen[$1] = 1; rounds[++n] = $1 } }
        function median(v, m,   i, j, s) {
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { s = v[i]; v[i] = v[j]; v[j] = s }
            return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        }
        END {
            count = split(labels, pairs, " ")
            printf "%-14s %10s %18s %14s %10s\n", "copy", "median s", "÷ " base, "pgcopy cpu s", "peak MiB"
            for (k = 1; k <= count; k++) {
                split(pairs[k], kv, "="); r = kv[1]; name = kv[2]; gsub("_", " ", name)
                lo = 1e9; hi = 0
                for (i = 1; i <= n; i++) {
                    secs[i] = t[r, rounds[i]]; ratio[i] = secs[i] / t[base, rounds[i]]
                    cpu[i] = c[r, rounds[i]]; mem[i] = m[r, rounds[i]]
                    if (ratio[i] < lo) lo = ratio[i]; if (ratio[i] > hi) hi = ratio[i]
                }
                printf "%-14s %10.2f %8.2f (%.2f-%.2f) %14.2f %10.0f\n", name, median(secs, n), median(ratio, n), lo, hi, median(cpu, n), median(mem, n) / 1024
            }
        }' "$file"
}
