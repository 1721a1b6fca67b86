#!/usr/bin/env bash
# The long soak (issue #8), outside CI: the model-based, load and fault tests again and again,
# each round with a new random walk of the model test and many more examples than CI runs,
# until the time is up or something fails.
#
#   bash benchmarks/soak.sh [MINUTES] [EXAMPLES]     (defaults: 60 minutes, 300 examples; at
#   least 25: the model test fails a walk of fewer than 500 steps)
#
# Every round's output goes to soak-logs/round-N.log; the seed of a failing round is printed,
# and OCIFS_MODEL_SEED=<seed> bash scripts/test.sh tests/test_model.py replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
examples=${2:-300}
bash scripts/setup.sh test
mkdir -p soak-logs
deadline=$(( $(date +%s) + minutes * 60 ))
round=0
while [ "$(date +%s)" -lt "$deadline" ]; do
    round=$((round + 1))
    seed=$RANDOM$RANDOM
    log="soak-logs/round-$round.log"
    echo "soak: round $round, model seed $seed, $examples examples -> $log"
    if ! OCIFS_MODEL_SEED=$seed OCIFS_MODEL_EXAMPLES=$examples .venv/bin/python -m pytest -x -q \
            -p no:cacheprovider -o timeout=0 tests/test_model.py tests/test_load.py \
            tests/test_faults.py >"$log" 2>&1; then
        echo "soak: round $round FAILED (model seed $seed); see $log" >&2
        tail -30 "$log" >&2
        exit 1
    fi
done
echo "soak: $round rounds passed in $minutes minutes"
