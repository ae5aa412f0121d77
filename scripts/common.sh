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
