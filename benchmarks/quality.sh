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
CALIBRATION=Tests/fixtures/perplexity/genesis.txt
"$MOERT" quantize --model models/demo --out "$SCRATCH/mixed" --type q4_0 --bits 6 --calibration "$CALIBRATION" \
    >/dev/null 2>&1
"$MOERT" quantize --model models/demo --out "$SCRATCH/q3_0" --type q4_0 --experts q3_0 >/dev/null 2>&1
for bits in 4 4.5; do
    "$MOERT" quantize --model models/demo --out "$SCRATCH/bits$bits" --type q4_0 --bits $bits --calibration "$CALIBRATION" \
        >/dev/null 2>&1
done
# Controls at the same sizes (--tensor-type rules, one per layer and type): the --bits 4 plan with q3_0 and q4_0
# swapped, and at 4.5 bits the ladder by rank of routing weight on the same calibration text (per layer the most used
# expert q8_0, the next three q4_0, the other four q3_0).
"$MOERT" trace --model models/demo --out "$SCRATCH/trace.json" \
    --tokens "$("$MOERT" tokenize --model models/demo --file "$CALIBRATION" | tr ' ' ',')" >/dev/null 2>&1
python3 - "$SCRATCH" <<'PY'
import json, sys
from collections import defaultdict
scratch = sys.argv[1]
def rules(chosen):  # {layer: {expert: type}} -> one --tensor-type per layer and type
    out = []
    for layer, types in sorted(chosen.items()):
        for t in sorted(set(types.values())):
            ids = "|".join(str(e) for e in sorted(e for e, u in types.items() if u == t))
            out.append(rf"layers\.{layer}\..*experts\.({ids})\.={t}")
    return out
plan = json.load(open(f"{scratch}/bits4/config.json"))["moert"]["quantization"]["tensors"]
swapped = defaultdict(dict)
for name, t in plan.items():
    parts = name.split(".")
    if "experts" in parts:
        swapped[int(parts[2])][int(parts[parts.index("experts") + 1])] = {"q3_0": "q4_0", "q4_0": "q3_0"}[t]
mass = defaultdict(lambda: defaultdict(float))
for r in json.load(open(f"{scratch}/trace.json"))["records"]:
    for e, w in zip(r["experts"], r["weights"]):
        mass[r["layer"]][e] += w
ladder = {}
for layer, m in mass.items():
    order = sorted(range(len(swapped[layer])), key=lambda e: (-m[e], e))
    ladder[layer] = {e: "q8_0" if i == 0 else "q4_0" if i < 4 else "q3_0" for i, e in enumerate(order)}
for name, chosen in (("swapped", swapped), ("ladder", ladder)):
    with open(f"{scratch}/{name}.rules", "w") as f:
        f.write("\n".join(rules(chosen)) + "\n")
PY
for control in swapped ladder; do
    set --
    while read -r rule; do set -- "$@" --tensor-type "$rule"; done < "$SCRATCH/$control.rules"
    "$MOERT" quantize --model models/demo --out "$SCRATCH/$control" --type q4_0 --experts q3_0 "$@" >/dev/null 2>&1
done

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
row "demo, q3_0 experts (attention q4_0, output layer and embeddings q8_0)" "$SCRATCH/q3_0"
row "demo, q4_0/q3_0 per expert from routing (--bits 4: the most used half q4_0)" "$SCRATCH/bits4"
row "demo, the same sizes swapped (the least used half q4_0)" "$SCRATCH/swapped"
row "demo, per expert from routing at q4_0's size (--bits 4.5: all q4_0)" "$SCRATCH/bits4.5"
row "demo, ladder at q4_0's size (per layer 1 q8_0, 3 q4_0, 4 q3_0 by routing weight)" "$SCRATCH/ladder"
