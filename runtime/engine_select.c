/*
 * runtime/engine_select.c — select's scoring methods (EngSelectMethod) over
 * an engine score result: pure functions of the logprobs, no engine state.
 */
#include "runtime/engine.h"

#include <stdlib.h>

/* ---- select's methods ---------------------------------------------------------------- */

int eng_select_scores(const EngScoreResult *r, EngSelectMethod method, double *scores)
{
    if (!r || r->n_choices <= 0 || !scores) return ERR_ARG;
    int n = r->n_choices, best = 0;
    switch (method) {
    case ENG_SELECT_TOKEN_LENGTH_NORMALIZED:
        for (int i = 0; i < n; i++) {
            double sum = 0;
            for (int j = 0; j < r->n_tokens[i]; j++) sum += r->logprobs[i][j];
            scores[i] = sum / r->n_tokens[i];
            if (scores[i] > scores[best]) best = i;
        }
        return best;
    case ENG_SELECT_GREEDY_TOKEN: {
        /* Column by column over the choices still tied; a choice shorter
         * than the column stands in with its mean (SGLang's matrix). */
        int width = 0;
        for (int i = 0; i < n; i++) {
            scores[i] = r->logprobs[i][0];
            if (r->n_tokens[i] > width) width = r->n_tokens[i];
        }
        int *alive = malloc((size_t)n * sizeof *alive);
        if (!alive) return ERR_NOMEM;
        int na = n;
        for (int i = 0; i < n; i++) alive[i] = i;
        for (int j = 0; j < width && na > 1; j++) {
            double col[n > 0 ? n : 1], mx = -1e300;
            for (int k = 0; k < na; k++) {
                int i = alive[k];
                if (j < r->n_tokens[i]) col[k] = r->logprobs[i][j];
                else {
                    double sum = 0;
                    for (int t = 0; t < r->n_tokens[i]; t++) sum += r->logprobs[i][t];
                    col[k] = sum / r->n_tokens[i];
                }
                if (col[k] > mx) mx = col[k];
            }
            int keep = 0;
            for (int k = 0; k < na; k++)
                if (col[k] == mx) alive[keep++] = alive[k];
            na = keep;
        }
        best = alive[0];
        free(alive);
        return best;
    }
    case ENG_SELECT_UNCONDITIONAL_LIKELIHOOD_NORMALIZED:
        if (!r->unconditional) return ERR_ARG;
        for (int i = 0; i < n; i++) {
            double sum = 0;
            for (int j = 0; j < r->n_tokens[i]; j++) sum += r->logprobs[i][j] - r->unconditional[i][j];
            scores[i] = sum / r->n_tokens[i];
            if (scores[i] > scores[best]) best = i;
        }
        return best;
    case ENG_SELECT_COUNT_:
        break;
    }
    return ERR_ARG;
}
