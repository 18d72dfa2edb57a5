#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each one in turn, from its
# committed seeds (fuzz/corpus/<target>/). Fails if any target crashes,
# panics, times out or runs out of memory; the input is left in
# fuzz/artifacts/<target>/.
#
# CI runs it briefly (the defaults). The long runs recorded in SECURITY.md
# used the same script:
#   FUZZ_RUNS=10000000 FUZZ_SECONDS=1800 scripts/fuzz_smoke.sh [target...]
#
# cargo-fuzz needs the unstable -Zsanitizer flag; on the stable toolchain
# RUSTC_BOOTSTRAP=1 allows it (see SECURITY.md, "Fuzzing").
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${FUZZ_RUNS:-20000}
seconds=${FUZZ_SECONDS:-15}
logs=${FUZZ_LOG_DIR:-fuzz/target/logs}
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

# -a: debug assertions and overflow checks on, so an arithmetic overflow is
# a finding too.
start=$(date +%s)
cargo fuzz build -a || exit 1
echo "fuzz: build took $(($(date +%s) - start)) s"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

dict_for() {
    case $1 in
        managed_config_plist | mdm_apple) echo "-dict=fuzz/dict/plist.dict" ;;
        managed_config_json | mdm_android | scim_body | agent_command) echo "-dict=fuzz/dict/json.dict" ;;
        scim_filter) echo "-dict=fuzz/dict/scim_filter.dict" ;;
    esac
}

mkdir -p "$logs"
failed=()
for target in "${targets[@]}"; do
    # New inputs go to a working corpus under fuzz/target, never into the
    # committed seeds.
    work=fuzz/target/corpus/$target
    mkdir -p "$work"
    log=$logs/$target.log
    t0=$(date +%s)
    # shellcheck disable=SC2046
    if cargo fuzz run -a "$target" "$work" "fuzz/corpus/$target" -- \
        -runs="$runs" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 $(dict_for "$target") >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*')
    echo "fuzz: $target $status: ${execs:-?} runs in $(($(date +%s) - t0)) s; $last"
    if [ "$status" = FAILED ]; then
        tail -40 "$log"
    fi
done

echo "fuzz: all done in $(($(date +%s) - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/, logs in $logs/)" >&2
    exit 1
fi
