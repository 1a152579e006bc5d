#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"

#include "atomic_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace saetraj::io {

namespace {

using nlohmann::ordered_json;

struct Prepared {
  std::string name;
  DType dtype;
  torch::Tensor data;  // contiguous, CPU, in the dtype written
  uint64_t bytes() const { return static_cast<uint64_t>(data.numel()) * dtype_size(dtype); }
};

torch::ScalarType storage_torch_type(DType storage) {
  switch (storage) {
    case DType::F16:
      return torch::kFloat16;
    case DType::BF16:
      return torch::kBFloat16;
    case DType::F32:
      return torch::kFloat32;
    case DType::F64:
      return torch::kFloat64;
    default:
      throw InputError(str("cannot write floating-point tensors as ", dtype_name(storage),
                           "; expected F32, F16, BF16 or F64"));
  }
}

DType integer_dtype(torch::ScalarType type, const std::string& name) {
  switch (type) {
    case torch::kBool:
      return DType::BOOL;
    case torch::kUInt8:
      return DType::U8;
    case torch::kInt8:
      return DType::I8;
    case torch::kInt16:
      return DType::I16;
    case torch::kInt32:
      return DType::I32;
    case torch::kInt64:
      return DType::I64;
    default:
      throw InputError(
          str("cannot write tensor '", name, "' of type ", c10::toString(type), " to safetensors"));
  }
}

// Sorted by name, validated, converted: everything that can fail before a byte is written.
std::vector<Prepared> prepare(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              DType storage, const std::string& path) {
  const torch::ScalarType float_type = storage_torch_type(storage);
  std::vector<Prepared> out;
  for (const auto& [name, tensor] : tensors) {
    SAETRAJ_CHECK(!name.empty() && name != "__metadata__", InputError, "cannot write a tensor named '", name,
                  "' to ", path);
    torch::Tensor t = tensor.detach().cpu();
    DType dtype = storage;
    if (c10::isFloatingType(t.scalar_type())) {
      t = t.to(float_type);
    } else {
      dtype = integer_dtype(t.scalar_type(), name);
    }
    out.push_back({name, dtype, t.contiguous()});
  }
  std::sort(out.begin(), out.end(), [](const Prepared& a, const Prepared& b) { return a.name < b.name; });
  for (size_t i = 1; i < out.size(); ++i) {
    SAETRAJ_CHECK(out[i].name != out[i - 1].name, InputError, "tensor '", out[i].name,
                  "' is given twice for ", path);
  }
  return out;
}

void write_file(const std::string& path, const std::vector<Prepared>& tensors,
                const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Prepared& t : tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.data.sizes().vec()},
                      {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  std::string text = header.dump();
  // Padding the header keeps the data section 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  AtomicFile out(path);
  out.write(&header_len, sizeof header_len);  // little-endian host (checked in safetensors.cpp)
  out.write(text.data(), text.size());
  for (const Prepared& t : tensors) out.write(t.data.data_ptr(), t.bytes());
  out.commit();
}

}  // namespace

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata, DType storage) {
  write_file(path, prepare(tensors, storage, path), metadata);
}

void write_safetensors_sharded(const std::string& folder,
                               const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                               uint64_t max_shard_bytes, DType storage) {
  SAETRAJ_CHECK(max_shard_bytes > 0, InputError, "the shard size limit for ", folder, " must be positive");
  const std::vector<Prepared> prepared = prepare(tensors, storage, folder);

  std::vector<std::vector<Prepared>> shards(1);
  uint64_t shard_bytes = 0;
  uint64_t total_bytes = 0;
  for (const Prepared& t : prepared) {
    if (!shards.back().empty() && shard_bytes + t.bytes() > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(t);
    shard_bytes += t.bytes();
    total_bytes += t.bytes();
  }

  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  SAETRAJ_CHECK(!ec, IoError, "cannot create folder ", folder, ": ", ec.message());

  ordered_json weight_map = ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    // transformers refuses shard metadata without a "format"; "pt" is what it writes itself.
    write_file(folder + "/" + name, shards[i], {{"format", "pt"}});
    for (const Prepared& t : shards[i]) weight_map[t.name] = name;
  }
  ordered_json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  AtomicFile out(folder + "/model.safetensors.index.json");
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace saetraj::io
