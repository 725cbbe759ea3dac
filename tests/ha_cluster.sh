#!/usr/bin/env bash
# Tier 4: high availability with Patroni and etcd (Debian's patroni, etcd-server, etcd-client),
# three nodes on loopback, the root key delivered to every node by vault.getkey_script.
# With synchronous_mode on and writers creating and updating secrets: kill -9 of the leader
# (Patroni and postmaster), then every acknowledged write is on the new leader with its value
# and every secret decrypts there and on a replica; a switchover back with patronictl; a
# rotate_key() cut off by a failover leaves every secret on the old or the new key, all
# decrypting. Every wait is bounded; everything started here is stopped on exit.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
T_START=$(date +%s)
for b in patroni patronictl etcd; do
  command -v "$b" >/dev/null || { echo "$b not found (apt-get install patroni etcd-server etcd-client)"; exit 1; }
done

echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version); $(patroni --version); $(etcd --version | head -1)"
P=$PORT_NEXT
ETCD_PORT=$P ETCD_PEER=$((P + 1))
PG_PORTS=(0 $((P + 2)) $((P + 3)) $((P + 4)))
REST_PORTS=(0 $((P + 5)) $((P + 6)) $((P + 7)))
PATRONI_PIDS=(0 0 0 0)
ETCD_PID=

ha_cleanup() {
  local i
  for i in 1 2 3; do [ "${PATRONI_PIDS[$i]}" != 0 ] && kill -9 "${PATRONI_PIDS[$i]}" 2>/dev/null; done
  [ -n "${WRITERS:-}" ] && kill $WRITERS 2>/dev/null
  cluster_cleanup_keep=${KEEP_WORK:-}
  KEEP_WORK=1 cluster_cleanup # immediate stop of every postmaster still up
  [ -n "$ETCD_PID" ] && kill -9 "$ETCD_PID" 2>/dev/null
  wait 2>/dev/null
  [ -n "$cluster_cleanup_keep" ] || rm -rf "$WORK"
  echo "# ha_cluster.sh took $(($(date +%s) - T_START)) s"
}
trap ha_cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE # a killed run still stops what it started (EXIT trap)

