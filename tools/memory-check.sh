#!/usr/bin/env bash
# Peak RSS of `roformer separate` on a 1-minute and a 60-minute stereo file (pink noise made with
# ffmpeg), to show that memory grows only by the audio buffers themselves.
# Usage: tools/memory-check.sh MODEL CONFIG [MINUTES_LONG]   (needs ffmpeg and /usr/bin/time)
set -euo pipefail
model="$1" config="$2" long="${3:-60}"
bin="$(dirname "$0")/../target/release/roformer"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for minutes in 1 "$long"; do
  ffmpeg -loglevel error -f lavfi -i "anoisesrc=d=$((minutes * 60)):c=pink:r=44100:a=0.2" \
    -ac 2 -c:a pcm_s16le "$work/in$minutes.wav"
  /usr/bin/time -v "$bin" separate "$work/in$minutes.wav" --model "$model" --config "$config" \
    -o "$work/out" -q --overwrite 2> "$work/time$minutes.txt"
  rss=$(awk '/Maximum resident set size/ {print $6}' "$work/time$minutes.txt")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $8}' "$work/time$minutes.txt")
  echo "$minutes min: peak RSS $((rss / 1024)) MiB, wall $wall"
done
