#!/usr/bin/env bash
# Install (or upgrade) proxycheck as a systemd service on this machine. Run as root from the
# source checkout:
#
#   deploy/install.sh .                                     # build from this checkout
#   deploy/install.sh dist/proxycheck_fleet-0.1.0-py3-none-any.whl   # or a built wheel
#   deploy/install.sh '.[postgresql]'                       # with the PostgreSQL driver
#
# It installs from that local path only, never by name from an index ("proxycheck" on PyPI is
# somebody else's package). pip reads PIP_NO_INDEX / PIP_FIND_LINKS as always, so with a
# directory of wheels it runs offline; sudo drops them unless they come after it:
#
#   sudo PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/wheels" deploy/install.sh .
#
# (docs/deployment.md, "Installing offline", says how to fill wheels/: every dependency plus
# setuptools and wheel, which building the checkout needs). Re-running upgrades the program and
# keeps /etc/proxycheck/proxycheck.toml and proxies.csv as they are.
#
# What it does, in order:
#   1. the system user and group `proxycheck` (systemd-sysusers, deploy/proxycheck.sysusers);
#   2. a virtualenv in /opt/proxycheck holding the program, /usr/local/bin/proxycheck, which
#      runs it with /etc/proxycheck/proxycheck.toml, and the README (the unit's Documentation=)
#      with the docs/ it links to in /usr/share/doc/proxycheck;
#   3. /etc/proxycheck/ with the config (state in /var/lib/proxycheck) and the sources CSV,
#      readable by root and the proxycheck group only (the CSV holds proxy passwords);
#   4. the unit, enabled and (re)started: ExecStartPre= migrates the schema as the service user,
#      StateDirectory= creates /var/lib/proxycheck owned by it.
set -euo pipefail

usage="usage: deploy/install.sh CHECKOUT_OR_WHEEL   (as root, e.g. deploy/install.sh .)"
src=${1:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/proxycheck
fail() { echo "install.sh: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || fail "run as root (sudo deploy/install.sh $src)"
# A local path, given to pip as an absolute path so it can never be read as a name on an index.
path=${src%%\[*} extras=${src#"${src%%\[*}"}   # '.[postgresql]' -> '.' and '[postgresql]'
if [ -f "$path/pyproject.toml" ] || { [ -f "$path" ] && [[ $path == *.whl || $path == *.tar.gz ]]; }; then
    requirement="$(realpath "$path")$extras"
else
    fail "$src is neither a checkout (a directory with pyproject.toml) nor a wheel or sdist file; $usage"
fi
command -v systemctl >/dev/null && command -v systemd-sysusers >/dev/null || fail "needs systemd"
python3 -c 'import ensurepip, venv' 2>/dev/null || fail "needs python3 with venv (Debian: apt install python3-venv)"
[ -x /bin/kill ] || fail "needs /bin/kill for ExecReload= (Debian: apt install procps)"

echo "== 1. user and group proxycheck"
install -D -m 0644 "$here/proxycheck.sysusers" /etc/sysusers.d/proxycheck.conf
systemd-sysusers /etc/sysusers.d/proxycheck.conf

echo "== 2. $prefix"
python3 -m venv "$prefix"
"$prefix/bin/pip" install --quiet --upgrade "$requirement" ||
    fail "pip could not install $src (its error is above). Without the internet: fill a wheel folder as docs/deployment.md \"Installing offline\" says, then run: sudo PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels deploy/install.sh $src"
install -m 0755 "$here/proxycheck-command" /usr/local/bin/proxycheck
install -D -m 0644 "$here/../README.md" /usr/share/doc/proxycheck/README.md
install -D -m 0644 -t /usr/share/doc/proxycheck/docs "$here"/../docs/*.md "$here"/../docs/*.png

echo "== 3. /etc/proxycheck"
install -d -m 0750 -g proxycheck /etc/proxycheck
[ -e /etc/proxycheck/proxycheck.toml ] || install -m 0640 -g proxycheck "$here/proxycheck.toml" /etc/proxycheck/proxycheck.toml
[ -e /etc/proxycheck/proxies.csv ] || install -m 0640 -g proxycheck "$here/proxies.csv" /etc/proxycheck/proxies.csv
"$prefix/bin/proxycheck" config check /etc/proxycheck/proxycheck.toml

echo "== 4. proxycheck.service"
install -m 0644 "$here/proxycheck.service" /etc/systemd/system/proxycheck.service
systemctl daemon-reload
systemctl enable --quiet proxycheck
systemctl restart proxycheck
systemctl --no-pager --lines=5 status proxycheck
