#!/bin/bash
# MQTT messages lost across 5 kill -9 of the collector (dcim run), twin publishing every 2 s,
# with the twin's in-process broker (amqtt) or Mosquitto.
# Usage: tools/mqtt_crash_loss.sh amqtt|mosquitto PORTBASE (ports PORTBASE+20..+830 free);
# needs the twin extra, and for mosquitto its Debian package. Prints the share lost. ~3 min.
set -u
KIND=$1; B=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d)/$KIND; mkdir -p $W; cd $W
DCIM=$ROOT/.venv/bin/dcim
MQ=$((B+830))
$DCIM twin write-config site.yaml --racks 1 --servers-per-rack 1 --interval 2 --mqtt-port $MQ --snmp-base-port $((B+100)) --modbus-base-port $((B+20)) > /dev/null
if [ $KIND = mosquitto ]; then
  { [ "$(id -u)" = 0 ] && echo "user root"; } > mosq.conf
  printf "allow_anonymous true\npersistence false\nlog_dest file $W/mosq.log\nlistener $MQ 127.0.0.1\nmax_queued_messages 100000\n" >> mosq.conf
  mosquitto -c mosq.conf & MPID=$!
  sleep 1
  $DCIM twin serve site.yaml > twin.log 2>&1 & TPID=$!
else
  $DCIM twin serve site.yaml --embedded-broker > twin.log 2>&1 & TPID=$!
fi
sleep 4
T0=$(date +%s)
for i in 1 2 3 4 5; do
  $DCIM run site.yaml >> run.log 2>&1 & RPID=$!
  sleep 25
  kill -9 $RPID; wait $RPID 2>/dev/null
  sleep 2
done
$DCIM run site.yaml >> run.log 2>&1 & RPID=$!
sleep 25
kill -TERM $RPID; wait $RPID
T1=$(date +%s)
kill -TERM $TPID; wait $TPID 2>/dev/null
[ $KIND = mosquitto ] && kill -TERM $MPID
echo "$KIND T0=$T0 T1=$T1" > result.txt
$ROOT/.venv/bin/python - >> result.txt <<PY
import sqlite3, json
c = sqlite3.connect("var/dcim.sqlite")
rows = c.execute("""select s.tags, count(distinct p.time_ns), min(p.time_ns), max(p.time_ns) from point p
  join series s on s.id = p.series_id where s.measurement = 'greenhouse' group by s.tags""").fetchall()
if not rows:
    print(c.execute("select distinct measurement from series").fetchall())
tot = exp = 0
for tags, n, a, b in rows:
    e = round((b - a) / 2e9) + 1
    tot += n; exp += e
    print(json.loads(tags).get("device"), n, "of", e)
print(f"stored {tot} of {exp} expected: lost {1 - tot / exp:.1%}")
PY
cat result.txt
