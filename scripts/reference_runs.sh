#!/usr/bin/env bash
# The reference board's runs (issue 20): the seed methods' comparisons with their papers first,
# then the rest of the grid cheapest first. Run from a clean checkout; each line is
# one `stbench run` into one results folder, resumable: cells recorded in the folder or done on
# the committed board (--skip-published) are not re-run, so this script can be stopped and
# started again at any point, in a new session with a new folder. Merge what finished with
#     stbench board add RESULTS && python scripts/board_headlines.py
# and see what remains with `stbench board status`.
#
#     STBENCH_DATA=../shared/data [JOBS=2] scripts/reference_runs.sh RESULTS [STBENCH]
set -uo pipefail
RESULTS="${1:?usage: reference_runs.sh RESULTS [STBENCH]}"
STBENCH="${2:-stbench}"
REAL="dlpfc starmap_mpfc merfish_hypothalamus dlpfc_7k her2st"
run() { echo "=== $(date -u +%FT%TZ) stbench run $*"; $STBENCH run "$@" --results "$RESULTS" --skip-published --quiet --jobs "${JOBS:-1}"; }

# 0. the papers' comparisons: Spotscape and its peers on DLPFC 151673 (Spotscape's .48 ARI over
#    10 seeds), S2S-ST against the interpolation baselines on HER2ST, SUICA against the other INRs
#    on MERFISH (imputation and denoising); then the comparisons that complete a task on a whole
#    dataset soonest (STARmap's domains and imputation, S2S-ST on DLPFC, DLPFC's other slices and
#    the peers' seeds 3-9 on 151673, which Spotscape's 10 seeds need before DLPFC can be ranked).
#    Later lines skip these cells, as they are recorded.
DOMAIN_PEERS="stagate graphst spaceflow spotscape"
INRS="ffn siren stage suica"
run --tasks domain_identification --datasets dlpfc --instances 151673 --methods spotscape --seeds 0 1 2 3 4 5 6 7 8 9
run --tasks domain_identification --datasets dlpfc --instances 151673 --methods graphst spaceflow stagate --seeds 0 1 2
run --tasks spatial_imputation --datasets her2st --methods s2s_st --seeds 0 1 2
for task in spatial_imputation denoising; do run --tasks "$task" --datasets merfish_hypothalamus --methods $INRS --seeds 0 1 2; done
run --tasks domain_identification --datasets starmap_mpfc --methods $DOMAIN_PEERS --seeds 0 1 2
run --tasks spatial_imputation --datasets starmap_mpfc --methods $INRS s2s_st --seeds 0 1 2
run --tasks spatial_imputation --datasets dlpfc --methods s2s_st --seeds 0 1 2
run --tasks domain_identification --datasets dlpfc --methods $DOMAIN_PEERS --seeds 0 1 2
run --tasks domain_identification --datasets dlpfc --instances 151673 --methods $DOMAIN_PEERS --seeds 3 4 5 6 7 8 9
run --tasks spatial_imputation --datasets merfish_hypothalamus --methods s2s_st --seeds 0 1 2

# 1. controls and baselines: every real dataset, seeds 0-2; then DLPFC 151673's extra seeds
for ds in $REAL; do run --datasets "$ds" --seeds 0 1 2; done
run --tasks domain_identification --datasets dlpfc --instances 151673 --seeds 3 4 5 6 7 8 9
# 2. the peers and seed methods on the rest of the grid, one whole task x dataset at a time, the
#    cheapest to complete first (the order of `stbench board status`'s estimates; re-ordered when
#    STAGE version 2 made its cells about 2x faster, and again when dlpfc_7k's measured cell times
#    put its denoising last at 9 h), so that each session's runs finish
#    comparisons the coverage rule can rank, instead of spreading cells over many comparisons
#    that stay unranked.
ALIGNERS="paste paste2 staligner spotscape"
INTEGRATORS="graphst staligner spotscape"
# (the plan is read on descriptor 3, so no `stbench run` can read it from standard input)
while read -r task ds methods <&3; do
  run --tasks "$task" --datasets "$ds" --methods $methods --seeds 0 1 2
done 3<<PLAN
multislice_integration starmap_mpfc $INTEGRATORS
multislice_integration dlpfc $INTEGRATORS
gene_imputation merfish_hypothalamus $INRS
spatial_imputation her2st $INRS
alignment merfish_hypothalamus $ALIGNERS
gene_imputation dlpfc_7k $INRS
alignment her2st $ALIGNERS
gene_imputation dlpfc $INRS
spatial_imputation dlpfc $INRS
alignment dlpfc $ALIGNERS
denoising dlpfc $INRS
denoising dlpfc_7k $INRS
PLAN
# 3. anything the lines above miss (a method or dataset registered later): every method on every
#    real dataset, seeds 0-2; recorded cells are skipped.
for ds in $REAL; do run --datasets "$ds" --seeds 0 1 2; done
echo "=== $(date -u +%FT%TZ) done"
