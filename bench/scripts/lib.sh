# Shared by the comparison scripts in this folder (sourced, not run).
# They set: bin (folder with the bench binary), rounds, repeats, workers.

# rate ADDRESS WORKERS prints the ops/s of one bench run.
rate() {
  "$bin/bench" run --servers "$1" --workers "$2" --rounds "$rounds" --json --progress off |
    sed -n 's/.*"ops_per_sec": \([0-9.]*\).*/\1/p'
}

# compare NAME_A ADDR_A NAME_B ADDR_B runs A, B, A, B, ... $repeats times
# per worker count and prints each pair and the spread of B ÷ A.
compare() {
  local na=$1 aa=$2 nb=$3 ab=$4 w r a b ratio ratios
  for w in "${workers[@]}"; do
    ratios=()
    for r in $(seq "$repeats"); do
      a=$(rate "$aa" "$w")
      b=$(rate "$ab" "$w")
      ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')
      ratios+=("$ratio")
      printf 'workers %3d run %d: %s %8.0f ops/s  %s %8.0f ops/s  %s/%s %s\n' "$w" "$r" "$na" "$a" "$nb" "$b" "$nb" "$na" "$ratio"
    done
    printf 'workers %3d: %s/%s min %s median %s max %s\n' "$w" "$nb" "$na" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | head -1)" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)"
  done
}
