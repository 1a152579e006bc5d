// The factored method of computing evolution tables: exact, and much faster than encoding every partial
// sum when prompts are long. compute_evolution_factored (declared in evolution.h) implements it.
//
// [NOTE] Why the pre-activations factor. For query q, step s = j+1 encodes x = r + phi(c_j), where
// c_j = sum_{i<=j} a_i and a_i = sum_h A_h[q,i] u_h[i] + b_O/(q+1) (u_h[i] = v_h[i] @ W_O[h]). Two maps
// stand between x and W_enc:
//  - the post-attention norm (Gemma-2's RMSNorm): phi(c) = rho(c) * (c . g), with one scalar
//    rho(c) = 1/sqrt(mean(c^2) + eps) per partial sum and a fixed weight vector g (identity: rho = 1, g = 1);
//  - the SAE's preprocessing: pre(x) = sigma(x) * (Pi x) W_enc + beta, with Pi the centring projector
//    (when the SAE centres its input or uses layer norm) or the identity, sigma(x) one scalar per vector
//    (1; layer norm: 1/(std(Pi x) + 1e-5); constant-norm rescale: sqrt(d_in)/|Pi x|) and
//    beta = b_enc - b_dec W_enc (b_dec term only when the SAE subtracts it from its input).
// Every map above is linear except for per-vector scalars, so with
//    R_q = (Pi r_q) W_enc,  Z_h[i] = (Pi (u_h[i] . g)) W_enc,  B = (Pi (b_O . g)) W_enc,
// the pre-activations are
//    step 0:    sigma_0 R_q + beta
//    step j+1:  sigma_j R_q + sigma_j rho_j (S_j + (j+1)/(q+1) B) + beta,
//               S_j = S_{j-1} + sum_h A_h[q,j] Z_h[j].
// The projections are one matrix product of (H+1) N + 2 rows per layer (against (N-1)(N+4)/2 rows for the
// direct method), shared by all queries; the scalars sigma_j and rho_j need only residual-width work; and
// each row then costs H multiply-adds per feature, a running sum, instead of d_model. The top-k scan runs
// on the assembled row while it is in cache. Rounding differs from the direct method's (sums in another
// order), so the two agree on top-k lists up to ties closer than float rounding.
//
// Determinism across rank counts: the projections are computed in fixed blocks of rows and columns that
// depend on the prompt length and the shapes only, and each row's running sum runs over sources in order,
// so a query's rows are the same whichever rank computes them.
#pragma once

#include <cstdint>

namespace saetraj::sweep {

// Rows of the projection matrix per block (fixed, for determinism), and the feature width of one
// assembly pass (kept in L1/L2 cache with the head projections it reads).
inline constexpr int64_t kProjectionBlockRows = 256;
inline constexpr int64_t kAssemblyWidth = 1024;
// Consecutive queries assembled together, sharing each head projection row they read.
inline constexpr int64_t kQueryGroup = 8;

// The feature columns projected at once for a prompt of n tokens: all of d_sae when the projections fit
// in chunk_rows x d_sae floats (the direct method's working set), else fewer, in multiples of 256.
int64_t factored_column_block(int64_t n_tokens, int64_t heads, int64_t d_sae, int64_t chunk_rows);

}  // namespace saetraj::sweep
