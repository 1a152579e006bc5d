#include "saetraj/io/safetensors.h"

#include "reader_support.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/io/mmap.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <set>

namespace saetraj::io {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; so must the host be");

namespace {

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
  torch::ScalarType torch_type;  // Undefined where LibTorch 1.13 has no such type
};

constexpr torch::ScalarType kNoTorchType = torch::ScalarType::Undefined;

const DTypeRow kDTypes[] = {
    {DType::BOOL, "BOOL", 1, torch::kBool},       {DType::U8, "U8", 1, torch::kUInt8},
    {DType::I8, "I8", 1, torch::kInt8},           {DType::I16, "I16", 2, torch::kInt16},
    {DType::U16, "U16", 2, kNoTorchType},         {DType::F16, "F16", 2, torch::kFloat16},
    {DType::BF16, "BF16", 2, torch::kBFloat16},   {DType::I32, "I32", 4, torch::kInt32},
    {DType::U32, "U32", 4, kNoTorchType},         {DType::F32, "F32", 4, torch::kFloat32},
    {DType::F64, "F64", 8, torch::kFloat64},      {DType::I64, "I64", 8, torch::kInt64},
    {DType::U64, "U64", 8, kNoTorchType},         {DType::F8_E4M3, "F8_E4M3", 1, kNoTorchType},
    {DType::F8_E5M2, "F8_E5M2", 1, kNoTorchType},
};

const DTypeRow& row(DType dtype) {
  for (const DTypeRow& r : kDTypes) {
    if (r.dtype == dtype) return r;
  }
  throw Error(str("internal error: DType ", static_cast<int>(dtype), " has no table row"));
}

const DTypeRow* find_row(const std::string& name) {
  for (const DTypeRow& r : kDTypes) {
    if (name == r.name) return &r;
  }
  return nullptr;
}

std::string known_dtype_names() {
  std::vector<std::string> names;
  for (const DTypeRow& r : kDTypes) names.push_back(r.name);
  return join(names, ", ");
}

// The reference implementation refuses headers above 100 MB; a larger value means a corrupt length or a
// file that is not safetensors at all, and must not turn into a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

using nlohmann::json;

// Reads one header entry; `where` is "tensor 'x' in FILE".
TensorInfo parse_entry(const std::string& name, const json& entry, uint64_t data_size,
                       const std::string& where) {
  SAETRAJ_CHECK(entry.is_object(), FormatError, where, ": header entry is a JSON ", entry.type_name(),
                ", expected an object with dtype, shape and data_offsets");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    SAETRAJ_CHECK(entry.contains(key), FormatError, where, " has no '", key, "' in its header entry");
  }
  const json& dtype = entry["dtype"];
  const json& shape = entry["shape"];
  const json& offsets = entry["data_offsets"];
  SAETRAJ_CHECK(dtype.is_string(), FormatError, where, ": 'dtype' must be a string, got a JSON ",
                dtype.type_name());
  SAETRAJ_CHECK(shape.is_array(), FormatError, where, ": 'shape' must be an array of integers, got a JSON ",
                shape.type_name());
  SAETRAJ_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                    offsets[1].is_number_unsigned(),
                FormatError, where, ": 'data_offsets' must be two non-negative integers [begin, end], got ",
                offsets.dump());

  TensorInfo info;
  info.name = name;
  const DTypeRow* r = find_row(dtype.get<std::string>());
  SAETRAJ_CHECK(r, FormatError, where, " has unknown dtype '", dtype.get<std::string>(),
                "' (known: ", known_dtype_names(), ")");
  info.dtype = r->dtype;

  // numel x element size must fit in 64 bits before it can be compared with the byte range.
  uint64_t bytes = r->size;
  for (const json& dim : shape) {
    SAETRAJ_CHECK(dim.is_number_integer(), FormatError, where, ": 'shape' must hold integers, got ",
                  shape.dump());
    SAETRAJ_CHECK(dim.is_number_unsigned(), FormatError, where, " has a negative dimension in shape ",
                  shape.dump());
    const uint64_t d = dim.get<uint64_t>();
    SAETRAJ_CHECK(d <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(bytes, d, &bytes),
                  FormatError, where, " has shape ", shape.dump(), ", whose byte size overflows 64 bits");
    info.shape.push_back(static_cast<int64_t>(d));
  }
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  SAETRAJ_CHECK(info.begin <= info.end, FormatError, where, " has data_offsets [", info.begin, ", ", info.end,
                "]; expected begin <= end");
  SAETRAJ_CHECK(info.end <= data_size, FormatError, where, " has data_offsets [", info.begin, ", ", info.end,
                "] outside the data section (", data_size,
                " bytes); data is not within the file bounds, the file is corrupted or incomplete");
  SAETRAJ_CHECK(info.end - info.begin == bytes, FormatError, where, " has ", info.end - info.begin,
                " bytes of data, but shape ", shape_str(info.shape), " of ", r->name, " needs ", bytes);
  return info;
}

