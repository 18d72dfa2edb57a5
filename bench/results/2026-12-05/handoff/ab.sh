#!/bin/sh
# A/B of one build: store first (--handoff-wait-ms 0) against hand-off (default 500 ms), alternating.
cd /work/main
for i in 1 2; do
  for b in store-first handoff; do
    if [ $b = store-first ]; then extra="--kontor-serve-arg=--handoff-wait-ms --kontor-serve-arg=0"; else extra=""; fi
    target/release/bench run --systems kontor-sqlite --workloads store-forward,one-to-one --sizes 256 \
      --runs 3 --step-seconds 4 --kontor /tmp/kontor-handoff $extra --out /tmp/ab/ladder/$b-$i > /tmp/ab/ladder-$b-$i.log 2>&1
    echo "$b-$i rc=$?" >> /tmp/ab/done
  done
done
target/release/bench run --systems kontor-sqlite --workloads idle --kontor /tmp/kontor-handoff --out /tmp/ab/idle/handoff > /tmp/ab/idle.log 2>&1
echo "idle rc=$?" >> /tmp/ab/done
target/release/bench run --systems kontor-sqlite,ejabberd,prosody --workloads one-to-one --sizes 256 --runs 3 --step-seconds 4 \
  --kontor /tmp/kontor-handoff --out /tmp/ab/three > /tmp/ab/three.log 2>&1
echo "three rc=$?" >> /tmp/ab/done