# wait_until SECONDS 'command': poll every half second; 0 when the command succeeded in time.
wait_until() {
  local deadline=$(($(date +%s) + $1))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    eval "$2" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# --- etcd and the root key -----------------------------------------------------------------
mkdir -p "$WORK/etcd" && chown postgres: "$WORK/etcd" && chmod 700 "$WORK/etcd"
setpriv --reuid postgres --regid postgres --init-groups etcd --name e1 --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "e1=http://127.0.0.1:$ETCD_PEER" >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
wait_until 30 "ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$ETCD_PORT endpoint health" \
  || { echo "etcd did not start"; tail -20 "$WORK/etcd.log"; exit 1; }

# The root key lives outside every data directory; each node's getkey script prints it (in
# production: a KMS call). Same key on every node, so any node decrypts what another wrote.
write_key "$WORK/root.key" "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
cat >"$WORK/getkey.sh" <<EOF
#!/bin/sh
exec cat '$WORK/root.key'
EOF
chown postgres: "$WORK/getkey.sh" && chmod 700 "$WORK/getkey.sh"

# --- three Patroni nodes ---------------------------------------------------------------------
node_conf() { # N
  cat <<EOF
scope: vaultha
name: node$1
restapi:
  listen: 127.0.0.1:${REST_PORTS[$1]}
  connect_address: 127.0.0.1:${REST_PORTS[$1]}
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_node_count: 2
    postgresql:
      use_pg_rewind: true
      parameters:
        shared_preload_libraries: vault_ext
        vault.getkey_script: $WORK/getkey.sh
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${PG_PORTS[$1]}
  connect_address: 127.0.0.1:${PG_PORTS[$1]}
  data_dir: $WORK/node$1
  bin_dir: $PG_BINDIR
  pgpass: $WORK/pgpass$1
  authentication:
    superuser: {username: postgres, password: ha-test}
    replication: {username: replicator, password: ha-test}
  parameters:
    unix_socket_directories: $WORK
    fsync: 'off'
    logging_collector: 'on'
    log_directory: log
EOF
}
start_node() { # N
  HOME=$WORK setpriv --reuid postgres --regid postgres --init-groups patroni "$WORK/node$1.yml" >>"$WORK/patroni$1.log" 2>&1 &
  PATRONI_PIDS[$1]=$!
  disown "$!" # killed on purpose: no "Killed" notice
}
for n in 1 2 3; do
  node_conf $n >"$WORK/node$n.yml"
  chown postgres: "$WORK/node$n.yml"
  STARTED+=("$WORK/node$n")
done
start_node 1

# members: "name role state" per line, from the first REST API that answers.
members() {
  python3 - "${REST_PORTS[@]:1}" <<'EOF'
import json, sys, urllib.request
for port in sys.argv[1:]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cluster", timeout=2) as r:
            for m in json.load(r)["members"]:
                print(m["name"], m["role"], m["state"])
            break
    except Exception:
        continue
EOF
}
leader() { members | awk '$2 == "leader" && $3 == "running" { print $1 }'; }
nport() { echo "${PG_PORTS[${1#node}]}"; } # nodeN -> its PostgreSQL port
q() { # NODE 'sql': on one node, as superuser
  "$PG_BINDIR/psql" -h 127.0.0.1 -p "$(nport "$1")" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 \
    -c "$2" 2>&1
}
# wait_leader_other_than NODE: wait (bounded) until another node leads and takes writes, and
# still does a few seconds later (Patroni may restart a freshly promoted server once).
writable() { [ "$(q "$1" "SELECT NOT pg_is_in_recovery()")" = t ]; }
wait_leader_other_than() {
  local _
  for _ in 1 2; do
    wait_until 60 '[ -n "$(leader)" ] && [ "$(leader)" != "$1" ] && writable "$(leader)"' || return 1
    sleep 3
  done
}
ANY_PRIMARY="host=127.0.0.1,127.0.0.1,127.0.0.1 port=${PG_PORTS[1]},${PG_PORTS[2]},${PG_PORTS[3]} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"

wait_until 60 '[ "$(leader)" = node1 ]' || { echo "node1 did not become leader"; tail -30 "$WORK/patroni1.log"; exit 1; }
check "node1 bootstrapped as leader" "node1" "$(leader)"
q node1 "CREATE EXTENSION vault_ext" >/dev/null
start_node 2
start_node 3
ALL_STREAMING='[ "$(members | grep -cE "(sync_standby|replica) (running|streaming)")" = 2 ]'
wait_until 90 "$ALL_STREAMING" || { echo "replicas did not start"; members; tail -30 "$WORK/patroni2.log"; exit 1; }
check "two replicas run beside the leader" "2" "$(members | grep -cE '(sync_standby|replica) (running|streaming)')"
wait_until 30 '[ "$(members | grep -c sync_standby)" -ge 1 ]'
check "synchronous replication is on (sync standbys listed)" "yes" "$([ "$(members | grep -c sync_standby)" -ge 1 ] && echo yes)"
FP=$(q node1 "SELECT vault.root_key_fingerprint()")
check "the leader has a root key fingerprint" "yes" "$([[ "$FP" =~ ^[0-9a-f]{8,}$ ]] && echo yes)"
check "every node loaded the same root key through the getkey script" "$FP $FP $FP" \
  "$(for n in node1 node2 node3; do wait_until 20 "q $n 'SELECT vault.root_key_fingerprint()' | grep -q '^[0-9a-f]'"; printf '%s ' "$(q $n 'SELECT vault.root_key_fingerprint()')"; done | sed 's/ $//')"

DIGEST="SELECT count(*) || ':' || md5(coalesce(string_agg(name || '=' || decrypted_secret, ',' ORDER BY name), '')) FROM vault.decrypted_secrets"
VERIFIED="SELECT count(*) FILTER (WHERE status = 'ok') || ' ok, ' || count(*) FILTER (WHERE status <> 'ok') || ' bad' FROM vault.verify_secrets()"
VERIFIED_EXPECT="SELECT (SELECT count(*) FROM vault.secrets) + (SELECT count(*) FROM vault.secret_versions) || ' ok, 0 bad'"
q node1 "SELECT vault.create_secret('base-' || g, 'base' || g) FROM generate_series(1, 200) g" >/dev/null
# valid_digest DIGEST MIN: "yes" when DIGEST is "<count>:<md5>" with count >= MIN (not an error).
valid_digest() { [[ "$1" =~ ^([0-9]+):[0-9a-f]{32}$ ]] && [ "${BASH_REMATCH[1]}" -ge "$2" ] && echo yes; }

# --- kill -9 of the leader under writers -----------------------------------------------------
# Each writer logs "sent" before and "acked" after a statement that returned success; it keeps
# going (reconnecting to whichever node is read-write) until the stop file appears.
writer() { # CLIENT
  local c=$1 i=0 name value
  while [ ! -f "$WORK/stop_writers" ]; do
    i=$((i + 1)); name="ha_${c}_$(((i + 1) / 2))"; value="hamarker-$c-$i-$RANDOM"
    echo "sent $name $value" >>"$WORK/ops_$c"
    if [ $((i % 2)) -eq 1 ]; then
      stmt="SELECT vault.create_secret('$value', '$name')"
    else
      stmt="SELECT vault.update_secret(id, '$value') FROM vault.secrets WHERE name = '$name'"
    fi
    if out=$(timeout 10 "$PG_BINDIR/psql" "$ANY_PRIMARY" -XAtq -v ON_ERROR_STOP=1 -c "$stmt" 2>&1); then
      # update_secret on a name whose create was lost returns no row: not an acknowledged write.
      [ -n "$out" ] && echo "acked $name $value" >>"$WORK/ops_$c"
    else
      sleep 0.3
    fi
  done
}
writer 1 & W1=$!
writer 2 & W2=$!
WRITERS="$W1 $W2"
sleep 5
OLD=$(leader)
ACKED_BEFORE=$(cat "$WORK"/ops_* | grep -c '^acked')
T_KILL=$(date +%s)
kill -9 "${PATRONI_PIDS[${OLD#node}]}" "$(head -1 "$WORK/$OLD/postmaster.pid")"
PATRONI_PIDS[${OLD#node}]=0
wait_leader_other_than "$OLD"
NEW=$(leader)
echo "# $OLD killed after $ACKED_BEFORE acknowledged writes; $NEW leader after $(($(date +%s) - T_KILL)) s"
check "a replica was promoted within 60 s" "yes" "$([ -n "$NEW" ] && [ "$NEW" != "$OLD" ] && echo yes)"
# Writers go on against the new leader for a few seconds, then stop.
ACKED_AT_FAILOVER=$(cat "$WORK"/ops_* | grep -c '^acked')
wait_until 30 '[ "$(cat "$WORK"/ops_* | grep -c "^acked")" -ge $((ACKED_AT_FAILOVER + 10)) ]'
touch "$WORK/stop_writers"
wait "$W1" "$W2"
WRITERS=
ACKED=$(cat "$WORK"/ops_* | grep -c '^acked')
echo "# writers acknowledged $ACKED writes in all"
check "writers worked before the kill and on the new leader after it" "yes" \
  "$([ "$ACKED_BEFORE" -ge 10 ] && [ "$ACKED" -ge $((ACKED_AT_FAILOVER + 10)) ] && echo yes)"

q "$NEW" "SELECT name || ' ' || decrypted_secret FROM vault.decrypted_secrets WHERE name LIKE 'ha_%'" >"$WORK/final"
verdict=$(python3 - "$WORK" <<'EOF'
import glob, sys
work = sys.argv[1]
final = dict(l.split(" ", 1) for l in open(f"{work}/final").read().splitlines())
bad = []
for f in glob.glob(f"{work}/ops_*"):
    last_acked, pending = {}, {}
    for line in open(f).read().splitlines():
        kind, name, value = line.split(" ", 2)
        if kind == "acked":
            last_acked[name] = value
            pending.pop(name, None)
        else:
            pending[name] = value
    for name, value in last_acked.items():
        # The value is the last acknowledged one, or a later write whose ack was lost.
        if final.get(name) not in (value, pending.get(name)):
            bad.append(name)
print(f"{len(bad)} bad: {sorted(bad)[:5]}" if bad else "all acked writes present")
EOF
)
check "every acknowledged write is on the new leader with its value" "all acked writes present" "$verdict"
check "every secret and kept version decrypts on the new leader" "$(q "$NEW" "$VERIFIED_EXPECT")" "$(q "$NEW" "$VERIFIED")"
REPLICA=$(members | awk -v o="$OLD" '$1 != o && $2 != "leader" { print $1; exit }')
LEADER_DIGEST=$(q "$NEW" "$DIGEST")
check "the new leader decrypts the 200 first secrets and the writers' ones" "yes" "$(valid_digest "$LEADER_DIGEST" 210)"
wait_until 60 '[ "$(q "$REPLICA" "$DIGEST")" = "$LEADER_DIGEST" ]'
check "the replica $REPLICA follows the new leader and decrypts every secret" "$LEADER_DIGEST" "$(q "$REPLICA" "$DIGEST")"
check "the replica is read-only" "t" "$(q "$REPLICA" "SELECT pg_is_in_recovery()")"

# --- the old leader rejoins; switchover back to it ------------------------------------------
start_node "${OLD#node}"
wait_until 120 "members | grep -qE '^$OLD (sync_standby|replica) (running|streaming)'"
check "the killed node rejoins as a replica" "yes" "$(members | grep -qE "^$OLD (sync_standby|replica) (running|streaming)" && echo yes)"
wait_until 60 "members | grep -q '^$OLD sync_standby'"
T_SW=$(date +%s)
SW=$(timeout 60 runuser -u postgres -- patronictl -c "$WORK/node1.yml" switchover --leader "$NEW" --candidate "$OLD" --force 2>&1)
wait_until 60 '[ "$(leader)" = "$OLD" ]'
echo "# switchover to $OLD took $(($(date +%s) - T_SW)) s"
check "patronictl switchover makes $OLD the leader again" "$OLD" "$(leader)" 
[ "$(leader)" = "$OLD" ] || printf '%s\n' "$SW" | sed 's/^/    /'
check "every secret decrypts on the leader after the switchover" "$LEADER_DIGEST" "$(q "$OLD" "$DIGEST")"
check "writes work after the switchover" "1" \
  "$(timeout 20 "$PG_BINDIR/psql" "$ANY_PRIMARY" -XAtq -c "SELECT vault.create_secret('after-switchover', 'after_switchover') IS NOT NULL" >/dev/null && q "$OLD" "SELECT count(*) FROM vault.decrypted_secrets WHERE decrypted_secret = 'after-switchover'")"
# With synchronous_mode only a healthy sync standby may be promoted: the demoted node must be
# streaming again (it restarts as a replica, which takes a while on a busy machine) before the
# next kill, or no failover happens.
wait_until 120 "[ \"\$(members | grep -cE '(sync_standby|replica) (running|streaming)')\" = 2 ] && members | grep -qE 'sync_standby (running|streaming)'"
check "both replicas stream again, one of them the sync standby" "yes" \
  "$([ "$(members | grep -cE '(sync_standby|replica) (running|streaming)')" = 2 ] && members | grep -qE 'sync_standby (running|streaming)' && echo yes)"

# --- rotate_key() cut off by a failover --------------------------------------------------------
L=$(leader)
q "$L" "SELECT vault.create_secret('rot-' || g, 'rot' || g) FROM generate_series(1, 2000) g" >/dev/null
# The key every rotated secret is on (NULL key_id: the compatibility key).
KEYS_OF="SELECT string_agg(DISTINCT coalesce(key_id::text, 'compatibility'), ',') FROM vault.secrets WHERE name LIKE 'rot%'"
OLD_KEY=$(q "$L" "$KEYS_OF")
BEFORE=$(q "$L" "$DIGEST")
check "2000 more secrets before the rotation" "yes" "$(valid_digest "$BEFORE" 2210)"
# A transaction holding one row lock (the last row in the table) keeps the rotation from
# finishing, so the kill lands while it runs.
timeout 60 "$PG_BINDIR/psql" -h 127.0.0.1 -p "$(nport "$L")" -U postgres -XAtq \
  -c "BEGIN" -c "SELECT 1 FROM vault.secrets WHERE name = 'rot2000' FOR UPDATE" -c "SELECT pg_sleep(50)" >/dev/null 2>&1 &
HOLDER=$!
timeout 60 "$PG_BINDIR/psql" -h 127.0.0.1 -p "$(nport "$L")" -U postgres -XAtq -c "SELECT vault.rotate_key()" >"$WORK/rotate.out" 2>&1 &
ROTATOR=$!
wait_until 20 "[ \"\$(q $L \"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rotate_key()%' AND wait_event_type = 'Lock'\")\" = 1 ]"
check "rotate_key() is running (waiting on the held row) when the leader dies" "1" \
  "$(q "$L" "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rotate_key()%' AND wait_event_type = 'Lock'")"
kill -9 "${PATRONI_PIDS[${L#node}]}" "$(head -1 "$WORK/$L/postmaster.pid")"
PATRONI_PIDS[${L#node}]=0
wait "$HOLDER" "$ROTATOR" 2>/dev/null
wait_leader_other_than "$L"
L2=$(leader)
check "a replica took over after the kill during rotate_key()" "yes" "$([ -n "$L2" ] && [ "$L2" != "$L" ] && echo yes)"
KEYS_USED=$(q "$L2" "$KEYS_OF")
NEW_DEFAULT=$(q "$L2" "SELECT id FROM vault.keys WHERE status = 'default'")
check "every rotated secret is on one key, the old one ($OLD_KEY) or the new default" "yes" \
  "$( [[ "$KEYS_USED" =~ ^([0-9a-f-]{36}|compatibility)$ ]] && { [ "$KEYS_USED" = "$OLD_KEY" ] || [ "$KEYS_USED" = "$NEW_DEFAULT" ]; } && echo yes)"
[ "$KEYS_USED" = "$OLD_KEY" ] && echo "# the secrets stayed on the old key" || echo "# the secrets are on the key $KEYS_USED (old: $OLD_KEY)"
check "every secret decrypts on the new leader after the cut-off rotation" "$BEFORE" "$(q "$L2" "$DIGEST")"
check "verify_secrets: all ok on the new leader" "$(q "$L2" "$VERIFIED_EXPECT")" "$(q "$L2" "$VERIFIED")"
R2=$(members | awk -v o="$L" '$1 != o && $2 != "leader" { print $1; exit }')
wait_until 60 '[ "$(q "$R2" "$DIGEST")" = "$BEFORE" ]'
check "every secret decrypts on the replica $R2 too" "$BEFORE" "$(q "$R2" "$DIGEST")"
check "rotate_key() works on the new leader afterwards" "t" "$(q "$L2" "SELECT vault.rotate_key() IS NOT NULL")"
check "... and everything still decrypts" "$BEFORE" "$(q "$L2" "$DIGEST")"

LOGS=$(cat "$WORK"/node*/log/* 2>/dev/null)
check "the nodes' server logs were written" "yes" "$([ -n "$LOGS" ] && echo yes)"
check_absent "no secret value in any server log" "hamarker" "$LOGS$(cat "$WORK"/patroni*.log)"
summary "ha tests"
