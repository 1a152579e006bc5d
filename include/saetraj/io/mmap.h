// RAII read-only memory mapping of a whole file. Checkpoints of several GiB are read through the page
// cache this way instead of being copied into memory first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace saetraj::io {

class MappedFile {
 public:
  // Maps `path` read-only. Throws IoError (with the system's reason) if it cannot be opened or mapped.
  // An empty file is valid: size() is 0 and data() points at no readable byte.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace saetraj::io
