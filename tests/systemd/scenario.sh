#!/bin/bash
# The deployment scenario, run as root inside the container by proxycheck-scenario.service once
# systemd has booted (tests/test_systemd_deploy.py puts it there). The network is private (no
# route out): pip reads only the wheel folder docs/deployment.md's offline recipe filled on the host
# (/root/proxycheck/wheels), and only when a command says so, as that page writes it. Every step
# writes /results/<step>.out and .rc; the host reads them after the container has powered off
# and asserts on them.
set -u
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p /results
cd /root/proxycheck   # a copy of the checkout with its wheels/, as an operator has it

step() {  # step NAME COMMAND...: run it, keep its output and exit status
    local name=$1; shift
    echo "### $name: $*"
    "$@" >"/results/$name.out" 2>&1
    echo $? >"/results/$name.rc"
    cat "/results/$name.out"
}
wait_http() {
    for _ in $(seq 60); do
        /opt/proxycheck/bin/python -c 'import socket; socket.create_connection(("127.0.0.1", 8181), 1)' 2>/dev/null && return
        sleep 0.5
    done
}
show() { systemctl show proxycheck -p ActiveState,SubState,Result,ExecMainStatus,ExecMainCode,StatusText,MainPID,NRestarts,Type,User; }

# The install script never installs by name from an index (PyPI's "proxycheck" is not ours).
step refuse_a_name deploy/install.sh 'proxycheck[postgresql]'

# A wheel folder without setuptools (what building the checkout needs): pip fails, and the
# script's last line says what to do.
mkdir -p /root/no-wheels
step offline_without_wheels env PIP_NO_INDEX=1 PIP_FIND_LINKS=/root/no-wheels deploy/install.sh .

# docs/deployment.md's offline install command, verbatim but for `sudo` (we are root; minbase has no sudo).
step install bash /install-commands.sh
step after_start show
step main_pid_user bash -c 'stat -c %U "/proc/$(systemctl show -p MainPID --value proxycheck)"'
step status_text runuser -u proxycheck -- proxycheck status
step status_json_before runuser -u proxycheck -- proxycheck status --json

# Offline, the public default targets leave the checker degraded. Run a judge of our own on
# loopback (the test made its certificate), point [targets] at it and reload (SIGHUP, the same
# main PID): the daemon applies [targets] with a new, self-tested checker, which works under the
# unit's sandbox, reading its CA file as the service user.
systemd-run --quiet --unit=judge /opt/proxycheck/bin/proxycheck judge --listen 127.0.0.1:8080 \
    --tls-listen 127.0.0.1:8443 --cert /judge/cert.pem --key /judge/key.pem
for _ in $(seq 60); do
    /opt/proxycheck/bin/python -c 'import socket; socket.create_connection(("127.0.0.1", 8443), 1)' 2>/dev/null && break
    sleep 0.5
done
install -m 0640 -g proxycheck /judge/ca.pem /etc/proxycheck/judge-ca.pem
# The installed file's own [targets] (the two public judges) gives way to the one the registry
# renders for this judge (config_targets.judge_targets_toml: every probe's target, offline).
sed -i '/^\[targets\]/,/^judge_urls = /d' /etc/proxycheck/proxycheck.toml
echo >>/etc/proxycheck/proxycheck.toml
/opt/proxycheck/bin/python -c 'from proxycheck.config import judge_targets_toml
print(judge_targets_toml("http://127.0.0.1:8080", "https://127.0.0.1:8443", "judge-ca.pem"))' >>/etc/proxycheck/proxycheck.toml
step reload_targets systemctl reload proxycheck
for _ in $(seq 120); do  # the new checker's self-test runs after the reload returns
    runuser -u proxycheck -- proxycheck status --json 2>/dev/null | /opt/proxycheck/bin/python -c \
        'import json, sys; sys.exit(json.load(sys.stdin)["summary"]["checker"]["state"] != "ok")' && break
    sleep 0.5
done
step after_reload_targets show
step status_json_judged runuser -u proxycheck -- proxycheck status --json

# Reload applies a changed setting: one more proxy in the sources CSV.
echo 'socks5,192.0.2.50,1080,,,deploy-test,added before reload' >>/etc/proxycheck/proxies.csv
step reload systemctl reload proxycheck
for _ in $(seq 60); do
    runuser -u proxycheck -- proxycheck status --json >/results/status_json_after.out 2>&1
    grep -q '"last_checked_at": "' /results/status_json_after.out && break  # synced and checked
    sleep 0.5
done
step after_reload show

# The user switches on the HTTP endpoint ([http] needs a restart) and uses it: the token, read
# by a member of the proxycheck group as docs/deployment.md says, /status three times, /metrics and the
# page. The /status helper is then running (at nice 10) when the service reloads and restarts.
useradd --system --no-create-home --groups proxycheck worker
printf '\n[http]\nenabled = true\nlisten = "127.0.0.1:8181"\n' >>/etc/proxycheck/proxycheck.toml
step http_restart systemctl restart proxycheck
wait_http
step token_as_group_member runuser -u worker -- proxycheck token
step token_file stat -c '%U:%G %a' /var/lib/proxycheck/http-token
step http bash -c 'runuser -u worker -- proxycheck token | /opt/proxycheck/bin/python /http_check.py http://127.0.0.1:8181'
step helper_nice ps -u proxycheck -o ni=,args=
step doctor runuser -u worker -- proxycheck doctor
step http_reload systemctl reload proxycheck
step http_after_reload bash -c 'runuser -u worker -- proxycheck token | /opt/proxycheck/bin/python /http_check.py http://127.0.0.1:8181'

# A worker in the proxycheck group uses the SQLite database directly: report() writes to it.
step worker_report runuser -u worker -- env PROXYCHECK_CONFIG=/etc/proxycheck/proxycheck.toml /opt/proxycheck/bin/python -c '
from proxycheck import report
print(report("socks5://192.0.2.50:1080", {"errorId": 1, "errorCode": "ERROR_PROXY_CONNECT_REFUSED"}))'

# Re-running the install upgrades in place: it restarts the service and keeps the edited CSV.
# This time from the built wheel, with the PostgreSQL driver (docs/deployment.md's other forms).
step reinstall env PIP_NO_INDEX=1 PIP_FIND_LINKS=/root/proxycheck/wheels \
    deploy/install.sh "$(ls /root/proxycheck/wheels/proxycheck_fleet-*.whl)[postgresql]"
step postgresql_driver /opt/proxycheck/bin/python -c 'import psycopg; print(psycopg.__name__)'
step after_reinstall show
step status_json_reinstalled runuser -u proxycheck -- proxycheck status --json
wait_http
step http_reinstalled bash -c 'runuser -u worker -- proxycheck token | /opt/proxycheck/bin/python /http_check.py http://127.0.0.1:8181'

step stop systemctl stop proxycheck
step after_stop show
step left_behind bash -c 'ps -u proxycheck -o pid=,args= || true'
step documentation bash -c 'systemctl show -p Documentation --value proxycheck; test -s /usr/share/doc/proxycheck/README.md && test -s /usr/share/doc/proxycheck/docs/deployment.md'
step files stat -c '%U:%G %a %n' /etc/proxycheck /etc/proxycheck/proxycheck.toml /etc/proxycheck/proxies.csv /var/lib/proxycheck /var/lib/proxycheck/proxycheck.db*
step journal journalctl -u proxycheck --no-pager -o short-monotonic
step journal_json journalctl -u proxycheck --no-pager -o json --output-fields=MESSAGE,_UID,_COMM
step service_uid id -u proxycheck
step security systemd-analyze security --no-pager proxycheck.service
touch /results/done
