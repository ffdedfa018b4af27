#!/usr/bin/env bash
# A one-node Slurm with accounting on this Debian machine, for the tests of the Slurm path.
#
#   .ci/slurm.sh start   install what is missing (apt-get, as root), start munged, MariaDB,
#                        slurmdbd, slurmctld and slurmd on 127.0.0.1, wait until the node is idle
#   .ci/slurm.sh stop    stop every daemon `start` started, by the pid it recorded
#   .ci/slurm.sh status  exit 0 when the node answers and is idle
#
# Works without systemd or cgroups: process tracking by /proc, no task plugin. The pids are kept
# in $BENCH_SLURM_STATE (default /tmp/bench-slurm); `stop` kills exactly those.
set -euo pipefail

STATE=${BENCH_SLURM_STATE:-/tmp/bench-slurm}
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
DB_PASSWORD=bench-slurm

log() { echo "slurm.sh: $*" >&2; }

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        log "needs root (it installs packages and starts daemons)"
        exit 2
    fi
}

install() {
    local missing=()
    for cmd in slurmctld slurmd slurmdbd munged mariadbd sinfo sacct; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    if ! command -v apt-get >/dev/null; then
        log "missing ${missing[*]} and no apt-get to install them"
        exit 2
    fi
    log "installing ${PACKAGES[*]}"
    apt-get update -qq
    # no init system starts the packages' services: this script starts each daemon itself
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 4))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    log "timed out after ${seconds}s waiting for $what"
    return 1
}

record() { echo "$2" >"$STATE/$1.pid"; }

pid_of_file() { [[ -s $1 ]] && cat "$1"; }

configure() {
    local host node memory
    host=$(hostname -s)
    # the node as slurmd sees it (sockets, cores, threads), with ~90% of its memory
    node=$(slurmd -C | head -1)
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    node=$(sed "s/RealMemory=[0-9]*/RealMemory=$((memory * 9 / 10))/" <<<"$node")
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    cat >/etc/slurm/slurm.conf <<EOF
ClusterName=bench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pidfile
SlurmdPidFile=$STATE/slurmd.pidfile
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pidfile
LogFile=/var/log/slurm/slurmdbd.log
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

start_munge() {
    mkdir -p /run/munge
    chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    wait_for 10 munged pid_of_file /run/munge/munged.pid
    record munged "$(cat /run/munge/munged.pid)"
}

start_mariadb() {
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    runuser -u mysql -- /usr/sbin/mariadbd --datadir=/var/lib/mysql \
        --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
        --bind-address=127.0.0.1 >"$STATE/mariadb.log" 2>&1 &
    record mariadbd $!
    wait_for 30 MariaDB mariadb -e 'select 1'
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_slurm() {
    /usr/sbin/slurmdbd
    wait_for 20 slurmdbd pid_of_file "$STATE/slurmdbd.pidfile"
    record slurmdbd "$(cat "$STATE/slurmdbd.pidfile")"
    wait_for 30 "slurmdbd to answer" sacctmgr -n list cluster
    sacctmgr -i add cluster bench >/dev/null 2>&1 || true
    /usr/sbin/slurmctld
    wait_for 20 slurmctld pid_of_file "$STATE/slurmctld.pidfile"
    record slurmctld "$(cat "$STATE/slurmctld.pidfile")"
    /usr/sbin/slurmd
    wait_for 20 slurmd pid_of_file "$STATE/slurmd.pidfile"
    record slurmd "$(cat "$STATE/slurmd.pidfile")"
    wait_for 60 "the node to be idle" idle
}

idle() { [[ $(sinfo -h -o '%t' 2>/dev/null | head -1) == idle ]]; }

start() {
    need_root
    if idle; then
        log "a cluster already answers and is idle; nothing started"
        return
    fi
    local began=$SECONDS
    mkdir -p "$STATE"
    install
    configure
    start_munge
    start_mariadb
    start_slurm
    log "one-node cluster idle in $((SECONDS - began)) s (pids in $STATE)"
}

stop() {
    [[ -d $STATE ]] || return 0
    # the scheduler first, the database last: each stops cleanly on SIGTERM
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        local file="$STATE/$name.pid"
        [[ -s $file ]] || continue
        local pid
        pid=$(cat "$file")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        fi
        rm -f "$file"
    done
    log "stopped"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) idle ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
