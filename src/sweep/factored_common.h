// What the factored method's CPU kernels (factored_cpu.cpp) and its GPU path (factored_cuda.cpp) share:
// the layout of the projection matrix, the SAE preprocessing as (Pi, sigma) of the NOTE in
// include/saetraj/sweep/factored.h, and the rows that are projected through W_enc.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "saetraj/sae/sae.h"
#include "saetraj/sweep/evolution.h"

namespace saetraj::sweep::factored_detail {

// Rows of the projection matrix: the b_O row, the b_dec row, then per source token i its H head rows and
// its residual row.
struct Layout {
  int64_t heads;
  static constexpr int64_t kBias = 0, kDec = 1;
  int64_t head(int64_t i, int64_t h) const { return 2 + i * (heads + 1) + h; }
  int64_t resid(int64_t i) const { return 2 + i * (heads + 1) + heads; }
  int64_t rows(int64_t sources) const { return 2 + sources * (heads + 1); }
};

enum class Scale { One, LayerNorm, UnitNorm };

// What the SAE's preprocessing does to one residual-width vector, as (Pi, sigma) of the NOTE.
struct Preprocessing {
  bool centre = false;
  Scale scale = Scale::One;
  int64_t d = 0;

  explicit Preprocessing(const sae::SaeConfig& cfg);
  // sigma(x) for a vector x of d floats.
  double sigma(const float* x) const;
  // sigma of every row of x [..., d] (float64 sums), as float32 [...].
  torch::Tensor sigma_rows(const torch::Tensor& x) const;
};

// The projection matrix's rows [rows(n), d], on the device of the request's tensors:
// Pi (b_O . g), b_dec (or zeros), Pi (u_h[i] . g), Pi r_i.
torch::Tensor projection_inputs(const sae::Sae& sae, const Preprocessing& pre, const EvolutionRequest& req,
                                const Layout& layout, int64_t n);

}  // namespace saetraj::sweep::factored_detail
