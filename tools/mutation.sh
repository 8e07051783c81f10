#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Mutation testing of one module of the numerical core against its own tests (issue 21).
#
#   tools/mutation.sh MODULE [MAX_CHILDREN]     e.g.  tools/mutation.sh linalg 2
#
# Runs mutmut (pip install mutmut; 3.8 tested) in a scratch clone of the last commit, with the
# [tool.mutmut] section of pyproject.toml narrowed to MODULE and its test files, and prints the
# mutants that were not killed (`mutmut show NAME` in the clone prints one). Not part of CI:
# a module takes minutes to an hour on two cores.
set -euo pipefail
declare -A SOURCE TESTS
SOURCE[linesearch]='"solvers/linesearch/rules.py", "solvers/linesearch/config.py", "solvers/linesearch/preconditioners.py", "solvers/linesearch/minimize.py"'
TESTS[linesearch]='"tests/solvers/linesearch"'
SOURCE[linalg]='"solvers/linalg.py"';                      TESTS[linalg]='"tests/solvers/test_linalg.py"'
SOURCE[preconditioner]='"eigenpro/preconditioner.py"';     TESTS[preconditioner]='"tests/eigenpro/test_preconditioner.py"'
SOURCE[eigenpro_solver]='"eigenpro/solver.py"'
TESTS[eigenpro_solver]='"tests/eigenpro/test_solver.py", "tests/eigenpro/test_resume.py"'
SOURCE[network]='"closedform/network.py"';                 TESTS[network]='"tests/closedform/test_network.py"'
SOURCE[svm_head]='"closedform/svm_head.py"'
# the held-out iteration count of svm_head.py is tested in test_squared_hinge.py
TESTS[svm_head]='"tests/closedform/test_svm_head.py", "tests/closedform/test_squared_hinge.py"'
SOURCE[squared_hinge]='"closedform/squared_hinge.py"';     TESTS[squared_hinge]='"tests/closedform/test_squared_hinge.py"'
SOURCE[trial]='"solvers/torch/optim/trial.py"';            TESTS[trial]='"tests/solvers/torch/optim/test_trial.py"'
SOURCE[topk]='"solvers/torch/sparse/topk.py"';             TESTS[topk]='"tests/solvers/torch/sparse/test_topk.py"'
# the torch optimizers' core against the optimizer tests; the two-rank DDP test spawns processes
# that cannot import the mutated tree, so it is deselected (it runs in the default suite)
OPTIM_TESTS='"tests/solvers/torch/optim", "--deselect", "tests/solvers/torch/optim/test_line_search.py::test_ddp_ranks_take_the_same_decisions"'
SOURCE[functional]='"solvers/torch/optim/_functional.py"';  TESTS[functional]=$OPTIM_TESTS
SOURCE[line_search]='"solvers/torch/optim/line_search.py"'; TESTS[line_search]=$OPTIM_TESTS
SOURCE[densities]='"solvers/torch/sparse/densities.py"';   TESTS[densities]='"tests/solvers/torch/sparse/test_densities.py"'
SOURCE[proximal]='"solvers/torch/optim/proximal.py"';       TESTS[proximal]='"tests/solvers/torch/optim/test_proximal.py"'
SOURCE[layers]='"solvers/torch/sparse/layers.py"';          TESTS[layers]='"tests/solvers/torch/sparse/test_layers.py"'
# the sparse controllers against the sparse tests less the two-rank ones (spawned ranks cannot
# import the mutated tree; they run in the default suite)
SPARSE_TESTS='"tests/solvers/torch/sparse", "--deselect", "tests/solvers/torch/sparse/test_distributed.py", "--deselect", "tests/solvers/torch/sparse/test_controller_contract.py::test_masks_identical_on_two_ddp_ranks"'
for name in controller dynamic pruning gradual lottery optimizer_state ssgd isometry export amp; do
    SOURCE[$name]="\"solvers/torch/sparse/$name.py\""; TESTS[$name]=$SPARSE_TESTS
done

module=${1:-}
if [[ -z "$module" || -z "${SOURCE[$module]:-}" ]]; then
    echo "usage: $0 MODULE [MAX_CHILDREN]; MODULE one of: ${!SOURCE[*]}" >&2
    exit 2
fi
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d "${TMPDIR:-/tmp}/mutation-$module.XXXX")
git clone -q "$repo" "$work"
[[ -d "$repo/.venv" ]] && ln -s "$repo/.venv" "$work/.venv"
cd "$work"
sed -i "s|^only_mutate = .*|only_mutate = [${SOURCE[$module]}]|; s|^pytest_add_cli_args_test_selection = .*|pytest_add_cli_args_test_selection = [${TESTS[$module]}]|" pyproject.toml
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mutmut=$(command -v mutmut || echo "$repo/.venv/bin/mutmut")
nice -n 19 "$mutmut" run --max-children "${2:-2}" || true
"$mutmut" results
echo "scratch clone: $work"
