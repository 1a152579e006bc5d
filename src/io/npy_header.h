// The header of a NumPy .npy array: magic "\x93NUMPY", version (1.0, 2.0, 3.0), a little-endian header
// length (u16 for 1.0, u32 after), then a Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2304, 16384), }
// padded with spaces and ended by '\n'. The array data follows, C order.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace saetraj::io {

struct NpyHeader {
  std::string descr;        // '<f4', ...
  torch::ScalarType dtype;  // the torch type of descr
  size_t itemsize = 0;
  std::vector<int64_t> shape;
  uint64_t data_bytes = 0;  // numel x itemsize, checked for overflow
};

// Bytes of magic + version + length field, and the dict length, from the first bytes of a member:
// `first` holds at least 12 bytes or `available` of them if fewer. `where` names member and file.
struct NpyPreamble {
  size_t preamble_bytes = 0;  // 10 for version 1.0, 12 for 2.0 and 3.0
  uint64_t dict_bytes = 0;
};
NpyPreamble parse_npy_preamble(const uint8_t* first, size_t available, const std::string& where);

// Parses the dict; FormatError naming `where` for anything malformed, Fortran order or an unsupported
// descr.
NpyHeader parse_npy_dict(const std::string& dict, const std::string& where);

// The whole header (preamble and padded dict) for a C-order array, as numpy.save writes it: total length
// a multiple of 64, version 1.0 unless the dict needs a 32-bit length.
std::string format_npy_header(const std::string& descr, const std::vector<int64_t>& shape);

}  // namespace saetraj::io
