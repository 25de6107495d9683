#!/usr/bin/env bash
# One-node SLURM cluster for integration tests (Debian 12, SLURM 22.05, as root,
# no systemd). Everything the daemons write lives under the DIR you pass.
#
#   tests/slurm/cluster.sh install       # apt-get the packages if slurmctld is missing
#   tests/slurm/cluster.sh start DIR     # config + munged + slurmctld + slurmd, wait for idle
#   tests/slurm/cluster.sh stop DIR      # kill exactly the daemons started for DIR (idempotent)
#
# `start` prints `export SLURM_CONF=DIR/slurm.conf` on stdout (progress goes to
# stderr), so `eval "$(tests/slurm/cluster.sh start /tmp/slurm)"` works.
#
# `start` also symlinks /etc/slurm/slurm.conf -> DIR/slurm.conf when that path is
# free (and `stop` removes the link again): snakemake-executor-plugin-slurm-jobstep
# 0.6.1 drops every SLURM_* variable, SLURM_CONF included, before the `srun` it
# runs inside each job, so that srun only finds the config at the default path.
# Set SLURM_TEST_LINK_ETC=0 to skip this (Snakemake jobs then fail in srun).
#
# Tunables (environment): SLURM_TEST_CTLD_PORT (16817), SLURM_TEST_SLURMD_PORT
# (16818), SLURM_TEST_START_TIMEOUT seconds (60), SLURM_TEST_PARTITION (debug),
# SLURM_TEST_LINK_ETC (1).
set -euo pipefail

PROG=$(basename "$0")
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-16817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-16818}
START_TIMEOUT=${SLURM_TEST_START_TIMEOUT:-60}
PARTITION=${SLURM_TEST_PARTITION:-debug}
LINK_ETC=${SLURM_TEST_LINK_ETC:-1}
ETC_CONF=/etc/slurm/slurm.conf
NODE=localhost
N_GPUS=2

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

