#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/debian-packages.txt that are missing.
# As root (CI), it installs them with apt-get; otherwise it names what is missing and
# the tests that need those packages skip with a reason.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
while read -r pkg _; do
	[[ -z "$pkg" || "$pkg" == \#* ]] && continue
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < debian-packages.txt
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
	echo "installing Debian packages: ${missing[*]}"
	apt-get update -qq
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null; then
		# one this release lacks must not stop the others: the tests that need it skip
		for pkg in "${missing[@]}"; do
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				"$pkg" >/dev/null || echo "note: cannot install $pkg; the tests that need it skip"
		done
	fi
else
	echo "note: missing Debian packages (tests that need them will skip): ${missing[*]}"
	echo "      install them with: sudo apt-get install ${missing[*]}"
fi
