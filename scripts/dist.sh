#!/bin/sh
# Makes dist/: build/flua plus the Lua libraries the specs use, so that a
# machine with a GPU and no Lua can run `dist/run-specs spec/gpu`.
set -e
B=$1; D=$2
rm -rf "$D"; mkdir -p "$D/share" "$D/lib"
cp "$B/flua" "$D/flua"
cp /usr/bin/busted "$D/busted.lua"
[ -x "$B/test_core" ] && cp "$B/test_core" "$D/test_core"
cp -rL /usr/share/lua/5.4/. "$D/share/"
cp -rL /usr/lib/*/lua/5.4/. "$D/lib/"
cat > "$D/run-specs" <<'RUN'
#!/bin/sh
# Runs busted specs with the carried Lua libraries: dist/run-specs [busted args]
here=$(cd "$(dirname "$0")" && pwd)
export LUA_PATH="$here/share/?.lua;$here/share/?/init.lua;./?.lua;spec/?.lua;spec/support/?.lua;scripts/?.lua;scripts/?/init.lua"
export LUA_CPATH="$here/lib/?.so"
exec "$here/flua" "$here/busted.lua" "$@"
RUN
chmod +x "$D/run-specs"
echo "dist: $(du -sh "$D" | cut -f1) in $D/"
