#!/bin/sh
cd /work/main
for i in 1 2; do
  target/release/bench run --systems kontor-sqlite --workloads store-forward,one-to-one --sizes 256 \
    --runs 3 --step-seconds 4 --kontor /tmp/kontor-d475106 --out /tmp/ab/fixed/handoff-$i > /tmp/ab/fixed-$i.log 2>&1
  echo "fixed-$i rc=$?" >> /tmp/ab/done2
done
target/release/bench run --systems kontor-sqlite,ejabberd,prosody --workloads one-to-one --sizes 256 --runs 3 --step-seconds 4 \
  --kontor /tmp/kontor-d475106 --out /tmp/ab/three-fixed > /tmp/ab/three-fixed.log 2>&1
echo "three rc=$?" >> /tmp/ab/done2
