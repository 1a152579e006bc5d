// A file written under a temporary name and renamed into place once complete, so that an interrupted
// or failed write never leaves a truncated checkpoint under the real name.
#pragma once

#include <cstddef>
#include <string>

namespace saetraj::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // IoError if the temporary file cannot be created
  ~AtomicFile();                          // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);  // IoError on any error or short write
  void commit();                              // closes and renames onto the final path

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace saetraj::io
