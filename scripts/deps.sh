#!/bin/sh
# Installs what is missing (Debian): `deps.sh build` for building, `deps.sh
# test` (the default) for building and testing.
set -e
missing=""
[ -f /usr/include/lua5.4/lua.h ] || missing="$missing liblua5.4-dev"
command -v cc >/dev/null 2>&1 || missing="$missing gcc make"
if [ "${1:-test}" = test ]; then
  command -v lua5.4 >/dev/null 2>&1 || missing="$missing lua5.4"
  [ -f /usr/share/lua/5.4/busted/runner.lua ] || missing="$missing lua-busted"
  command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
  command -v luarocks >/dev/null 2>&1 || missing="$missing luarocks"
fi
[ -z "$missing" ] && exit 0
echo "installing:$missing"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq $missing >/dev/null
