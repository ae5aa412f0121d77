# Sourced by the scripts beside it: what more than one of them needs.

# Uses a target directory outside the clone when one exists ($CREDWATCH_TARGET_DIR, else
# ~/.cache/credwatch-target) and CARGO_TARGET_DIR is not set already, so a fresh clone on a
# machine that built before starts warm. Fails (changing nothing) otherwise.
reuse_shared_target() {
    [ -z "${CARGO_TARGET_DIR:-}" ] || return 1
    local shared="${CREDWATCH_TARGET_DIR:-$HOME/.cache/credwatch-target}"
    [ -d "$shared" ] || return 1
    export CARGO_TARGET_DIR="$shared"
}

# Notes which checkout builds into $CARGO_TARGET_DIR (when set) and, when another one did
# last, removes credwatch's own artifacts there (its dependencies stay; the crate is rebuilt
# in minutes). Cargo tells the same crate in two checkouts apart by its
# files' times alone: both build into the same file names, so a checkout whose files are older
# than the other's last build would take that build as fresh, and its tests, benches and
# binary would run the other checkout's code (seen: after building another commit in a
# worktree, `cargo bench` here ran that commit's library).
claim_target() {
    local dir="${CARGO_TARGET_DIR:-}" here stamp
    here=$(pwd -P)
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    stamp="$dir/credwatch-checkout"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$here" ]; then
        echo "scripts/$(basename "$0"): $dir was last built from $(cat "$stamp"); removing credwatch's own artifacts there, to build them from $here" >&2
        cargo clean -p credwatch >/dev/null 2>&1 || true
        cargo clean --release -p credwatch >/dev/null 2>&1 || true
    fi
    echo "$here" >"$stamp"
}

# Prints the executable of the target named $1 from the JSON messages cargo writes to stdin
# (--message-format=json); with a second argument `test`, only a test harness build of it.
cargo_executable() {
    python3 -c '
import json, sys
name, test = sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "test"
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable")
            and (not test or m.get("profile", {}).get("test"))):
        print(m["executable"])' "$@"
}