// Tensors must not share bytes: a writer that did so is broken, and a reader would alias them.
void check_no_overlap(const std::map<std::string, TensorInfo>& tensors, const std::string& path) {
  std::vector<const TensorInfo*> sorted;
  for (const auto& [name, info] : tensors) {
    if (info.end > info.begin) sorted.push_back(&info);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const TensorInfo& a = *sorted[i - 1];
    const TensorInfo& b = *sorted[i];
    SAETRAJ_CHECK(b.begin >= a.end, FormatError, "tensors '", a.name, "' and '", b.name, "' in ", path,
                  " overlap: bytes [", a.begin, ", ", a.end, ") and [", b.begin, ", ", b.end,
                  ") of the data section");
  }
}

}  // namespace

const char* dtype_name(DType dtype) { return row(dtype).name; }

DType dtype_from_name(const std::string& name) {
  const DTypeRow* r = find_row(name);
  SAETRAJ_CHECK(r, FormatError, "unknown safetensors dtype '", name, "' (known: ", known_dtype_names(), ")");
  return r->dtype;
}

size_t dtype_size(DType dtype) { return row(dtype).size; }

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto file = std::make_shared<SafetensorsFile>();
  file->path_ = path;
  file->map_ = std::make_shared<MappedFile>(path);
  const uint8_t* bytes = file->map_->data();
  const uint64_t size = file->map_->size();
  SAETRAJ_CHECK(size >= 8, FormatError, path, " is too short to be a safetensors file: ", size,
                " bytes, expected at least 8 (the header length)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);
  SAETRAJ_CHECK(header_len <= kMaxHeaderBytes, FormatError, "header length ", header_len, " of ", path,
                " exceeds the limit of ", kMaxHeaderBytes,
                " bytes; the file is not safetensors or is corrupted");
  SAETRAJ_CHECK(header_len <= size - 8, FormatError, "header of ", path, " (", header_len,
                " bytes) runs past the end of the file (", size,
                " bytes); the file is corrupted or incomplete");
  file->data_start_ = 8 + header_len;
  const uint64_t data_size = size - file->data_start_;

  // JSON objects keep the last of two equal keys; a header that names a tensor twice is refused instead.
  std::set<std::string> seen;
  const json::parser_callback_t refuse_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const auto& key = parsed.get_ref<const std::string&>();
      SAETRAJ_CHECK(seen.insert(key).second, FormatError, "header of ", path, " lists '", key, "' twice");
    }
    return true;
  };
  json header;
  try {
    const char* begin = reinterpret_cast<const char*>(bytes + 8);
    header = json::parse(begin, begin + header_len, refuse_duplicates);
  } catch (const json::exception& e) {
    throw FormatError(str("header of ", path, " is not valid JSON: ", e.what()));
  }
  SAETRAJ_CHECK(header.is_object(), FormatError, "header of ", path, " is a JSON ", header.type_name(),
                ", expected an object");

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      SAETRAJ_CHECK(value.is_object(), FormatError, "__metadata__ of ", path,
                    " must be an object of strings, got a JSON ", value.type_name());
      for (const auto& [mkey, mvalue] : value.items()) {
        SAETRAJ_CHECK(mvalue.is_string(), FormatError, "__metadata__ of ", path, ": value of '", mkey,
                      "' must be a string, got ", mvalue.dump());
        file->metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    file->tensors_[key] = parse_entry(key, value, data_size, str("tensor '", key, "' in ", path));
  }
  check_no_overlap(file->tensors_, path);
  return file;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::vector<std::string> names;
    for (const auto& entry : tensors_) names.push_back(entry.first);
    throw FormatError(missing_tensor_message(name, path_, names));
  }
  return it->second;
}

const uint8_t* SafetensorsFile::data(const std::string& name) const {
  return map_->data() + data_start_ + info(name).begin;
}

torch::Tensor SafetensorsFile::load(const std::string& name, torch::ScalarType as) const {
  const TensorInfo& t = info(name);
  const DTypeRow& r = row(t.dtype);
  SAETRAJ_CHECK(r.torch_type != kNoTorchType, FormatError, "tensor '", name, "' in ", path_, " has dtype ",
                r.name, ", which LibTorch cannot hold");
  check_convertible(r.torch_type, as, str("tensor '", name, "' in ", path_));
  // Copied into fresh memory rather than wrapped: the mapping may be unaligned for the dtype and must not
  // be kept alive (or written through) by the tensors handed out.
  torch::Tensor out = torch::empty(t.shape, torch::TensorOptions().dtype(r.torch_type));
  if (t.end > t.begin) std::memcpy(out.data_ptr(), data(name), t.end - t.begin);
  return r.torch_type == as ? out : out.to(as);
}

torch::Tensor SafetensorsFile::load(const std::string& name, const std::vector<int64_t>& expected_shape,
                                    torch::ScalarType as) const {
  check_shape(info(name).shape, expected_shape, name, path_);
  return load(name, as);
}

}  // namespace saetraj::io
