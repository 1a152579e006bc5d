// Pieces shared by the tensor file readers (safetensors, npz): the "missing tensor" message and the rule
// for which stored dtypes may be converted into which requested torch types.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace saetraj::io {

// "tensor 'x' not found in WHERE (N tensors; similar: a, b, c)" plus, when `name` and an available
// tensor differ only by a prefix that checkpoints commonly add or drop ("model.", "transformer.", ...),
// a sentence saying so.
std::string missing_tensor_message(const std::string& name, const std::string& where,
                                   const std::vector<std::string>& available);

// Floating-point data loads into any floating-point type, integer data into any integer type; crossing
// kinds would silently round or truncate, so it is refused (FormatError naming `what`).
void check_convertible(torch::ScalarType stored, torch::ScalarType as, const std::string& what);

// "tensor 'x' in FILE has wrong shape; expected [a, b], got [c, d]"
void check_shape(const std::vector<int64_t>& found, const std::vector<int64_t>& expected,
                 const std::string& name, const std::string& file);

}  // namespace saetraj::io
