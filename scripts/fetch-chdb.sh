#!/usr/bin/env bash
# fetch-chdb.sh puts the ClickHouse engine library (libchdb.so, ClickHouse
# 26.7, 566 MB) where internal/chserver looks for it by default:
#   ${XDG_CACHE_HOME:-~/.cache}/agentrail/chdb/26.7.3-stable.1/libchdb.so
# It comes from the npm package @chdb/lib-linux-x64-gnu, fetched with npm so
# that npm checks the tarball against the registry's integrity hash.
#
# Idempotent: exits at once when the library is already there.
# Environment: DEST overrides the directory. To use a library you already
# have, skip this script and set AGENTRAIL_CHDB_LIB to its path.
set -euo pipefail

# Pinned: keep in step with chserver.LibVersion. npm's "latest" tag points
# at an older 26.5 release.
readonly PKG="@chdb/lib-linux-x64-gnu"
readonly VERSION="26.7.3-stable.1"
readonly DEST="${DEST:-${XDG_CACHE_HOME:-$HOME/.cache}/agentrail/chdb/$VERSION}"
readonly LIB="$DEST/libchdb.so"

if [[ -f "$LIB" ]]; then
	echo "$LIB already present"
	exit 0
fi
if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
	echo "fetch-chdb: $PKG is built for Linux x86_64 (glibc), not $(uname -s)/$(uname -m)" >&2
	exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
	echo "fetch-chdb: npm not found: install Node.js (which brings npm), or set AGENTRAIL_CHDB_LIB to an existing libchdb.so" >&2
	exit 1
fi

mkdir -p "$DEST"
tmp="$(mktemp -d "$DEST/.fetch.XXXXXX")" # inside DEST, so the final mv is a rename
trap 'rm -rf "$tmp"' EXIT

echo "fetch-chdb: downloading $PKG@$VERSION with npm..." >&2
# A throwaway npm cache: the tarball is needed once, not kept in ~/.npm.
tarball="$(cd "$tmp" && npm pack --silent --cache "$tmp/npm-cache" "$PKG@$VERSION")"
tar -xzf "$tmp/$tarball" -C "$tmp" package/libchdb.so
mv -f "$tmp/package/libchdb.so" "$LIB"

echo "$LIB ($(stat -c %s "$LIB") bytes)"
