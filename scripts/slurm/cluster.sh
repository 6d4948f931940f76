# A real single-node Slurm on this machine (controller and node daemon, munge
# authentication), for make test-slurm and make test-mpi. Sourced; defines nothing but
# `log` if missing. Installs slurm-wlm and munge with apt-get where missing (root or sudo).
# Idempotent: a cluster already up is kept.
SUDO=${SUDO-$([ "$(id -u)" = 0 ] || echo sudo)}
type log >/dev/null 2>&1 || log() { echo "[slurm] $*"; }

for p in slurm-wlm munge; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    log "installing $p"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
    break
  fi
done

# munge: a key and the daemon
if [ ! -s /etc/munge/munge.key ]; then
  $SUDO mkdir -p /etc/munge
  $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
$SUDO chown munge:munge /etc/munge/munge.key; $SUDO chmod 400 /etc/munge/munge.key
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -x munged >/dev/null; then
  if [ -z "$SUDO" ]; then runuser -u munge -- /usr/sbin/munged; else sudo -u munge /usr/sbin/munged; fi
fi
munge -n | unmunge >/dev/null && log "munge works"

# slurm: one node, this machine, no cgroups
NODE=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
$SUDO tee /etc/slurm/slurm.conf >/dev/null <<CONF
ClusterName=bmlab
SlurmctldHost=${NODE}(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || $SUDO slurmctld
pgrep -x slurmd >/dev/null || $SUDO slurmd
for i in $(seq 1 60); do
  state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
  [ "$state" = "idle" ] || [ "$state" = "mix" ] && break
  [ "$state" = "down" ] || [ "$state" = "drain" ] && $SUDO scontrol update nodename="$NODE" state=resume || true
  sleep 1
done
sinfo
[ "$(sinfo -h -o %t | head -1)" = "idle" ] || { log "node not idle"; tail -20 /var/log/slurm/slurmd.log /var/log/slurm/slurmctld.log; exit 1; }

