#!/usr/bin/env bash
# Prints which module of src/ names which, and fails on an import cycle or an oversized file.
# Two levels are checked: the top-level modules of src/ (`crate::plan` named from `transfer/`),
# and the files of each folder among themselves (`super::target` or `crate::pg::target` named
# from `pg/server.rs`). Unit tests (from `#[cfg(test)]` to the end of a file) do not count: a
# test may reach anywhere. Also fails on a file of src/ past 500 lines (the style guide's
# "a file past ~500 lines is two"). `.ci/run` runs it; run it by hand to see the floors:
#   scripts/module-graph.sh            the top-level graph, its cycles and the largest files
#   scripts/module-graph.sh --files    also every file-level edge inside each folder
set -euo pipefail
cd "$(dirname "$0")/.."

limit=500
show_files=${1:-}

# One "from to" line per distinct edge, for both levels. A file's top-level module is its
# first path component under src/ (`main.rs`, `exit.rs` and `units.rs` are their own); its
# room is its folder and its unit the file or subfolder it is in, within that folder.
edges=$(find src -name '*.rs' | sort | while read -r file; do
    rel=${file#src/}
    top=${rel%%/*}
    top=${top%.rs}
    dir=$(dirname "$rel")
    awk -v top="$top" -v rel="$rel" -v dir="$dir" '
        BEGIN { depth = (dir == ".") ? 0 : split(dir, d, "/") }
        /^#\[cfg\(test\)\]/ { exit }
        /^[[:space:]]*\/\// { next }
        {
            line = $0
            # crate::a::b — the top-level edge, and a file edge when a and this file share a folder.
            while (match(line, /crate::[a-z_]+(::[a-z_]+)*/)) {
                path = substr(line, RSTART + 7, RLENGTH - 7)
                line = substr(line, RSTART + RLENGTH)
                n = split(path, part, "::")
                if (part[1] != top) print "top", top, part[1]
                # Within each folder above this file: the unit named just below it.
                for (m = 1; m <= depth; m++) {
                    same = 1
                    for (i = 1; i <= m; i++) if (part[i] != d[i]) { same = 0; break }
                    if (same && n > m) unit(m, part[m + 1])
                }
            }
            line = $0
            while (match(line, /(^|[^a-z_:])super::[a-z_]+/)) {
                name = substr(line, RSTART, RLENGTH)
                sub(/.*super::/, "", name)
                line = substr(line, RSTART + RLENGTH)
                if (rel !~ /\/mod\.rs$/ && depth > 0) unit(depth, name)
            }
        }
        # An edge in the folder made of the first m parts of the folder of this file, from the
        # file or subfolder this file is in there to `name`. The mod.rs of a folder is the folder
        # itself: what it names is what its folder exports, not an edge inside it.
        function unit(m, name,    i, folder, here, self) {
            folder = d[1]
            for (i = 2; i <= m; i++) folder = folder "/" d[i]
            here = substr(rel, length(folder) + 2)
            self = here
            sub(/\/.*/, "", self)
            sub(/\.rs$/, "", self)
            if (self == "mod" || name == self) return
            print "file", folder, self, name
        }
    ' "$file"
done | sort -u)

status=0

# Cycles by depth-first search over an edge list "from to" on stdin; prints each cycle once.
cycles() {
    awk '
        { adj[$1] = adj[$1] " " $2; nodes[$1]; nodes[$2] }
        function visit(v,    i, n, next_, k, path) {
            state[v] = 1; stack[++depth] = v
            n = split(adj[v], next_, " ")
            for (i = 1; i <= n; i++) {
                if (state[next_[i]] == 1) {
                    for (k = depth; stack[k] != next_[i]; k--) ;
                    path = stack[k]
                    for (k++; k <= depth; k++) path = path " -> " stack[k]
                    print path " -> " next_[i]
                } else if (state[next_[i]] == 0) visit(next_[i])
            }
            depth--; state[v] = 2
        }
        END { for (v in nodes) if (state[v] == 0) visit(v) }
    '
}

echo "Top-level modules of src/ and the modules each names:"
top_edges=$(awk '$1 == "top" { print $2, $3 }' <<<"$edges")
awk '{ names[$1] = names[$1] " " $2 } END { for (m in names) print "  " m " ->" names[m] }' \
    <<<"$top_edges" | sort
top_cycles=$(cycles <<<"$top_edges")
if [[ -n $top_cycles ]]; then
    echo "Cycles among the top-level modules:"
    sed 's/^/  /' <<<"$top_cycles"
    status=1
else
    echo "No cycle among the top-level modules."
fi

file_cycles=""
while read -r dir; do
    [[ -n $dir ]] || continue
    dir_edges=$(awk -v dir="$dir" '$1 == "file" && $2 == dir { print $3, $4 }' <<<"$edges")
    if [[ $show_files == --files ]]; then
        awk -v dir="$dir" '{ names[$1] = names[$1] " " $2 }
            END { for (m in names) print "  " dir "/" m " ->" names[m] }' <<<"$dir_edges" | sort
    fi
    found=$(cycles <<<"$dir_edges")
    [[ -z $found ]] || file_cycles+=$(sed "s|^|  $dir: |" <<<"$found")$'\n'
done < <(awk '$1 == "file" { print $2 }' <<<"$edges" | sort -u)
if [[ -n $file_cycles ]]; then
    echo "Cycles among the files of a folder:"
    printf '%s' "$file_cycles"
    status=1
else
    echo "No cycle among the files of any folder."
fi

echo "Largest files of src/ (limit $limit lines):"
find src -name '*.rs' -exec wc -l {} + | grep -v ' total$' | sort -rn | awk 'NR <= 5 { print "  " $0 }'
over=$(find src -name '*.rs' -exec wc -l {} + | grep -v ' total$' | awk -v l=$limit '$1 > l')
if [[ -n $over ]]; then
    echo "Files past $limit lines:"
    sed 's/^/  /' <<<"$over"
    status=1
fi
exit $status
