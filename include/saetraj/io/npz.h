// NumPy .npz archives, the format of Gemma Scope's params.npz: a zip of .npy arrays (stored, not
// compressed; ZIP64 for the largest widths). Every .npy header is read and checked when the archive is
// opened; arrays are streamed straight from the archive into the tensor's memory when loaded.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

struct zip;  // libzip's archive handle (zip_t)

namespace saetraj::io {

class NpzFile {
 public:
  // Opens the archive and validates every member ending in .npy: magic, version (1.0/2.0/3.0), header
  // dict, C order, dtype (<f2 <f4 <f8 <i4 <i8), data length equal to shape x itemsize. IoError if the
  // file cannot be opened, FormatError (naming the file and member) for anything malformed.
  static NpzFile open(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // without the .npy suffix, sorted
  bool contains(const std::string& name) const { return members_.count(name) != 0; }
  const std::vector<int64_t>& shape(const std::string& name) const;

  // A fresh contiguous tensor of type `as` (floating data into floating types, integer into integer).
  // A libzip archive serves one read at a time: do not load from several threads at once.
  torch::Tensor load(const std::string& name, torch::ScalarType as = torch::kFloat32) const;
  // Same, after checking the shape: "tensor 'x' in FILE has wrong shape; expected [a, b], got [c, d]".
  torch::Tensor load(const std::string& name, const std::vector<int64_t>& expected_shape,
                     torch::ScalarType as = torch::kFloat32) const;

 private:
  struct Member {
    uint64_t index = 0;         // entry index in the archive
    uint64_t header_bytes = 0;  // preamble + dict
    uint64_t data_bytes = 0;
    torch::ScalarType dtype = torch::kFloat32;
    std::vector<int64_t> shape;
  };
  struct ZipCloser {
    void operator()(::zip* archive) const;
  };

  const Member& member(const std::string& name) const;

  std::string path_;
  std::unique_ptr<::zip, ZipCloser> zip_;
  std::map<std::string, Member> members_;
};

// Writes float32 arrays as an uncompressed .npz, like numpy.savez (member "<name>.npy"). libzip writes
// under a temporary name and renames on success; IoError if the file cannot be written completely.
void write_npz(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& arrays);

}  // namespace saetraj::io
