#!/usr/bin/env bash
# Fuzzes the readers of untrusted files: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# (default 600 s each, every target). Needs cargo-fuzz (`cargo install cargo-fuzz`); the
# nightly features it uses are enabled with RUSTC_BOOTSTRAP on the stable toolchain. Corpora
# are seeded from tests/fixtures and kept outside the clone; crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/roformer-fuzz-target}"
SECONDS_EACH="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(checkpoint safetensors config audio eval)
CORPUS="${FUZZ_CORPUS:-$HOME/.cache/roformer-fuzz-corpus}"
F=tests/fixtures

seed() {
    local target=$1
    mkdir -p "$CORPUS/$target"
    case $target in
        checkpoint) find $F -name '*.ckpt' -size -3M -o -name '*.pt' | head -20 ;;
        safetensors) find $F -name '*.safetensors' -size -3M | head -20 ;;
        config) find $F models -name '*.yaml' | head -40 ;;
        audio | eval) ;;
    esac | while read -r f; do cp "$f" "$CORPUS/$target/$(basename "$(dirname "$f")")-$(basename "$f")"; done
    if [ "$target" = eval ]; then
        tools/fuzz_eval_seeds.py "$CORPUS/eval" $F/metrics/references/bach_bwv7.7/vocals.flac
    fi
    if [ "$target" = audio ]; then
        # The first byte picks the container: 0 wav, 1 flac, 2 mp3, 3 ogg, 4 aiff, 5 m4a.
        local i=0
        for f in $F/audio/sine.aiff $F/audio/sine.mp3 $F/audio/sine.ogg $F/audio/sine.m4a \
                 $(find $F/metrics -name '*.flac' | head -2) $(find $F/models -name 'mixture.wav' | head -1); do
            case "${f##*.}" in wav) b=0 ;; flac) b=1 ;; mp3) b=2 ;; ogg) b=3 ;; aiff) b=4 ;; m4a) b=5 ;; esac
            { printf "\\x$(printf %02x "$b")"; head -c 200000 "$f"; } > "$CORPUS/audio/seed$i"
            i=$((i + 1))
        done
    fi
}

for t in "${TARGETS[@]}"; do
    seed "$t"
    echo "== $t: ${SECONDS_EACH}s"
    # eval runs BSSEval (a 2048-unknown solve, an SVD on degenerate input) under the sanitizers.
    timeout=20
    [ "$t" = eval ] && timeout=120
    cargo fuzz run -O --fuzz-dir fuzz "$t" "$CORPUS/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=$timeout -max_len=4000000 2>&1 \
        | grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|ERROR|SUMMARY|panicked|crash-|oom-|timeout-" || true
done
