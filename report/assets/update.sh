#!/bin/sh
# Refresh the ECharts bundle inlined into ptlab's HTML reports from the npm
# registry (ptlab's pages load nothing from the network; the library is
# embedded with go:embed). Keep the version in step with go-echarts' option
# model (ECharts 5).
set -eu
VERSION=${1:-5.6.0}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "echarts@$VERSION" >/dev/null && tar xzf "echarts-$VERSION.tgz")
cp "$tmp/package/dist/echarts.min.js" echarts.min.js
cp "$tmp/package/LICENSE" ECHARTS-LICENSE
cp "$tmp/package/NOTICE" ECHARTS-NOTICE
echo "echarts $VERSION" > ECHARTS-VERSION
