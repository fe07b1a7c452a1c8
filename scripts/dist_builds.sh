#!/bin/sh
# Adds builds of flua with compile-time knobs to dist/, beside dist/flua,
# for timing them side by side on a GPU machine (bench/builds.sh):
#   sh scripts/dist_builds.sh dist s3=-DFL_WS_STAGES=3 pm=-DFL_WS_PIPE_MASK_REGS=-100,-DFL_WS_PIPE_OTHER=1
# Each NAME=FLAGS (commas between flags) becomes dist/flua_NAME, built in
# build-NAME/ with CFLAGS "-O2 -g FLAGS".
set -e
D=$1; shift
for spec in "$@"; do
  case $spec in *=*) ;; *) echo "dist_builds: NAME=FLAGS, got '$spec'" >&2; exit 2;; esac
  name=${spec%%=*}; flags=$(printf '%s\n' "${spec#*=}" | tr ',' ' ')
  case $name in ''|*[!a-z0-9_]*) echo "dist_builds: a name is letters, digits and _: '$name'" >&2; exit 2;; esac
  rm -rf "build-$name" # the objects do not depend on CFLAGS: build afresh
  make -s -j8 B="build-$name" CFLAGS="-O2 -g $flags" "build-$name/flua"
  cp "build-$name/flua" "$D/flua_$name"
  echo "dist: flua_$name ($flags)"
done
