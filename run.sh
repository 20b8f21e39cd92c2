#!/usr/bin/env bash
# Score every video in INPUT_DIR; write OUTPUT_DIR/submission.csv (+ submission_failures.csv,
# and submission_journal.jsonl, from which a killed run resumes).
#   bash run.sh INPUT_DIR OUTPUT_DIR [options]       (bash run.sh --help: every option, its default)
#   bash run.sh -input INPUT_DIR -output OUTPUT_CSV [options]   # the challenge's form
#   bash run.sh INPUT_DIR OUTPUT_DIR --format dfdc      # Kaggle DFDC's filename,label
#   bash run.sh INPUT_DIR OUTPUT_DIR --per-second OUTPUT_DIR/per_second.csv   # filename,track,second,score,measured
#   bash run.sh INPUT_DIR OUTPUT_DIR --explain OUTPUT_DIR/explain   # a page per video + index.html
# Works from any directory; uses the repository's .venv when there is one.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$root/.venv/bin/python"
if [ ! -x "$python" ]; then
  python="$(command -v python3 || command -v python)"
fi
# The packages are imported from the repository root; INPUT/OUTPUT stay relative to the caller's cwd.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

case "${1:-}" in
  -h | --help)  # the full option list with its defaults, and the exit statuses
    exec "$python" -m submission --help ;;
  -*)  # the challenge's form: bash run.sh -input DIR -output FILE [options]
    exec "$python" -m submission "$@" ;;
esac
if [ "$#" -lt 2 ]; then
  echo "usage: bash run.sh INPUT_DIR OUTPUT_DIR [options]" >&2
  echo "       bash run.sh -input INPUT_DIR -output OUTPUT_CSV [options]" >&2
  echo "every option, with its default: bash run.sh --help" >&2
  exit 2
fi
input="$1"
output="$2"
shift 2
exec "$python" -m submission --input "$input" --output "$output/submission.csv" "$@"
