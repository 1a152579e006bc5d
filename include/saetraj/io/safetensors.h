// Safetensors files: memory-mapped reading (single file or a sharded checkpoint with
// model.safetensors.index.json) and writing. Every structural defect of a file is reported as a
// FormatError that names the file and, where there is one, the tensor.
//
// Layout: u64 little-endian header length H, H bytes of JSON
//   { "__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ... }
// then the data section; offsets are relative to the start of the data section.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace saetraj::io {

enum class DType { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

const char* dtype_name(DType dtype);
DType dtype_from_name(const std::string& name);  // throws FormatError for an unknown name
size_t dtype_size(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
  int64_t numel() const;
};

class MappedFile;  // RAII read-only mmap (io/mmap.h)

class SafetensorsFile {
 public:
  // Maps the file and validates the whole header: length, JSON, dtypes, shapes, offsets inside the data
  // section, byte sizes equal to numel x dtype size, no two tensors overlapping.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // FormatError "missing tensor" if absent

  // Copies the tensor out of the mapping, converted to `as` (F32/F16/BF16 stored; F64/I32/I64 too).
  torch::Tensor load(const std::string& name, torch::ScalarType as = torch::kFloat32) const;
  // Same, after checking the shape: "tensor 'x' in FILE has wrong shape; expected [a, b], got [c, d]".
  torch::Tensor load(const std::string& name, const std::vector<int64_t>& expected_shape,
                     torch::ScalarType as = torch::kFloat32) const;
  // Raw bytes of a tensor inside the mapping (valid while this object lives).
  const uint8_t* data(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;
  uint64_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
};

// A checkpoint folder: model.safetensors, or the shards named by model.safetensors.index.json
// ("weight_map": {tensor: shard file}). Shards are opened lazily and checked against the index.
class SafetensorsSet {
 public:
  static SafetensorsSet open_folder(const std::string& folder);
  static SafetensorsSet open_file(const std::string& path);

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor load(const std::string& name, torch::ScalarType as = torch::kFloat32) const;
  torch::Tensor load(const std::string& name, const std::vector<int64_t>& expected_shape,
                     torch::ScalarType as = torch::kFloat32) const;
  // The file that holds `name` (for messages).
  std::string file_of(const std::string& name) const;

 private:
  std::string where_;  // the index file, or the single file: named in "missing tensor" messages
  std::map<std::string, std::string> weight_map_;  // tensor -> shard path
  // Filled as shards are first used; not safe to use from several threads at once.
  mutable std::map<std::string, std::shared_ptr<SafetensorsFile>> shards_;
  const SafetensorsFile& shard_for(const std::string& name) const;
};

// Writes tensors (floating-point ones converted to `storage`, one of F32/F16/BF16/F64; integer and bool
// tensors keep their type) in name order, back to back as the reference reader requires, after a header
// padded with spaces to a multiple of 8 bytes. The file is written under a temporary name and renamed
// into place; throws IoError if it cannot be written completely.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {}, DType storage = DType::F32);

// Writes a sharded checkpoint: shards of at most `max_shard_bytes` (a larger tensor gets a shard of its
// own), named model-0000i-of-0000n.safetensors, plus model.safetensors.index.json with
// metadata.total_size and the weight_map.
void write_safetensors_sharded(const std::string& folder,
                               const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                               uint64_t max_shard_bytes, DType storage = DType::F32);

}  // namespace saetraj::io
