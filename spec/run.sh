#!/bin/sh
# Runs the C unit tests and the busted specs (under flua) and ends with one
# line counting both: "N passed, N failed".
B=${B:-build}
# Compiled kernels go to a cache of the run's own, not the user's.
cache=$(mktemp -d)
export FLASHLIGHT_CACHE=${FLASHLIGHT_CACHE:-$cache}
core_out=$($B/test_core 2>&1)
echo "$core_out"
core_pass=$(echo "$core_out" | sed -n 's/^core: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
core_fail=$(echo "$core_out" | sed -n 's/^core: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
if [ -z "$core_pass" ]; then core_pass=0; core_fail=1; echo "core tests did not finish"; fi

spec_out=$($B/flua /usr/bin/busted -o TAP "$@" 2>&1)
echo "$spec_out"
spec_pass=$(echo "$spec_out" | grep -c '^ok ')
spec_fail=$(echo "$spec_out" | grep -c '^not ok ')
if ! echo "$spec_out" | grep -q '^1\.\.[0-9]'; then spec_fail=$((spec_fail + 1)); echo "busted did not finish"; fi

passed=$((core_pass + spec_pass))
failed=$((core_fail + spec_fail))
rm -rf "$cache"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
