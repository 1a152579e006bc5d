#include "saetraj/io/mmap.h"

#include "saetraj/core/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace saetraj::io {

namespace {
// Closes the descriptor on every path out of the constructor; the mapping stays valid without it.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  FdGuard guard{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  SAETRAJ_CHECK(guard.fd >= 0, IoError, "cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  SAETRAJ_CHECK(::fstat(guard.fd, &st) == 0, IoError, "cannot stat ", path, ": ", std::strerror(errno));
  SAETRAJ_CHECK(S_ISREG(st.st_mode), IoError, "cannot map ", path, ": not a regular file");
  size_ = static_cast<size_t>(st.st_size);
  // mmap refuses a zero length, and there is nothing to map anyway.
  if (size_ == 0) return;
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, guard.fd, 0);
  SAETRAJ_CHECK(p != MAP_FAILED, IoError, "cannot map ", path, " (", size_,
                " bytes): ", std::strerror(errno));
  data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace saetraj::io
