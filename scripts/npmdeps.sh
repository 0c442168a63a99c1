#!/usr/bin/env bash
# Installs the npm packages in scripts/npm-packages.txt into build/npm (project-local, never
# global), once: a stamp next to them records the list they were installed from. Tests find them
# there (tests/consumers.py); without npm, or offline, the tests that need them skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/npm
stamp=$dest/.installed-stamp
list=scripts/npm-packages.txt
if [[ -f $stamp ]] && cmp -s "$list" "$stamp"; then
	exit 0
fi
if ! command -v npm >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
	# Debian's nodejs ships without npm (NodeSource's includes it): add Debian's npm package
	echo "installing Debian package: npm"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null \
		|| true
fi
if ! command -v npm >/dev/null; then
	echo "note: npm is missing (Debian nodejs/npm): tests against speedscope, pprof-format and"
	echo "      the Firefox Profiler's loader will skip"
	exit 0
fi
pkgs=()
while read -r pkg _; do
	[[ -z "$pkg" || "$pkg" == \#* ]] && continue
	pkgs+=("$pkg")
done < "$list"
mkdir -p "$dest"
[[ -f $dest/package.json ]] || echo '{"private": true}' > "$dest/package.json"
echo "installing npm packages into $dest: ${pkgs[*]}"
# profiler-cli declares node >= 24 but runs on Debian's node 20: don't let the engine check stop it
if npm install --prefix "$dest" --no-audit --no-fund --loglevel=error --engine-strict=false \
		"${pkgs[@]}"; then
	cp "$list" "$stamp"
else
	echo "note: npm install failed: the tests that need these packages will skip"
fi
