#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"

#include "reader_support.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace saetraj::io {

namespace fs = std::filesystem;
using nlohmann::json;

SafetensorsSet SafetensorsSet::open_file(const std::string& path) {
  SafetensorsSet set;
  auto file = SafetensorsFile::open(path);
  set.where_ = path;
  for (const auto& entry : file->tensors()) set.weight_map_[entry.first] = path;
  set.shards_[path] = file;
  return set;
}

SafetensorsSet SafetensorsSet::open_folder(const std::string& folder) {
  SAETRAJ_CHECK(fs::is_directory(folder), InputError, "checkpoint folder ", folder,
                " does not exist or is not a folder");
  // Same order as transformers: a single file wins over an index.
  const std::string single = folder + "/model.safetensors";
  if (fs::exists(single)) return open_file(single);
  const std::string index_path = folder + "/model.safetensors.index.json";
  SAETRAJ_CHECK(fs::exists(index_path), InputError, "folder ", folder,
                " has neither model.safetensors nor model.safetensors.index.json");

  std::ifstream in(index_path);
  SAETRAJ_CHECK(in, IoError, "cannot read ", index_path);
  json index;
  try {
    index = json::parse(in);
  } catch (const json::exception& e) {
    throw FormatError(str(index_path, " is not valid JSON: ", e.what()));
  }
  SAETRAJ_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
                FormatError, index_path, " has no \"weight_map\" object (tensor name -> shard file)");
  const json& weight_map = index["weight_map"];
  SAETRAJ_CHECK(!weight_map.empty(), FormatError, "the weight_map of ", index_path, " is empty");

  SafetensorsSet set;
  set.where_ = index_path;
  std::map<std::string, bool> shard_exists;
  for (const auto& [tensor, shard] : weight_map.items()) {
    SAETRAJ_CHECK(shard.is_string() && !shard.get<std::string>().empty(), FormatError, index_path,
                  ": shard of tensor '", tensor, "' must be a file name, got ", shard.dump());
    const std::string shard_path = folder + "/" + shard.get<std::string>();
    auto found = shard_exists.find(shard_path);
    if (found == shard_exists.end())
      found = shard_exists.emplace(shard_path, fs::is_regular_file(shard_path)).first;
    SAETRAJ_CHECK(found->second, InputError, index_path, " places tensor '", tensor, "' in shard ",
                  shard.get<std::string>(), ", but ", shard_path, " does not exist");
    set.weight_map_[tensor] = shard_path;
  }
  return set;
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  for (const auto& entry : weight_map_) out.push_back(entry.first);
  return out;
}

bool SafetensorsSet::contains(const std::string& name) const { return weight_map_.count(name) != 0; }

std::string SafetensorsSet::file_of(const std::string& name) const {
  const auto it = weight_map_.find(name);
  if (it == weight_map_.end()) throw FormatError(missing_tensor_message(name, where_, names()));
  return it->second;
}

const SafetensorsFile& SafetensorsSet::shard_for(const std::string& name) const {
  const std::string shard_path = file_of(name);
  std::shared_ptr<SafetensorsFile>& slot = shards_[shard_path];
  if (!slot) {
    auto shard = SafetensorsFile::open(shard_path);
    // Checked once per shard, for every tensor the index puts there, so that a stale index is reported
    // as such instead of as a missing tensor deep inside a model loader.
    for (const auto& [tensor, path] : weight_map_) {
      SAETRAJ_CHECK(path != shard_path || shard->contains(tensor), FormatError, where_, " places tensor '",
                    tensor, "' in ", shard_path, ", but that shard does not contain it");
    }
    slot = shard;
  }
  return *slot;
}

const TensorInfo& SafetensorsSet::info(const std::string& name) const { return shard_for(name).info(name); }

torch::Tensor SafetensorsSet::load(const std::string& name, torch::ScalarType as) const {
  return shard_for(name).load(name, as);
}

torch::Tensor SafetensorsSet::load(const std::string& name, const std::vector<int64_t>& expected_shape,
                                   torch::ScalarType as) const {
  return shard_for(name).load(name, expected_shape, as);
}

}  // namespace saetraj::io
