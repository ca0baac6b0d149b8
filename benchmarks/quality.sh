#!/bin/sh
# Quality of the demo models on the held-out King James text (models/kjv-test.txt): perplexity, experts per token
# and next-token accuracy for every router, expert kind, decoding method and weight format docs/quality.md lists.
#
#   make && sh benchmarks/quality.sh [--quick]      # prints the table of docs/quality.md
#
# The trained variants (models/demo-topp, -hash, -moepp, -rmoe) come from `python3 tools/train_demo.py --variant V`;
# rows whose model is missing say so. The quantized copies are made here with `moert quantize` into a scratch
# directory. --quick scores the first 4,000 tokens' worth of text only. Every row runs one `moert perplexity`
# command, printed above the table.
set -eu
cd "$(dirname "$0")/.."
MOERT=${MOERT:-build/bin/moert}
EXTRA=${QUALITY_ARGS:-}  # more options for every command, e.g. QUALITY_ARGS="--threads 1"
TEXT=models/kjv-test.txt
[ -x "$MOERT" ] || { echo "quality.sh: $MOERT is missing: run make first" >&2; exit 1; }
[ -f models/demo/config.json ] || { echo "quality.sh: models/demo is missing" >&2; exit 1; }
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
if [ "${1:-}" = "--quick" ]; then
    head -c 16000 "$TEXT" > "$SCRATCH/text.txt"
    TEXT="$SCRATCH/text.txt"
fi

# row LABEL MODEL [moert perplexity options...]: one table row, the command on stderr.
row() {
    label=$1 model=$2
    shift 2
    if [ ! -f "$model/config.json" ]; then
        printf '| %s | (%s not trained: python3 tools/train_demo.py --variant %s) | | | |\n' "$label" "$model" "${model#models/demo-}"
        return
    fi
    echo "+ $MOERT perplexity --model $model --file $TEXT $* $EXTRA" >&2
    # shellcheck disable=SC2086  # EXTRA is a list of options
    out=$("$MOERT" perplexity --model "$model" --file "$TEXT" "$@" $EXTRA 2>/dev/null)
    ppl=$(printf '%s\n' "$out" | sed -n 's/^perplexity //p')
    experts=$(printf '%s\n' "$out" | sed -n 's/^experts per token *\([0-9.]*\).*/\1/p')
    accuracy=$(printf '%s\n' "$out" | sed -n 's/^accuracy *\([0-9.]*%\).*/\1/p')
    scmoe=$(printf '%s\n' "$out" | sed -n 's/^accuracy.*SCMoE \([0-9.]*%\).*/\1/p')
    size=$(du -sm "$model" | cut -f1)
    printf '| %s | %.4f | %s | %s%s | %s MB |\n' "$label" "$ppl" "$experts" "$accuracy" "${scmoe:+ → $scmoe with SCMoE}" "$size"
}

"$MOERT" quantize --model models/demo --out "$SCRATCH/q8_0" --type q8_0 >/dev/null 2>&1
"$MOERT" quantize --model models/demo --out "$SCRATCH/q4_0" --type q4_0 >/dev/null 2>&1
"$MOERT" quantize --model models/demo --out "$SCRATCH/mixed" --type q4_0 --bits 6 --calibration Tests/fixtures/perplexity/genesis.txt \
    >/dev/null 2>&1

echo "| model and method | perplexity | experts/token | next-token accuracy | size |"
echo "|---|---|---|---|---|"
row "demo, top-2 (as trained)" models/demo
row "demo, top-1" models/demo --moe-top-k 1
row "demo, top-3" models/demo --moe-top-k 3
row "demo, top-p 0.4" models/demo --plugin dynamic --router topp --router-params '{"threshold":0.4}'
row "demo, top-p 0.7" models/demo --plugin dynamic --router topp --router-params '{"threshold":0.7}'
row "demo, SCMoE 2,2,0.5 (accuracy of the contrasted choice)" models/demo --scmoe 2,2,0.5
row "demo, SCMoE 2,1,0.5" models/demo --scmoe 2,1,0.5
row "top-p variant (trained with p* = 0.4)" models/demo-topp
row "hash variant (Hash Layers, ReLU experts)" models/demo-hash
row "MoE++ variant (8 FFN + 2 constant + copy + zero)" models/demo-moepp
row "RMoE variant (GRU router + shared expert)" models/demo-rmoe
row "demo, q8_0" "$SCRATCH/q8_0"
row "demo, q4_0 (output layer and embeddings q8_0)" "$SCRATCH/q4_0"
row "demo, q4_0/q8_0 per expert from routing (--bits 6)" "$SCRATCH/mixed"