usage() {
    echo "usage: $PROG install | start DIR | stop DIR | status DIR" >&2
    exit 2
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (SlurmUser=root, munged, mknod)"; }

# ---------------------------------------------------------------- install
cmd_install() {
    if command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 \
        && command -v sbatch >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
        log "slurm already installed: $(slurmctld -V 2>/dev/null || echo unknown version)"
        return 0
    fi
    need_root
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install slurmctld slurmd slurm-client munge by hand"

    # Keep package scripts from starting daemons with the default configs.
    # A pre-existing policy-rc.d (e.g. Docker's) is put back afterwards.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [[ -e $policy ]]; then
        backup=$(mktemp /usr/sbin/policy-rc.d.oncobench.XXXXXX)
        cp -p "$policy" "$backup"
    fi
    # shellcheck disable=SC2064  # expand now: restore exactly this state
    trap "if [[ -n '$backup' ]]; then mv -f '$backup' '$policy'; else rm -f '$policy'; fi" EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"

    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >&2; then
        log "install failed, refreshing package lists and retrying"
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >&2 \
            || die "apt-get install slurmctld slurmd slurm-client munge failed"
    fi
    command -v slurmctld >/dev/null 2>&1 || die "slurmctld still not on PATH after install"
    log "installed $(slurmctld -V)"
}

# ---------------------------------------------------------------- helpers
abs_dir() {  # make DIR absolute (creating it for start)
    local d=$1
    [[ -n $d ]] || usage
    if [[ ${2:-} == create ]]; then mkdir -p "$d"; fi
    [[ -d $d ]] || return 1
    (cd "$d" && pwd -P)
}

pid_alive() {  # pid_alive PIDFILE COMM -> prints pid if that process runs and is COMM
    local pidfile=$1 comm=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    echo "$pid"
}

wait_pidfile() {  # wait_pidfile PIDFILE COMM LOGFILE WHAT
    local pidfile=$1 comm=$2 logfile=$3 what=$4 i
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pidfile" "$comm" >/dev/null && return 0
        sleep 0.1
    done
    die "$what did not start (no live pid in $pidfile); last log lines: $(tail -n 3 "$logfile" 2>/dev/null | tr '\n' ' ')"
}

last_lines() {  # last_lines DIR NAME -> last log lines of a daemon, on one line
    cat "$1/log/$2.out" "$1/log/$2.log" 2>/dev/null | grep -v '^$' | tail -n 3 | tr '\n' ' '
}

kill_pidfile() {  # kill_pidfile PIDFILE COMM
    local pidfile=$1 comm=$2 pid i
    if pid=$(pid_alive "$pidfile" "$comm"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            log "$comm ($pid) ignored SIGTERM for 10 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        log "stopped $comm ($pid)"
    fi
    rm -f "$pidfile"
}

# The default config path, for clients that run without SLURM_CONF (see top).
link_etc_conf() {
    local dir=$1 target
    [[ $LINK_ETC == 1 ]] || { log "SLURM_TEST_LINK_ETC=$LINK_ETC: not linking $ETC_CONF"; return 0; }
    if [[ -L $ETC_CONF ]]; then
        target=$(readlink "$ETC_CONF")
        if [[ $target != "$dir/slurm.conf" ]] \
            && pid_alive "$(dirname "$target")/run/slurmctld.pid" slurmctld >/dev/null; then
            die "$ETC_CONF links to another running test cluster ($target); stop it first"
        fi
        rm -f "$ETC_CONF"  # stale link from an earlier test cluster
    elif [[ -e $ETC_CONF ]]; then
        log "warning: $ETC_CONF exists and is not ours; srun inside Snakemake jobs will use it, not $dir/slurm.conf"
        return 0
    fi
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$dir/slurm.conf" "$ETC_CONF"
}

unlink_etc_conf() {
    local dir=$1
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$dir/slurm.conf" ]]; then
        rm -f "$ETC_CONF"
    fi
}

# ---------------------------------------------------------------- start
write_config() {
    local dir=$1 cpus mem_kb real_mem i
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    real_mem=$((mem_kb * 8 / 10 / 1024))

    mkdir -p "$dir"/{state,spool,log,run,munge,dev}
    chmod 0700 "$dir/munge"
    for ((i = 0; i < N_GPUS; i++)); do
        if [[ ! -c $dir/dev/fakegpu$i ]]; then
            rm -f "$dir/dev/fakegpu$i"
            # a copy of /dev/null; gres.conf needs File= or the node drains
            mknod -m 0666 "$dir/dev/fakegpu$i" c 1 3 || die "mknod $dir/dev/fakegpu$i failed (need CAP_MKNOD)"
        fi
    done

    cat >"$dir/slurm.conf" <<EOF
# Generated by tests/slurm/cluster.sh -- one-node test cluster, do not edit.
ClusterName=oncobench-test
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: plain /proc process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# keep finished jobs visible to squeue (the executor's status command) and to the test's
# `scontrol show job` for a day: the tiny workflow takes longer than 5 min on a slow CI machine
# and its first jobs (draw_cohort) were purged before the test looked (CI of 19aaead)
MinJobAge=86400
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MailProg=/bin/true
Waittime=0
# (no AccountingStorageTRES=gres/gpu: slurmctld then refuses to run without slurmdbd)
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem Gres=gpu:$N_GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

    {
        echo "# Generated by tests/slurm/cluster.sh -- fake GPUs (copies of /dev/null)."
        echo "AutoDetect=off"
        echo "NodeName=$NODE Name=gpu File=$dir/dev/fakegpu[0-$((N_GPUS - 1))]"
    } >"$dir/gres.conf"
    # No cgroup.conf on purpose: SLURM 22.05 has no CgroupPlugin=disabled, and
    # with proctrack/linuxproc + task/none slurmd autodetects and never uses it.
    rm -f "$dir/cgroup.conf"
}

cmd_start() {
    need_root
    command -v slurmctld >/dev/null 2>&1 || die "slurmctld not on PATH; run '$PROG install' first"
    local dir
    dir=$(abs_dir "${1:-}" create) || die "cannot create directory '${1:-}'"
    # unix socket paths are limited to 108 bytes
    ((${#dir} <= 80)) || die "DIR path too long for the munge socket (${#dir} > 80 chars): $dir"

    if pid_alive "$dir/run/slurmctld.pid" slurmctld >/dev/null \
        || pid_alive "$dir/run/slurmd.pid" slurmd >/dev/null \
        || pid_alive "$dir/run/munged.pid" munged >/dev/null; then
        die "a cluster is already running under $dir; run '$PROG stop $dir' first"
    fi
    local port
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1024 || port > 65535)); then
            die "invalid port '$port' (want 1024-65535)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port on 127.0.0.1 is already in use (set SLURM_TEST_CTLD_PORT/SLURM_TEST_SLURMD_PORT)"
        fi
    done

    # from here on, a failed start stops whatever it had started (logs stay)
    STARTING_DIR=$dir
    trap 'rc=$?; if ((rc != 0)); then log "start failed, stopping what was started"; cmd_stop "$STARTING_DIR" >/dev/null 2>&1 || true; fi' EXIT
    write_config "$dir"
    export SLURM_CONF=$dir/slurm.conf
    link_etc_conf "$dir"

    # munge: private key, socket, pid and log under DIR
    if [[ ! -s $dir/munge/munge.key ]]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$dir/munge/munge.key" --force >/dev/null
        else
            dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
        fi
    fi
    chmod 0400 "$dir/munge/munge.key"
    rm -f "$dir/munge/munge.socket" "$dir/munge/munge.socket.lock"
    munged --force \
        --key-file="$dir/munge/munge.key" \
        --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/run/munged.pid" \
        --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed" \
        </dev/null >>"$dir/log/munged.out" 2>&1 \
        || die "munged failed to start: $(last_lines "$dir" munged)"
    wait_pidfile "$dir/run/munged.pid" munged "$dir/log/munged.log" munged
    log "munged running (pid $(cat "$dir/run/munged.pid"))"

    # -i: ignore stale state files from an earlier run in the same DIR
    slurmctld -i -f "$dir/slurm.conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 \
        || die "slurmctld failed to start: $(last_lines "$dir" slurmctld)"
    wait_pidfile "$dir/run/slurmctld.pid" slurmctld "$dir/log/slurmctld.log" slurmctld
    log "slurmctld running (pid $(cat "$dir/run/slurmctld.pid"))"

    slurmd -N "$NODE" -f "$dir/slurm.conf" </dev/null >>"$dir/log/slurmd.out" 2>&1 \
        || die "slurmd failed to start: $(last_lines "$dir" slurmd)"
    wait_pidfile "$dir/run/slurmd.pid" slurmd "$dir/log/slurmd.log" slurmd
    log "slurmd running (pid $(cat "$dir/run/slurmd.pid"))"

    local deadline=$((SECONDS + START_TIMEOUT)) state="" d
    while :; do
        state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1 || true)
        [[ $state == idle ]] && break
        for d in munged slurmctld slurmd; do
            pid_alive "$dir/run/$d.pid" "$d" >/dev/null \
                || die "$d exited during startup: $(grep -hE 'fatal|error' "$dir/log/$d.log" 2>/dev/null | tail -n 1)"
        done
        if ((SECONDS >= deadline)); then
            die "node $NODE not idle after ${START_TIMEOUT}s (state '${state:-unreachable}'); see $dir/log/slurmctld.log and $dir/log/slurmd.log"
        fi
        sleep 0.25
    done
    trap - EXIT
    log "cluster up: partition $PARTITION, node $NODE idle, $(nproc) CPUs, gpu:$N_GPUS (fake)"
    echo "export SLURM_CONF=$dir/slurm.conf"
}

# ---------------------------------------------------------------- stop
cmd_stop() {
    local dir
    if ! dir=$(abs_dir "${1:-}"); then
        log "nothing to stop: '${1:-}' is not a directory"
        return 0
    fi
    # Cancel leftover jobs while the controller still answers, so their
    # slurmstepd processes do not outlive slurmd.
    if pid_alive "$dir/run/slurmctld.pid" slurmctld >/dev/null && [[ -f $dir/slurm.conf ]]; then
        local i
        SLURM_CONF=$dir/slurm.conf timeout 10 scancel --full --quiet --user=root 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -z $(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -t R,CG,PD -o %i 2>/dev/null || true) ]] && break
            sleep 0.2
        done
    fi
    kill_pidfile "$dir/run/slurmd.pid" slurmd
    kill_pidfile "$dir/run/slurmctld.pid" slurmctld
    kill_pidfile "$dir/run/munged.pid" munged
    rm -f "$dir/munge/munge.socket" "$dir/munge/munge.socket.lock"
    unlink_etc_conf "$dir"
    log "cluster under $dir stopped"
}

cmd_status() {
    local dir rc=0 d pid
    dir=$(abs_dir "${1:-}") || die "'${1:-}' is not a directory"
    for d in munged slurmctld slurmd; do
        if pid=$(pid_alive "$dir/run/$d.pid" "$d"); then
            echo "$d running (pid $pid)"
        else
            echo "$d not running"; rc=1
        fi
    done
    return $rc
}

case ${1:-} in
    install) cmd_install ;;
    start) [[ $# -eq 2 ]] || usage; cmd_start "$2" ;;
    stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
    status) [[ $# -eq 2 ]] || usage; cmd_status "$2" ;;
    *) usage ;;
esac
