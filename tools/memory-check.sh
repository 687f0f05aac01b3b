#!/usr/bin/env bash
# Peak RSS of `roformer separate` on a 1-minute and a longer (default 10-minute) stereo file of
# pink noise made with ffmpeg. With one model, separation streams the track through the model,
# so memory must not grow with its length: the script fails when the long file's peak RSS is more
# than 10% above the 1-minute file's.
#
# Usage: tools/memory-check.sh MODEL CONFIG [MINUTES_LONG] [-- SEPARATE_OPTIONS...]
#   e.g. tools/memory-check.sh model.ckpt config.yaml 10 -- --tta --instrumental --format flac
# Environment: ROFORMER (the binary; default target/release/roformer),
#   INPUT_EXT (input file type, anything ffmpeg writes: wav (default), flac, mp3, ogg, ...),
#   INPUT_RATE (input sample rate, default 44100; another rate makes separate resample).
# Needs ffmpeg and GNU time (/usr/bin/time).
set -euo pipefail
model="$1" config="$2"
shift 2
long=10
if [[ $# -gt 0 && "$1" != "--" ]]; then
  long="$1"
  shift
fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
bin="${ROFORMER:-$(dirname "$0")/../target/release/roformer}"
ext="${INPUT_EXT:-wav}" rate="${INPUT_RATE:-44100}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
declare -A peak
for minutes in 1 "$long"; do
  input="$work/in$minutes.$ext"
  ffmpeg -loglevel error -f lavfi -i "anoisesrc=d=$((minutes * 60)):c=pink:r=$rate:a=0.2" \
    -ac 2 "$input"
  /usr/bin/time -v "$bin" separate "$input" --model "$model" --config "$config" \
    -o "$work/out" -q --overwrite "$@" 2> "$work/time$minutes.txt" || {
    cat "$work/time$minutes.txt" >&2
    exit 1
  }
  rss=$(awk '/Maximum resident set size/ {print $6}' "$work/time$minutes.txt")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $8}' "$work/time$minutes.txt")
  peak[$minutes]=$rss
  echo "$minutes min: peak RSS $((rss / 1024)) MiB, wall $wall"
  rm -rf "$work/out" "$input"
done
awk -v short="${peak[1]}" -v long="${peak[$long]}" -v minutes="$long" 'BEGIN {
  ratio = long / short
  printf "peak RSS ratio %s min / 1 min: %.3f (limit 1.10)\n", minutes, ratio
  exit (ratio <= 1.10 ? 0 : 1)
}'
