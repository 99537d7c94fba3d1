#!/usr/bin/env bash
# Install, then build the whole book to HTML (_build/html). Notebooks are executed through
# Jupyter Book's cache: a rebuild re-executes only the chapters whose code changed. Then
# headless Chromium checks every page offline (scripts/book_site.py) and prints the book to
# one PDF (_build/pdf/book.pdf); without Chromium those two steps are skipped with a note.
#
#   bash scripts/build_book.sh            # build (re-executing changed chapters), check, print
#   bash scripts/build_book.sh --force    # forget the execution cache: re-execute every chapter
#   bash scripts/build_book.sh --student  # also build a student site without the exercise
#                                         # solutions (_build/student/_build/html)
# Other arguments go to `jupyter-book build`.
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
student=0
args=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --student) student=1 ;;
        *) args+=("$arg") ;;
    esac
done
bash scripts/install.sh
PYTHON="${PYTHON:-python3}"
# A static page cannot animate a progress bar: Hugging Face's loading bars stay off here.
export HF_HUB_DISABLE_PROGRESS_BARS=1
if [ "$force" = 1 ]; then
    rm -rf _build/.jupyter_cache _build/jupyter_execute _build/.doctrees
    echo "Execution cache cleared: every chapter is executed again."
fi
start=$(date +%s)
jupyter-book build . --builder html ${args[@]+"${args[@]}"}
echo "Built in $(( $(date +%s) - start )) s: $(pwd)/_build/html/index.html"
if [ "$student" = 1 ]; then
    # Same notebooks, outputs from the same execution cache; solutions removed (book/_ext).
    GENREC_STUDENT=1 jupyter-book build . --builder html --path-output _build/student ${args[@]+"${args[@]}"}
    "$PYTHON" scripts/book_site.py strip-solutions _build/student/_build/html
    echo "Student version: $(pwd)/_build/student/_build/html/index.html"
fi
"$PYTHON" scripts/book_site.py check _build/html --pdf _build/pdf/book.pdf
